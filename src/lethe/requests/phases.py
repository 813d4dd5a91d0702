"""Which phase of an erasure each subject is in, and the groups that carry it out.

Two phases, as for one subject: while the subject dataset has a recovery window the
subject rows are first soft-deleted; once it has passed, everything is erased
(`Group`, lethe.requests.erasure). A chunk's groups are built and begun (`Erasure.begin`:
counted and moved into in progress) apart from their run, so that a bulk run can make
the next chunk ready while it erases this one (lethe.requests.pipeline).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from lethe.engine.plan import builder_for
from lethe.errors import LetheError
from lethe.requests.erasure import Group
from lethe.requests.subjects import Later, Subject, groupable
from lethe.runtime import Runtime


@dataclass
class Erasure:
    """The next phase for a chunk of subjects: the group to soft-delete (phase 1, with
    the recovery window's start) and the groups to erase (phase 2: one for the chunk,
    or one per subject when rows cannot be told apart by subject)."""

    now: datetime
    soft: Group | None = None
    window: datetime | None = None
    groups: list[Group] = field(default_factory=list)

    def begin(self) -> None:
        """Count and store the erasing groups' baselines ahead of their run. A store
        error is left for `run`: the group begins again there and, failing again, says
        so in its requests as an erasure that fails at its start always has."""
        for group in self.groups:
            with suppress(LetheError):
                group.begin_erasure()

    def run(self, out_dir: Path | None, later: Later | None = None) -> None:
        if self.soft is not None:
            assert self.window is not None
            self.soft.soft_delete(self.now, self.window)
        for group in self.groups:
            group.erase(out_dir, later)


def erasure_of(rt: Runtime, subject_kind: str, subjects: Sequence[Subject],
               batch_size: int) -> Erasure:
    """The groups that carry out the next phase of erasure for subjects whose requests
    are in progress (built: the parent rows that tell subjects apart are read)."""
    now = rt.clock.now()
    builder = builder_for(rt, now)
    subject = rt.policy.subjects[subject_kind].dataset
    soft = rt.policy.datasets[subject].soft_delete
    window = soft.recover_for.before(now) if soft is not None else None
    first: list[Subject] = []
    ready: list[Subject] = []
    for s in subjects:
        deleted_at = s.record.soft_deleted_at
        if soft is not None and window is not None and soft.recover_for.amount \
                and deleted_at is None:
            first.append(s)  # phase 1: recoverable for `recover_for`
        elif deleted_at is not None and window is not None and deleted_at > window:
            continue  # still inside the recovery window: nothing more yet
        else:
            ready.append(s)
    erasure = Erasure(now, window=window)
    if first:
        erasure.soft = Group(rt, builder, subject_kind, first, batch_size)
    if not ready:
        return erasure
    order = [n for n in rt.catalog.graph.order if n in builder.keys]
    if len(ready) > 1 and not groupable(rt.policy, order, subject):
        erasure.groups = [Group(rt, builder, subject_kind, [s], batch_size) for s in ready]
    else:
        erasure.groups = [Group(rt, builder, subject_kind, ready, batch_size)]
    return erasure


def erase_subjects(rt: Runtime, subject_kind: str, subjects: Sequence[Subject],
                   out_dir: Path | None, batch_size: int, later: Later | None = None) -> None:
    """Run the next phase of erasure for subjects whose requests are in progress; each
    subject's `outcome` says what happened (once `later`, if given, has run the
    certifications handed to it: `Certifications`)."""
    erasure_of(rt, subject_kind, subjects, batch_size).run(out_dir, later)


__all__ = ["Erasure", "erase_subjects", "erasure_of"]
