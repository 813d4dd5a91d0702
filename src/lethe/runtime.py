"""Everything a command needs, bound once: policy, live stores, control store, clock.

Below the engine, requests, reports and both edges, which all take one; the engine's own
view of it (which rows each step selects) is `lethe.engine.plan.builder_for`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from lethe.audit.identity import local_actor, local_source
from lethe.audit.log import AuditLog, AuditSettings
from lethe.audit.witness import Witness, open_witness
from lethe.catalog import Catalog, open_catalog, require_schema
from lethe.clock import Clock
from lethe.control.store import ControlStore
from lethe.crypto.fields import FieldCipher
from lethe.crypto.kek import kek_provider
from lethe.crypto.keys import SubjectKeys
from lethe.crypto.signing import key_path
from lethe.errors import UsageError
from lethe.holds import HoldGate, HoldScopes, gate_of
from lethe.policy.model import Policy
from lethe.stores.base import Value


class Compiling(Protocol):
    """What holds are compiled for: an instant (a run's, a request's) and the datasets'
    resolved keys (lethe.engine.steps.StepBuilder is one)."""

    @property
    def now(self) -> datetime: ...

    @property
    def keys(self) -> Mapping[str, str]: ...


def witness_of(policy: Policy, url: str | None = None) -> Witness | None:
    """The policy's audit witness (or `url`'s); S3 objects stay locked for as long as
    the policy keeps audit entries."""
    url = url or policy.audit.witness
    if not url:
        return None

    def retain_until() -> datetime:
        now = datetime.now(UTC)
        cutoff = policy.audit.retention.before(now)  # None: kept forever (a century here)
        return now + (timedelta(days=36_525) if cutoff is None else now - cutoff)

    return open_witness(url, retain_until=retain_until)


@dataclass
class Runtime:
    policy: Policy
    clock: Clock
    catalog: Catalog
    control: ControlStore
    audit: AuditLog
    _keys: SubjectKeys | None = None
    # (gate turn, (instant, dataset keys), hold ids) -> the holds compiled for them,
    # subject keys and all
    _compiled_holds: tuple[tuple[object, ...], HoldScopes | None] = ((), None)
    # the stores' schema reflections `prepare` last found the policy agreeing with
    _schema_checked: tuple[object, ...] = ()

    @classmethod
    def open(cls, policy: Policy, clock: Clock | None = None, *, actor: str | None = None,
             source: str | None = None) -> Runtime:
        control = ControlStore(policy.control)
        settings = AuditSettings(policy.organization, key_path(Path(policy.audit.key)),
                                 policy.audit.checkpoint_every, witness_of(policy))
        audit = AuditLog(control.engine, settings, actor=actor or local_actor(),
                         source=source or local_source())
        return cls(policy, clock or Clock(), open_catalog(policy), control, audit)

    def select(self, datasets: Sequence[str] | None) -> list[str]:
        """Dataset names in children-first order; unknown names are a usage error."""
        if datasets:
            for name in datasets:
                if name not in self.policy.datasets:
                    raise UsageError(f"unknown dataset {name!r}", path="--dataset")
        chosen = set(datasets) if datasets else set(self.policy.datasets)
        return [n for n in self.catalog.graph.order
                if n in chosen and n in self.catalog.sql_datasets()]

    def prepare(self) -> None:
        """Validate every SQL dataset: steps reach a selection's relatives too. Once per
        reflection of the stores' schemas: the check reads nothing else but the policy,
        so while a store keeps its reflection (the same object) it passes again (a
        worker's every request asked it afresh: ~0.15 ms of a ~9 ms erasure)."""
        datasets = self.catalog.sql_datasets()
        stores = sorted({self.policy.datasets[n].store for n in datasets})
        reflected = tuple(self.catalog.row_store(s).tables() for s in stores)
        if len(reflected) == len(self._schema_checked) and all(
                now is then for now, then in zip(reflected, self._schema_checked, strict=True)):
            return
        require_schema(self.catalog, datasets)
        self._schema_checked = reflected

    @property
    def hold_gate(self) -> HoldGate:
        """Taken shared by every unit of work from its hold read to its commit."""
        return gate_of(self.control.engine)

    def hold_scopes(self, builder: Compiling) -> HoldScopes:
        """The holds in force, compiled for this builder's datasets. Subject holds are
        resolved to the subject rows' keys once per hold set and instant (a run's, a
        request's): a child row is then held by its link being one of those keys, not by
        looking every held identity up in the subject table again for every batch. A
        subject row that takes a held identity while a run goes on is seen by the next
        run; a new or released hold is seen by the next batch. Within one turn of the
        hold gate (HoldGate.turn) the holds are read once: none can be placed meanwhile."""
        turn = self.hold_gate.turn
        instant = (builder.now, tuple(builder.keys.items()))
        known, compiled = self._compiled_holds
        if compiled is not None and turn is not None and known[:2] == (turn, instant):
            return compiled  # read in this turn already
        holds = self.control.holds()
        mark = (turn, instant, tuple(h.id for h in holds))
        if compiled is not None and known[1:] == mark[1:]:
            self._compiled_holds = (mark, compiled)
            return compiled  # the same holds, compiled once
        found: dict[str, tuple[Value, ...]] = {}

        def resolve(dataset: str) -> tuple[Value, ...]:
            if dataset not in found:
                found[dataset] = tuple(self.catalog.store_of(dataset).values(
                    self.policy.datasets[dataset].table or "", builder.keys[dataset],
                    scopes.named(dataset)))
            return found[dataset]

        scopes = HoldScopes(self.policy, self.catalog.graph, builder.keys, holds, resolve)
        self._compiled_holds = (mark, scopes)
        return scopes

    def subject_keys(self) -> SubjectKeys:
        """Per-subject data keys under the KEK (the key file is created on first use)."""
        if self._keys is None:
            self._keys = SubjectKeys(self.control.engine,
                                     kek_provider(Path(self.policy.encryption.kek_file)))
        return self._keys

    def cipher(self) -> FieldCipher:
        return FieldCipher(self.subject_keys())

    def close(self) -> None:
        self.catalog.close()
        self.control.close()
