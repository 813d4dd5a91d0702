"""Workspace region preferences, as set through the API (`PATCH /v1/workspaces/{id}`).

A workspace with no row, or a NULL region, has no preference of its own.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from lethe.control.schema import workspaces
from lethe.control.tx import as_utc, transaction


@dataclass(frozen=True)
class WorkspaceRegion:
    workspace: str
    region: str | None
    updated_at: datetime
    updated_by: str


class WorkspaceRegions:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _tx(self, what: str, *, write: bool = True) -> AbstractContextManager[Connection]:
        return transaction(self.engine, what, write=write)

    def set(self, workspace: str, region: str | None, updated_by: str) -> WorkspaceRegion:
        """Insert or replace the workspace's preference (NULL clears it)."""
        now = datetime.now(UTC)
        with self._tx("setting a workspace region") as conn:
            changed = conn.execute(workspaces.update().where(workspaces.c.id == workspace)
                                   .values(region=region, updated_at=now,
                                           updated_by=updated_by)).rowcount
            if not changed:
                conn.execute(workspaces.insert().values(id=workspace, region=region,
                                                        updated_at=now, updated_by=updated_by))
        return WorkspaceRegion(workspace, region, now, updated_by)

    def get(self, workspace: str) -> WorkspaceRegion | None:
        with self._tx("reading a workspace region", write=False) as conn:
            row = conn.execute(sa.select(workspaces).where(workspaces.c.id == workspace)).first()
        return None if row is None else _region(row)

    def all(self) -> dict[str, WorkspaceRegion]:
        """Every workspace with a recorded preference (or a cleared one), by id."""
        with self._tx("reading workspace regions", write=False) as conn:
            rows = conn.execute(sa.select(workspaces).order_by(workspaces.c.id)).all()
        return {row.id: _region(row) for row in rows}


def _region(row: Any) -> WorkspaceRegion:
    return WorkspaceRegion(str(row.id), row.region,
                           as_utc(row.updated_at) or datetime.now(UTC),
                           str(row.updated_by))
