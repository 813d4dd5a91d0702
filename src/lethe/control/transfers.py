"""Authorised residency transfers (`lethe transfer record|list|revoke`).

A transfer says: this workspace's dataset may be held in that region, for this reason,
until a date or until revoked. Rows are never deleted, so the record of who authorised
what stays next to the audit entries that describe it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from lethe.control.schema import transfers
from lethe.control.tx import as_utc, transaction
from lethe.errors import NotFound


@dataclass(frozen=True)
class Transfer:
    id: int
    workspace: str
    dataset: str
    to_region: str
    reason: str
    until: datetime | None  # exclusive; None: until revoked
    recorded_at: datetime
    recorded_by: str
    revoked_at: datetime | None = None
    revoked_by: str | None = None

    def active(self, now: datetime) -> bool:
        """Not revoked and not expired at `now`."""
        return self.revoked_at is None and (self.until is None or now < self.until)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "workspace": self.workspace, "dataset": self.dataset,
                "to_region": self.to_region, "reason": self.reason,
                "until": self.until.isoformat() if self.until else None,
                "recorded_at": self.recorded_at.isoformat(), "recorded_by": self.recorded_by,
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
                "revoked_by": self.revoked_by}


class Transfers:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _tx(self, what: str, *, write: bool = True) -> AbstractContextManager[Connection]:
        return transaction(self.engine, what, write=write)

    def record(self, workspace: str, dataset: str, to_region: str, reason: str,
               until: datetime | None, recorded_at: datetime, recorded_by: str) -> Transfer:
        with self._tx("recording a transfer") as conn:
            transfer_id = int(conn.execute(transfers.insert().values(
                workspace=workspace, dataset=dataset, to_region=to_region, reason=reason,
                until=until, recorded_at=recorded_at, recorded_by=recorded_by)
                .returning(transfers.c.id)).scalar_one())
        return Transfer(transfer_id, workspace, dataset, to_region, reason, until,
                        recorded_at, recorded_by)

    def revoke(self, transfer_id: int, revoked_at: datetime, revoked_by: str) -> Transfer:
        with self._tx("revoking a transfer") as conn:
            row = conn.execute(sa.select(transfers).where(transfers.c.id == transfer_id)).first()
            if row is None or row.revoked_at is not None:
                raise NotFound(f"no unrevoked transfer with id {transfer_id}", path="transfer")
            conn.execute(transfers.update().where(transfers.c.id == transfer_id)
                         .values(revoked_at=revoked_at, revoked_by=revoked_by))
        return _transfer(row)

    def all(self, *, include_revoked: bool = False) -> list[Transfer]:
        query = sa.select(transfers).order_by(transfers.c.id)
        if not include_revoked:
            query = query.where(transfers.c.revoked_at.is_(None))
        with self._tx("reading transfers", write=False) as conn:
            return [_transfer(row) for row in conn.execute(query)]


def _transfer(row: Any) -> Transfer:
    return Transfer(int(row.id), str(row.workspace), str(row.dataset), str(row.to_region),
                    str(row.reason), as_utc(row.until),
                    as_utc(row.recorded_at) or datetime.now(UTC), str(row.recorded_by),
                    as_utc(row.revoked_at), row.revoked_by)
