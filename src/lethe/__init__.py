"""lethe: data lifecycle governance — retention, holds and evidence on real stores.

This module is the public Python API; everything else is private and may change.
"""

# Names are imported on first use (PEP 562): `import lethe`, which every `lethe` command
# does (the CLI is a submodule), must not pay for SQLAlchemy, pydantic and the engine
# before the command knows it needs them.

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lethe.catalog import Finding as Finding
    from lethe.clock import Clock as Clock
    from lethe.crypto.fields import EncryptedBytes as EncryptedBytes
    from lethe.crypto.fields import EncryptedText as EncryptedText
    from lethe.crypto.fields import FieldCipher as FieldCipher
    from lethe.crypto.fields import ForSubject as ForSubject
    from lethe.crypto.keys import Shredded as Shredded
    from lethe.engine.execute import RunResult as RunResult
    from lethe.engine.execute import execute as execute
    from lethe.engine.plan import Plan as Plan
    from lethe.engine.plan import PlannedAction as PlannedAction
    from lethe.engine.plan import build_plan as build_plan
    from lethe.errors import LetheError as LetheError
    from lethe.errors import PolicyError as PolicyError
    from lethe.errors import SchemaMismatch as SchemaMismatch
    from lethe.errors import StoreError as StoreError
    from lethe.governance.check import CheckReport as CheckReport
    from lethe.governance.check import check as check
    from lethe.holds import Scope as Scope
    from lethe.holds import parse_scope as parse_scope
    from lethe.holds import place_hold as place_hold
    from lethe.policy.load import load_policy as load_policy
    from lethe.policy.load import parse_policy as parse_policy
    from lethe.policy.model import Policy as Policy
    from lethe.runtime import Runtime as Runtime

# public name -> the module that defines it
_HOME = {
    "CheckReport": "lethe.governance.check",
    "Clock": "lethe.clock",
    "EncryptedBytes": "lethe.crypto.fields",
    "EncryptedText": "lethe.crypto.fields",
    "FieldCipher": "lethe.crypto.fields",
    "Finding": "lethe.catalog",
    "ForSubject": "lethe.crypto.fields",
    "LetheError": "lethe.errors",
    "Plan": "lethe.engine.plan",
    "PlannedAction": "lethe.engine.plan",
    "Policy": "lethe.policy.model",
    "PolicyError": "lethe.errors",
    "RunResult": "lethe.engine.execute",
    "Runtime": "lethe.runtime",
    "SchemaMismatch": "lethe.errors",
    "Scope": "lethe.holds",
    "Shredded": "lethe.crypto.keys",
    "StoreError": "lethe.errors",
    "build_plan": "lethe.engine.plan",
    "check": "lethe.governance.check",
    "execute": "lethe.engine.execute",
    "load_policy": "lethe.policy.load",
    "parse_policy": "lethe.policy.load",
    "parse_scope": "lethe.holds",
    "place_hold": "lethe.holds",
}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'lethe' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value  # once imported, a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted({*_HOME, *(name for name in globals() if name.startswith("__"))})
