"""Retention periods workspaces set for themselves, through the API.

A dataset whose rule says `keep: {default: 90d, min: 1d, max: 7y}` (no `from:`) lets
each workspace choose its own period within those bounds
(`PUT /v1/workspaces/{id}/retention/{dataset}`). The choice lives here, in the control
store; a plan or run reads them all when it starts (lethe.engine.plan.builder_for), so a
change applies from the next plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from lethe.control.schema import retention_overrides as table
from lethe.control.tx import as_utc, joined, transaction


@dataclass(frozen=True)
class RetentionOverride:
    workspace: str
    dataset: str
    keep: str  # a duration as the policy writes it (`30d`), checked against the bounds
    updated_at: datetime
    updated_by: str

    def as_dict(self) -> dict[str, Any]:
        return {"workspace": self.workspace, "dataset": self.dataset, "keep": self.keep,
                "updated_at": self.updated_at.isoformat(), "updated_by": self.updated_by}


class RetentionOverrides:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def set(self, workspace: str, dataset: str, keep: str | None, updated_by: str, *,
            conn: Connection | None = None) -> None:
        """Record the workspace's period for the dataset (None: back to the default), in
        the caller's transaction when it passes one (with its audit entry)."""
        now = datetime.now(UTC)
        mine = sa.and_(table.c.workspace == workspace, table.c.dataset == dataset)
        with joined(self.engine, conn, "setting a retention period") as conn:
            if keep is None:
                conn.execute(table.delete().where(mine))
                return
            # one statement, so two choices at once both succeed, the later one kept;
            # the dialect's insert is imported here, where it is used: `plan` reads
            # periods only, and a PostgreSQL dialect module costs a SQLite user 30 ms
            values = {"workspace": workspace, "dataset": dataset, "keep": keep,
                      "updated_at": now, "updated_by": updated_by}
            insert: Any
            if conn.dialect.name == "postgresql":
                from sqlalchemy.dialects.postgresql import insert as postgresql_insert
                insert = postgresql_insert(table).values(**values)
            else:
                from sqlalchemy.dialects.sqlite import insert as sqlite_insert
                insert = sqlite_insert(table).values(**values)
            conn.execute(insert.on_conflict_do_update(
                index_elements=[table.c.workspace, table.c.dataset],
                set_={"keep": keep, "updated_at": now, "updated_by": updated_by}))

    def of_workspace(self, workspace: str) -> list[RetentionOverride]:
        with transaction(self.engine, "reading retention periods", write=False) as conn:
            rows = conn.execute(sa.select(table).where(table.c.workspace == workspace)
                                .order_by(table.c.dataset)).all()
        return [_override(row) for row in rows]

    def by_dataset(self) -> Mapping[str, Mapping[str, str]]:
        """dataset -> workspace -> its period: what a plan or run applies."""
        found: dict[str, dict[str, str]] = {}
        with transaction(self.engine, "reading retention periods", write=False) as conn:
            for row in conn.execute(sa.select(table.c.dataset, table.c.workspace,
                                              table.c.keep)):
                found.setdefault(row.dataset, {})[row.workspace] = str(row.keep)
        return found


def _override(row: Any) -> RetentionOverride:
    return RetentionOverride(str(row.workspace), str(row.dataset), str(row.keep),
                             as_utc(row.updated_at) or datetime.now(UTC), str(row.updated_by))
