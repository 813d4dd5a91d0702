"""The one executor: every unit of work that deletes, rewrites, shreds or removes data.

Retention steps (engine.execute), what goes with the subjects a purge removes
(engine.purge) and erasure requests (requests.erasure) all describe their work as the
actions below and hand them here. Each unit of work (a row batch, a shred, one keyed
dataset's removals, one dataset's archive rewrite) takes the hold gate shared, reads the
holds inside it, leaves out what they keep, and is committed before it leaves the gate
(lethe.holds.gate). So a hold binds the instant `hold place` returns, the same way for
every kind of work, and the callers keep only what is theirs: retention its plan and
verification, erasure its attribution, baselines and certificates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from lethe.engine.steps import StepBuilder
from lethe.engine.subjects import Counts, SubjectReach
from lethe.engine.sweep import OnBatch, SweepStats, sweep_all
from lethe.holds import HoldScopes
from lethe.runtime import Runtime
from lethe.stores.base import FALSE, Condition, Effect, Sweep, Value, all_of, negate

Selection = Condition | Callable[[HoldScopes], Condition]  # a cascade's depends on holds


@dataclass(frozen=True)
class SweepRows:
    """Sweep a selection of a dataset's rows, in batches, with an effect."""

    dataset: str
    where: Selection  # the rows, holds aside (a function of the holds in force if needed)
    effect: Effect
    deletes: bool  # the rows leave: keep those a deletion would cascade into held rows
    blocked: Condition = FALSE  # rows a foreign key keeps
    cascades: bool = False  # same-store children go with each batch (retention deletes)
    tally: str | None = None  # count affected rows per value of this column
    selective: bool = False  # few rows of a big table: walk the matches, not key ranges
    durable: bool = True  # False: commit without waiting for the log; `flush` after


@dataclass(frozen=True)
class Swept:
    stats: SweepStats
    held: Condition  # the hold condition the last batch applied (what kept rows)


class Executor:
    """Carries out actions for one runtime and one instant (a run's or a request's)."""

    def __init__(self, rt: Runtime, builder: StepBuilder) -> None:
        self.rt, self.builder = rt, builder

    def holds(self) -> HoldScopes:
        """The holds in force now (read outside the gate: for counting, not acting)."""
        return self.rt.hold_scopes(self.builder)

    @contextmanager
    def turn(self) -> Iterator[HoldScopes]:
        """One unit of work: the gate taken shared, the holds read inside it. Everything
        done in the block is committed before the gate is left."""
        with self.rt.hold_gate.shared():
            yield self.holds()

    def _table(self, action: SweepRows) -> str:
        return self.rt.policy.datasets[action.dataset].table or ""

    @staticmethod
    def selection(action: SweepRows, holds: HoldScopes) -> tuple[Condition, Condition]:
        """(rows the action takes under these holds, the hold condition that keeps the
        rest): the selection, less what is held or blocked."""
        held = holds.held(action.dataset, cascading=action.deletes)
        where = action.where(holds) if callable(action.where) else action.where
        return all_of(where, negate(held), negate(action.blocked)), held

    def count(self, action: SweepRows) -> int:
        """Rows a sweep of the action would take now."""
        return self.rt.catalog.store_of(action.dataset).count(
            self._table(action), self.selection(action, self.holds())[0])

    def sweep(self, action: SweepRows, batch_size: int,
              on_batch: OnBatch | None = None) -> Swept:
        """Sweep until nothing of the selection is left; each batch reads the holds."""
        builder = self.builder
        last: list[Condition] = [FALSE]

        def make_sweep() -> Sweep:
            holds = self.holds()  # under the gate: sweep_all takes it for every batch
            where, last[0] = self.selection(action, holds)
            return Sweep(self._table(action), builder.keys[action.dataset], where,
                         action.effect,
                         builder.cascades(action.dataset, holds) if action.cascades else (),
                         selective=action.selective, tally=action.tally,
                         durable=action.durable)

        stats = sweep_all(self.rt.catalog.store_of(action.dataset), make_sweep, batch_size,
                          on_batch, gate=self.rt.hold_gate)
        return Swept(stats, last[0])

    def shred(self, reach: SubjectReach,
              targets: Callable[[HoldScopes], Sequence[Value]]) -> list[Value]:
        """Destroy the data keys of the subjects `targets` picks given the holds in
        force (it must leave held ones out); the subjects whose key existed."""
        with self.turn() as holds:
            return reach.shred(targets(holds))

    def remove_keys(self, reach: SubjectReach, dataset: str, found: Mapping[str, list[str]],
                    *, delete: bool) -> tuple[Counts, Counts]:
        """Remove the subjects' keys or objects of one keyed dataset that no hold keeps
        (`delete`; else keep them all): (removed, held) per subject."""
        with self.turn() as holds:
            return reach.remove_keys(dataset, found, holds, delete=delete)

    def remove_archived(self, reach: SubjectReach, dataset: str, column: str,
                        owners: Callable[[HoldScopes], Mapping[str, str]]) -> Counts:
        """Take rows out of the dataset's archives: `owners` maps a value of `column` to
        its subject, given the holds in force (held subjects left out)."""
        with self.turn() as holds:
            return reach.remove_archived(dataset, column, owners(holds), holds)
