"""Data-subject request records in the control store."""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from lethe.control.schema import requests
from lethe.control.tx import as_utc, transaction
from lethe.errors import NotFound

SCRUBBED = "{}"


@dataclass(frozen=True)
class RequestRecord:
    id: int
    kind: str
    subject_kind: str
    identities: dict[str, str]
    fingerprint: str
    status: str
    received_at: datetime
    due_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    soft_deleted_at: datetime | None
    note: str | None
    result: dict[str, Any] | None
    export_path: str | None
    certificate_path: str | None


def _record(row: Any) -> RequestRecord:
    return RequestRecord(
        row.id, row.kind, row.subject_kind, json.loads(row.identities), row.fingerprint,
        row.status, as_utc(row.received_at) or row.received_at, as_utc(row.due_at) or row.due_at,
        as_utc(row.updated_at) or row.updated_at, as_utc(row.completed_at),
        as_utc(row.soft_deleted_at), row.note, json.loads(row.result) if row.result else None,
        row.export_path, row.certificate_path)


class RequestStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _tx(self, what: str, *, write: bool = True) -> AbstractContextManager[Connection]:
        return transaction(self.engine, what, write=write)

    def _select(self, what: str, query: sa.Select[Any]) -> list[RequestRecord]:
        with self._tx(what, write=False) as conn:
            return [_record(row) for row in conn.execute(query)]

    def create(self, kind: str, subject_kind: str, identities: dict[str, str],
               fingerprint: str, received_at: datetime, due_at: datetime) -> int:
        with self._tx("opening a request") as conn:
            return int(conn.execute(requests.insert().values(
                kind=kind, subject_kind=subject_kind, identities=json.dumps(identities),
                fingerprint=fingerprint, status="received", received_at=received_at,
                due_at=due_at, updated_at=received_at).returning(requests.c.id)).scalar_one())

    def find_open(self, kind: str, fingerprint: str) -> RequestRecord | None:
        found = self._select("reading requests", sa.select(requests).where(
            requests.c.kind == kind, requests.c.fingerprint == fingerprint,
            requests.c.status.not_in(["completed", "rejected"])))
        return found[0] if found else None

    def get(self, request_id: int) -> RequestRecord:
        found = self._select("reading a request",
                             sa.select(requests).where(requests.c.id == request_id))
        if not found:
            raise NotFound(f"no request with id {request_id}", path="request")
        return found[0]

    def list(self, status: str | None = None) -> list[RequestRecord]:
        query = sa.select(requests).order_by(requests.c.id)
        if status:
            query = query.where(requests.c.status == status)
        return self._select("listing requests", query)

    def update(self, request_id: int, **values: Any) -> None:
        for name in ("result", "identities"):
            if name in values and not isinstance(values[name], str | None):
                values[name] = json.dumps(values[name])
        with self._tx("updating a request") as conn:
            conn.execute(requests.update().where(requests.c.id == request_id).values(**values))
