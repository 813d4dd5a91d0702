"""What an erasure group writes of its requests: their records' values and notes (a hold
keeping them open), and one `request.erased` entry each of what the run did
(`lethe.requests.erasure.Group`'s own, apart from how it erases)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.engine import Connection

from lethe.audit.events import RequestErased
from lethe.control.requests import RequestRecord
from lethe.requests.records import DatasetReport, requests_of
from lethe.requests.subjects import Subject, held_note
from lethe.runtime import Runtime


class GroupRecords:
    """A group's requests as the control store keeps them."""

    rt: Runtime
    subjects: list[Subject]
    # request id -> dataset -> what this run did: one audit entry each at the end
    _steps: dict[int, dict[str, dict[str, int | str]]]

    def _note_held(self, subjects: Sequence[Subject],
                   values: Callable[[Subject], dict[str, Any]]) -> None:
        """Requests a hold keeps open: each is written `values` and a note naming the
        holds that keep it."""
        holds = list(self.rt.control.holds())
        for s, record in zip(subjects, self._update(subjects, lambda s: {
                **values(s), "note": held_note(s, holds)}), strict=True):
            s.outcome.record = record

    def _update(self, subjects: Sequence[Subject],
                values: Callable[[Subject], dict[str, Any]]) -> list[RequestRecord]:
        """Write each subject's request `values`; the records as they now are."""
        store = requests_of(self.rt)
        store.update_each([(s.record.id, values(s)) for s in subjects])
        return store.get_many([s.record.id for s in subjects])

    def _audit_steps(self, conn: Connection | None = None) -> None:
        """One `request.erased` per request: what this run did to every dataset (in
        `conn`'s transaction when given). (A run killed before it writes them is
        accounted for by the next: its entry's `rows` come from the baselines, so rows
        minus done, retained and held is what went before that run.)"""
        self.rt.audit.append_many([RequestErased(s.record.id, self._steps[s.record.id])
                                   for s in self.subjects if self._steps[s.record.id]],
                                  conn=conn)

    def _step(self, s: Subject, name: str, report: DatasetReport, done: int) -> None:
        """Remember what this run did to a dataset for the subject's `request.erased`."""
        self._steps[s.record.id][name] = {
            "rows": report.rows, "done": done, "retained": report.retained,
            "held": report.held, "action": report.action}


__all__ = ["GroupRecords"]
