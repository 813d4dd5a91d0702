"""lethe: data lifecycle governance — retention, holds and evidence on real stores.

This module is the public Python API; everything else is private and may change.
"""

from lethe.catalog import Finding
from lethe.clock import Clock
from lethe.crypto.fields import EncryptedBytes, EncryptedText, FieldCipher, ForSubject
from lethe.crypto.keys import Shredded
from lethe.engine.execute import RunResult, execute
from lethe.engine.plan import Plan, PlannedAction, build_plan
from lethe.errors import LetheError, PolicyError, SchemaMismatch, StoreError
from lethe.governance.check import CheckReport, check
from lethe.holds import Scope, parse_scope, place_hold
from lethe.policy.load import load_policy, parse_policy
from lethe.policy.model import Policy
from lethe.runtime import Runtime

__all__ = [
    "CheckReport",
    "Clock",
    "EncryptedBytes",
    "EncryptedText",
    "FieldCipher",
    "Finding",
    "ForSubject",
    "LetheError",
    "Plan",
    "PlannedAction",
    "Policy",
    "PolicyError",
    "RunResult",
    "Runtime",
    "SchemaMismatch",
    "Scope",
    "Shredded",
    "StoreError",
    "build_plan",
    "check",
    "execute",
    "load_policy",
    "parse_policy",
    "parse_scope",
    "place_hold",
]
