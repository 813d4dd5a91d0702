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

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, replace

from lethe.engine.erasure_plan import Erased, EraseRows, ErasurePlan, RemoveKeyed, Tally
from lethe.engine.steps import StepBuilder
from lethe.engine.subjects import Counts, SubjectReach, remove_archived
from lethe.engine.sweep import OnBatch, SweepStats, sweep_all
from lethe.errors import LetheError
from lethe.holds import HoldScopes
from lethe.runtime import Runtime
from lethe.stores.base import (
    FALSE,
    Anonymize,
    Condition,
    Delete,
    Effect,
    In,
    Journal,
    Sweep,
    Value,
    all_of,
    any_of,
    looks_up,
    negate,
)

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
    journal: Journal | None = None  # told each batch before it commits (a run's record)
    time_column: str | None = None  # the column whose age makes the rows due (Sweep)
    seconds: float | None = None  # a batch's time budget (Sweep)


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
        last: list[Condition] = [FALSE]

        def make_sweep() -> Sweep:
            sweep, last[0] = self._sweep_of(action, self.holds())  # under the gate:
            return sweep  # sweep_all takes it for every batch

        stats = sweep_all(self.rt.catalog.store_of(action.dataset), make_sweep, batch_size,
                          on_batch, gate=self.rt.hold_gate)
        return Swept(stats, last[0])

    def _sweep_of(self, action: SweepRows, holds: HoldScopes) -> tuple[Sweep, Condition]:
        """(the sweep of the action's next batch under these holds, the hold condition
        that keeps rows from it)."""
        where, held = self.selection(action, holds)
        return Sweep(self._table(action), self.builder.keys[action.dataset], where,
                     action.effect,
                     self.builder.cascades(action.dataset, holds) if action.cascades else (),
                     selective=action.selective, tally=action.tally,
                     durable=action.durable, journal=action.journal,
                     time_column=action.time_column, seconds=action.seconds), held

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

    def remove_archived(self, dataset: str, column: str,
                        owners: Callable[[HoldScopes], Mapping[str, str]]) -> Counts:
        """Take rows out of the dataset's archives: `owners` maps a value of `column` to
        its subject, given the holds in force (held subjects left out)."""
        with self.turn() as holds:
            return remove_archived(self.rt, dataset, column, owners(holds), holds)

    # -- an erasure plan ----------------------------------------------------------------
    def erase(self, plan: ErasurePlan, tally: Tally, batch_size: int, *,
              one_turn: bool = False) -> None:
        """Carry out an erasure plan, action by action, telling `tally` what each did.
        The sweeps commit without waiting for the log; every store is flushed before
        this returns (or raises), so nothing is audited that a crash could undo.
        `one_turn`: the whole plan is one unit of work under the hold gate, the holds
        read once — for an erasure no bigger than one batch (a lone subject's rows), so
        `hold place` waits no longer than it would for a batch."""
        with self.rt.hold_gate.shared() if one_turn else nullcontext():
            self._erase(plan, tally, batch_size, together=one_turn)

    def _erase(self, plan: ErasurePlan, tally: Tally, batch_size: int, *,
               together: bool) -> None:
        """`together`: consecutive plain deletes of one store go as one statement
        (`_erase_together`)."""
        reaches: dict[str, SubjectReach] = {}

        def reach(kind: str) -> SubjectReach:
            if kind not in reaches:
                reaches[kind] = SubjectReach(self.rt, self.builder, kind)
            return reaches[kind]

        kinds = plan.kinds()
        kept: dict[str, set[str]] = {}  # kind -> subjects some of whose keys a hold keeps
        run: list[EraseRows] = []  # plain deletes of one store waiting to go together
        try:
            for action in plan.actions:
                plain = together and not kept and self._plain_delete(action, tally)
                if plain and run and isinstance(action, EraseRows) \
                        and not self._joins(run, action):
                    self._erase_run(run, tally, batch_size)
                    run = []
                # (a dataset whose rows are retained is only counted: the run goes on,
                # unless they are found through another table, whose rows it may delete)
                if plain or (run and isinstance(action, EraseRows)
                             and action.action == "retain" and not looks_up(action.where)):
                    assert isinstance(action, EraseRows)
                    run.append(action)
                    continue
                if run:
                    self._erase_run(run, tally, batch_size)
                    run = []
                if isinstance(action, RemoveKeyed):
                    kind = action.subject_kind or plan.subject_kind
                    removed, held = self.remove_keys(
                        reach(kind), action.dataset, tally.keys_of(action.dataset, kind),
                        delete=action.delete)
                    kept.setdefault(kind, set()).update(mark for mark, n in held.items() if n)
                    tally.keys_removed(action, removed, held)
                elif isinstance(action, EraseRows):
                    # subject rows whose keys or objects a hold keeps stay (every kind
                    # whose dataset this is: two kinds may share one)
                    keep = any_of(*(
                        In(self.builder.keys[action.dataset],
                           tuple(k for k in kinds.get(kind, ()) if str(k) in marks))
                        for kind, marks in kept.items() if marks and
                        self.rt.policy.subjects[kind].dataset == action.dataset))
                    self._erase_dataset(action, keep, tally, batch_size)
                else:
                    tally.shredded(self._shred_kind(reach(action.subject_kind), tally),
                                   action.subject_kind)
            if run:  # the erasure's last write: durable now, nothing left for a flush
                self._erase_run(run, tally, batch_size, last=True)
        except BaseException:
            with suppress(LetheError):  # the first error is the one told
                self._flush(plan)
            raise
        self._flush(plan)

    def _store(self, action: EraseRows) -> str:
        return self.rt.policy.datasets[action.dataset].store

    def _joins(self, run: Sequence[EraseRows], action: EraseRows) -> bool:
        """May a plain dataset join this run's statement? Not from another store; and an
        anonymization not after rows found through another table: the rows a hold keeps
        there are counted after the statement, through their parents, and a rewrite may
        cut a parent loose (a delete cannot take the parent of a held row: the holds
        keep it, as they cascade; a rewrite's do not). It starts a run of its own."""
        if self._store(run[0]) != self._store(action):
            return False
        return action.action != "anonymize" or not any(looks_up(a.where) for a in run)

    def _plain_delete(self, action: object, tally: Tally) -> bool:
        """Rows that simply go — a delete with no rows a foreign key keeps, none in
        archives — or are simply rewritten — an anonymization by constants
        (`Anonymize.constants`); no `referenced_by` rows pinned by holds; one subject."""
        if not isinstance(action, EraseRows) or tally.column(action.dataset) is not None \
                or self.rt.policy.datasets[action.dataset].referenced_by:
            return False
        if action.action == "anonymize":
            return isinstance(action.scrub, Anonymize) and action.scrub.constants is not None
        return action.action == "delete" and action.referenced == FALSE \
            and action.archive_column is None

    def _erase_run(self, actions: Sequence[EraseRows], tally: Tally,
                   batch_size: int, *, last: bool = False) -> None:
        """A run of plain deletes (`_erase_together`), else each as any other dataset
        (the deletes already begun: the statement, if it ran, deleted nothing). `last`:
        nothing is written after it, so its statement commits durably (waiting for the
        log, which makes every earlier commit durable too) and a flush has nothing of
        it to do: one round trip less than committing without waiting and flushing."""
        if self._erase_together(actions, tally, batch_size, durable=last):
            return
        for action in actions:
            if action.action == "retain":
                self._erase_dataset(action, FALSE, tally, batch_size)
            else:  # begun already
                tally.erased(action, self._erase_rows(action, FALSE, tally, batch_size))

    def _erase_dataset(self, action: EraseRows, keep: Condition, tally: Tally,
                       batch_size: int) -> None:
        """One dataset's rows of the subjects, by its erasure setting, told to the tally
        (`keep`: subject rows a hold on their keys keeps)."""
        tally.begin(action)
        tally.erased(action, self._erase_rows(action, keep, tally, batch_size))

    def _erase_together(self, actions: Sequence[EraseRows], tally: Tally,
                        batch_size: int, *, durable: bool = False) -> bool:
        """Plain deletes of one store (and datasets retained between them), in plan
        order (children first), within an erasure that is one unit of work (its holds
        read once, under the gate), as one statement where the store can run them so
        (`first_batches`: one round trip instead of one per dataset, all or nothing,
        and only when every dataset's rows fit in a batch); then each dataset told to
        the tally in plan order. False, having deleted nothing, where the store cannot;
        the deletes are begun (`Tally.begin`) either way, before anything is touched."""
        holds = self.holds()
        deletes = [a for a in actions if a.action != "retain"]
        for action in deletes:
            tally.begin(action)
        sweeps = [self._sweep_of(replace(_plainly(a, tally), durable=durable), holds)
                  for a in deletes]
        started = time.perf_counter()
        firsts = self.rt.catalog.store_of(deletes[0].dataset).first_batches(
            [sweep for sweep, _ in sweeps], batch_size)
        if firsts is None:
            return False
        elapsed_ms = (time.perf_counter() - started) * 1000
        done = iter(zip(sweeps, firsts, strict=True))
        for action in actions:
            if action.action == "retain":  # only counted
                self._erase_dataset(action, FALSE, tally, batch_size)
                continue
            (_, held), first = next(done)
            stats = SweepStats()
            if first.upper is not None:
                stats.rows, stats.batches = first.rows, 1
                stats.longest_ms = stats.total_ms = elapsed_ms
            tally.erased(action, Erased(stats, held))
        return True

    def _shred_kind(self, reach: SubjectReach, tally: Tally) -> list[Value]:
        """The data keys of the subjects of the reach's kind no hold keeps, destroyed."""
        return self.shred(reach, lambda holds: tally.unheld(holds, reach.kind))

    def _erase_rows(self, action: EraseRows, keep: Condition,
                    tally: Tally, batch_size: int) -> Erased:
        """A `referenced_by` dataset's rows whose subject a hold names are kept too, read
        with the holds of each batch (the rows pointing at them may be gone)."""
        name = action.dataset
        pinned: Callable[[HoldScopes], Condition] | None = None
        if self.rt.policy.datasets[name].referenced_by:
            def pinned(holds: HoldScopes) -> Condition:
                return tally.pinned_held(name, holds)

        def rows(where: Condition, effect: Effect, deletes: bool) -> Swept:
            selection: Selection = where if pinned is None else \
                (lambda holds: all_of(where, negate(pinned(holds))))
            return self.sweep(_erasing(name, selection, effect, deletes, tally), batch_size)

        if pinned is not None:  # counted as held, like the subject rows `keep` keeps
            keep = any_of(keep, pinned(self.holds()))
        if action.action == "anonymize" and action.scrub is not None:
            swept = rows(all_of(action.where, action.todo), action.scrub, False)
            return Erased(swept.stats, swept.held, keep)
        if action.action != "delete":
            return Erased(None, self.holds().held(name, cascading=False))
        swept = rows(all_of(action.where, negate(action.referenced), negate(keep)),
                     Delete(), True)
        if action.referenced != FALSE and action.scrub is not None:
            # rows that must stay: their personal fields need not
            rows(all_of(action.where, action.referenced, action.todo), action.scrub, False)
        archived: Counts = {}
        if action.archive_column is not None:
            archived = self.remove_archived(name, action.archive_column,
                                            lambda holds: tally.owners_of(name, holds))
        return Erased(swept.stats, swept.held, keep, archived)

    def _flush(self, plan: ErasurePlan) -> None:
        """Make the sweeps' commits durable: once per store."""
        stores = {self.rt.policy.datasets[n].store: n for n in plan.where}
        for name in stores.values():
            self.rt.catalog.store_of(name).flush()


def _plainly(action: EraseRows, tally: Tally) -> SweepRows:
    """A plain dataset's sweep (`Executor._plain_delete`): its rows still identifying,
    rewritten by its constants, or its rows no foreign key keeps, deleted."""
    if action.action == "anonymize" and action.scrub is not None:
        return _erasing(action.dataset, all_of(action.where, action.todo), action.scrub,
                        False, tally)
    return _erasing(action.dataset, all_of(action.where, negate(action.referenced)),
                    Delete(), True, tally)


def _erasing(dataset: str, selection: Selection, effect: Effect, deletes: bool,
             tally: Tally) -> SweepRows:
    """An erasure's sweep of a dataset's rows: few rows of a big table (walk the
    matches), attributed to subjects by the tally's column, committed without waiting
    for the log (the erasure flushes each store before anything is audited)."""
    return SweepRows(dataset, selection, effect, deletes, tally=tally.column(dataset),
                     selective=True, durable=False)
