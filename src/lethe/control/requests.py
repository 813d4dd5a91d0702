"""Data-subject request records in the control store."""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from lethe.control.schema import request_baselines, requests
from lethe.control.tx import as_utc, insert_many, joined, transaction, update_many
from lethe.errors import NotFound

SCRUBBED = "{}"
CHUNK = 900  # ids per IN list: far below SQLite's bound-parameter limit


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
    workspace: str | None = None  # the workspace that opened it; None: the organization


def _record(row: Any) -> RequestRecord:
    return RequestRecord(
        row.id, row.kind, row.subject_kind, json.loads(row.identities), row.fingerprint,
        row.status, as_utc(row.received_at) or row.received_at, as_utc(row.due_at) or row.due_at,
        as_utc(row.updated_at) or row.updated_at, as_utc(row.completed_at),
        as_utc(row.soft_deleted_at), row.note, json.loads(row.result) if row.result else None,
        row.export_path, row.certificate_path, row.workspace)


# Statements a request's every transition runs, built once: building and keying a new
# statement tree each call cost about as much as SQLite running it.
_BY_IDS = sa.select(requests).where(requests.c.id.in_(sa.bindparam("ids", expanding=True)))
_OPEN_BY_FINGERPRINT = sa.select(requests).where(
    requests.c.kind == sa.bindparam("kind"),
    requests.c.fingerprint.in_(sa.bindparam("marks", expanding=True)),
    requests.c.status.not_in(["completed", "rejected"]))


class RequestStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _tx(self, what: str, *, write: bool = True) -> AbstractContextManager[Connection]:
        return transaction(self.engine, what, write=write)

    def _select(self, what: str, query: sa.Select[Any], conn: Connection | None = None,
                values: dict[str, Any] | None = None) -> list[RequestRecord]:
        """In `conn`'s open transaction when given (it sees what that one wrote)."""
        if conn is not None:
            return [_record(row) for row in conn.execute(query, values).all()]
        with self._tx(what, write=False) as own:
            return [_record(row) for row in own.execute(query, values).all()]

    def create_many(self, kind: str, subject_kind: str,
                    subjects: list[tuple[dict[str, str], str]], received_at: datetime,
                    due_at: datetime, workspace: str | None = None, *,
                    conn: Connection | None = None) -> list[RequestRecord]:
        """One request per (identities, fingerprint), in one transaction (`conn`'s when
        given); the records as written (`RETURNING`), in order. One request per subject:
        no fingerprint twice (`open_many` opens one per subject)."""
        if not subjects:
            return []
        if len({mark for _, mark in subjects}) != len(subjects):
            raise ValueError("a fingerprint appears twice: one request per subject")
        rows = [{"kind": kind, "subject_kind": subject_kind, "identities": json_text(ids),
                 "fingerprint": mark, "status": "received", "received_at": received_at,
                 "due_at": due_at, "updated_at": received_at, "workspace": workspace}
                for ids, mark in subjects]
        with joined(self.engine, conn, "opening requests") as conn:
            # Each row's id, put back in order by its fingerprint (one per open request,
            # so unique here): asked to return rows in parameter order, SQLite ran one
            # INSERT per row (it cannot promise RETURNING's order); unordered, SQLAlchemy
            # sends many rows a statement. The rest is what was written (read back,
            # every time column cost a parse: a third of opening a request).
            ids: dict[str, int] = dict(conn.execute(requests.insert().returning(
                requests.c.fingerprint, requests.c.id), rows).all())
        received, due = as_utc(received_at), as_utc(due_at)
        assert received is not None and due is not None
        return [RequestRecord(ids[mark], kind, subject_kind, dict(identities), mark,
                              "received", received, due, received, None, None, None, None,
                              None, None, workspace)
                for identities, mark in subjects]

    def open_by_fingerprint(self, kind: str, fingerprints: list[str], *,
                            conn: Connection | None = None) -> dict[str, RequestRecord]:
        """Open requests of this kind for any of these subjects, by fingerprint (in
        `conn`'s transaction when given)."""
        found: dict[str, RequestRecord] = {}
        for start in range(0, len(fingerprints), CHUNK):
            for record in self._select("reading requests", _OPEN_BY_FINGERPRINT, conn, {
                    "kind": kind, "marks": fingerprints[start:start + CHUNK]}):
                found.setdefault(record.fingerprint, record)
        return found

    def get_many(self, request_ids: list[int], *,
                 conn: Connection | None = None) -> list[RequestRecord]:
        """These requests, in the order asked (in `conn`'s transaction when given);
        raises NotFound naming the first missing."""
        by_id: dict[int, RequestRecord] = {}
        for start in range(0, len(request_ids), CHUNK):
            for record in self._select("reading requests", _BY_IDS, conn,
                                       {"ids": request_ids[start:start + CHUNK]}):
                by_id[record.id] = record
        missing = next((i for i in request_ids if i not in by_id), None)
        if missing is not None:
            raise NotFound(f"no request with id {missing}", path="request")
        return [by_id[i] for i in request_ids]

    def update_each(self, changes: list[tuple[int, dict[str, Any]]], *,
                    conn: Connection | None = None) -> None:
        """Several requests, each with its own values, in one transaction (`conn`'s
        when given): one executemany per set of columns."""
        batches: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for request_id, values in changes:
            encoded = _encoded(values)
            names = tuple(sorted(encoded))
            batches.setdefault(names, []).append(
                (*(encoded[n] for n in names), request_id))
        with joined(self.engine, conn, "updating requests") as conn:
            for names, rows in batches.items():
                update_many(conn, requests, "id", names, rows)

    def baselines(self, request_ids: list[int]) -> dict[int, dict[str, int]]:
        """Rows per dataset each request's erasure found when it began."""
        found: dict[int, dict[str, int]] = {}
        table = request_baselines
        for start in range(0, len(request_ids), CHUNK):
            with self._tx("reading erasure baselines", write=False) as conn:
                for row in conn.execute(sa.select(table).where(
                        table.c.request_id.in_(request_ids[start:start + CHUNK]))):
                    found.setdefault(row.request_id, {})[row.dataset] = int(row.rows)
        return found

    def pointers(self, request_ids: list[int]) -> dict[int, dict[str, list[str]]]:
        """The keys of the rows each request's subject pointed at when its erasure began,
        per `referenced_by` dataset (requests begun before migration 13 have none)."""
        found: dict[int, dict[str, list[str]]] = {}
        table = request_baselines
        for start in range(0, len(request_ids), CHUNK):
            with self._tx("reading erasure baselines", write=False) as conn:
                for row in conn.execute(sa.select(table).where(
                        table.c.request_id.in_(request_ids[start:start + CHUNK]),
                        table.c.pointed.is_not(None))):
                    found.setdefault(row.request_id, {})[row.dataset] = json.loads(row.pointed)
        return found

    def set_baselines(self, baselines: dict[int, dict[str, int]],
                      pointers: Mapping[int, Mapping[str, list[str]]] | None = None, *,
                      conn: Connection | None = None) -> None:
        """Write the baselines (and the keys of the rows each subject points at), in
        `conn`'s transaction when given."""
        pointed = pointers or {}
        rows = [(request_id, dataset, int(count), json_text(pointed[request_id][dataset])
                 if dataset in pointed.get(request_id, {}) else None)
                for request_id, counts in baselines.items() for dataset, count in counts.items()]
        if rows:
            with joined(self.engine, conn, "writing erasure baselines") as conn:
                insert_many(conn, request_baselines, rows)

    def clear_baselines(self, request_ids: list[int], *,
                        conn: Connection | None = None) -> None:
        with joined(self.engine, conn, "clearing erasure baselines") as conn:
            for start in range(0, len(request_ids), CHUNK):
                conn.execute(request_baselines.delete().where(
                    request_baselines.c.request_id.in_(request_ids[start:start + CHUNK])))

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

    def list(self, status: str | None = None, *,
             workspace: str | None = None) -> list[RequestRecord]:
        """Requests in id order; `workspace` keeps only those that workspace opened."""
        query = sa.select(requests).order_by(requests.c.id)
        if status:
            query = query.where(requests.c.status == status)
        if workspace is not None:
            query = query.where(requests.c.workspace == workspace)
        return self._select("listing requests", query)

    def update(self, request_id: int, **values: Any) -> None:
        self.update_each([(request_id, values)])


JSON_COLUMNS = ("result", "identities")


def json_text(value: Any) -> str:
    """A JSON column's text (read back with `json.loads`, never hashed): orjson writes it
    in a tenth of the time (a bulk run writes each request's result, identities and
    pointers); what it cannot write, the standard library writes or refuses as ever."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


def _encoded(values: dict[str, Any]) -> dict[str, Any]:
    """JSON columns stored as text."""
    return {name: json_text(value) if name in JSON_COLUMNS
            and not isinstance(value, str | None) else value for name, value in values.items()}


def updated(record: RequestRecord, values: dict[str, Any]) -> RequestRecord:
    """The record as `update_each(values)` leaves it, without reading it back (a bulk
    run moves thousands of requests several times)."""
    decoded = {}
    for name, value in values.items():
        if name in JSON_COLUMNS and isinstance(value, str):
            value = json.loads(value)
        elif isinstance(value, datetime):
            value = as_utc(value)
        decoded[name] = value
    unknown = decoded.keys() - _FIELDS
    if unknown:
        raise TypeError(f"not a field of a request: {', '.join(sorted(unknown))}")
    # `replace` without its cost (~5 us, run twice a subject in a bulk run): the record
    # is a frozen dataclass with no __post_init__, so its fields are all there is
    changed = object.__new__(RequestRecord)
    changed.__dict__.update(record.__dict__, **decoded)
    return changed


_FIELDS = frozenset(f.name for f in fields(RequestRecord))
