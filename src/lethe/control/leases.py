"""Leases: how several workers share work through the control store.

A unit of work is a row. Claiming is one atomic statement: insert the row, or take it
over when its lease has expired (its holder died), and learn from RETURNING whether we
got it. A holder renews its lease while it works and marks the unit done at the end;
a unit that is done is never claimed again. Lease times are wall-clock times (they are
about processes staying alive), not the `--now` clock retention is judged by; on
PostgreSQL they are the server's clock, so workers on machines whose clocks disagree
still agree on when a lease has expired.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from lethe.control.schema import leases
from lethe.control.tx import as_utc, transaction


@dataclass(frozen=True)
class Lease:
    unit: str
    holder: str
    takeover: bool  # the previous holder's lease had expired


def wall_now() -> datetime:
    return datetime.now(UTC)


class LeaseStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _now(self) -> Any:
        """The clock leases are judged by: the database server's when it has one."""
        return sa.func.now() if self.engine.dialect.name == "postgresql" else wall_now()

    def claim(self, unit: str, holder: str, ttl: float) -> Lease | None:
        """Take the unit unless another holder's lease is alive or it is done."""
        now = self._now()
        insert: Any = (postgresql.insert(leases) if self.engine.dialect.name == "postgresql"
                       else sqlite.insert(leases))
        statement = insert.values(unit=unit, holder=holder, state="running",
                                  expires_at=now + timedelta(seconds=ttl), takeovers=0,
                                  updated_at=now)
        statement = statement.on_conflict_do_update(
            index_elements=[leases.c.unit],
            set_={"holder": holder, "expires_at": now + timedelta(seconds=ttl),
                  "updated_at": now, "takeovers": leases.c.takeovers + 1},
            where=sa.and_(leases.c.state == "running", leases.c.expires_at < now),
        ).returning(leases.c.takeovers)
        with transaction(self.engine, "claiming work") as conn:
            row = conn.execute(statement).first()
        return None if row is None else Lease(unit, holder, int(row.takeovers) > 0)

    def renew(self, unit: str, holder: str, ttl: float) -> bool:
        """Extend the lease; False when it is no longer ours (it expired and was taken)."""
        now = self._now()
        with transaction(self.engine, "renewing a lease") as conn:
            return bool(conn.execute(leases.update().where(
                leases.c.unit == unit, leases.c.holder == holder, leases.c.state == "running")
                .values(expires_at=now + timedelta(seconds=ttl), updated_at=now)).rowcount)

    def finish(self, unit: str, holder: str) -> bool:
        """Mark the unit done; False when the lease was lost before."""
        with transaction(self.engine, "finishing work") as conn:
            return bool(conn.execute(leases.update().where(
                leases.c.unit == unit, leases.c.holder == holder, leases.c.state == "running")
                .values(state="done", updated_at=self._now())).rowcount)

    def release(self, unit: str, holder: str, *, after: float = 0.0) -> None:
        """Give the unit back (it may be claimed again `after` seconds from now)."""
        now = self._now()
        with transaction(self.engine, "releasing work") as conn:
            conn.execute(leases.update().where(
                leases.c.unit == unit, leases.c.holder == holder, leases.c.state == "running")
                .values(expires_at=now + timedelta(seconds=after), updated_at=now))

    def states(self, prefix: str) -> dict[str, dict[str, Any]]:
        """Units starting with `prefix`: state, holder, expiry and takeovers."""
        with transaction(self.engine, "reading leases", write=False) as conn:
            rows = conn.execute(sa.select(leases).where(leases.c.unit.startswith(prefix)))
            return {r.unit: {"state": r.state, "holder": r.holder, "takeovers": r.takeovers,
                             "expires_at": as_utc(r.expires_at)} for r in rows}
