"""Which phase of an erasure each subject is in, and the groups that carry it out.

Two phases, as for one subject: while the subject dataset has a recovery window the
subject rows are first soft-deleted; once it has passed, everything is erased
(`Group`, lethe.requests.erasure).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lethe.engine.plan import builder_for
from lethe.requests.erasure import Group
from lethe.requests.subjects import Later, Subject, groupable
from lethe.runtime import Runtime


def erase_subjects(rt: Runtime, subject_kind: str, subjects: Sequence[Subject],
                   out_dir: Path | None, batch_size: int, later: Later | None = None) -> None:
    """Run the next phase of erasure for subjects whose requests are in progress; each
    subject's `outcome` says what happened (once `later`, if given, has run the
    certifications handed to it: `Certifications`)."""
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
    if first:
        assert window is not None
        Group(rt, builder, subject_kind, first, batch_size).soft_delete(now, window)
    if not ready:
        return
    order = [n for n in rt.catalog.graph.order if n in builder.keys]
    if len(ready) > 1 and not groupable(rt.policy, order, subject):
        for s in ready:
            Group(rt, builder, subject_kind, [s], batch_size).erase(out_dir, later)
        return
    Group(rt, builder, subject_kind, ready, batch_size).erase(out_dir, later)


__all__ = ["erase_subjects"]
