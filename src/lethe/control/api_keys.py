"""API key records: who a key is (role, workspace), never its secret in plaintext."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from lethe.control.schema import api_keys
from lethe.control.tx import as_utc, transaction
from lethe.errors import NotFound


@dataclass(frozen=True)
class ApiKey:
    id: str
    role: str
    workspace: str
    name: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    impersonator: str | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def as_dict(self) -> dict[str, Any]:
        """What lists and responses show: never the hash."""
        return {"id": self.id, "role": self.role, "workspace": self.workspace,
                "name": self.name, "created_at": _iso(self.created_at),
                "created_by": self.created_by, "expires_at": _iso(self.expires_at),
                "impersonator": self.impersonator, "revoked_at": _iso(self.revoked_at),
                "last_used_at": _iso(self.last_used_at)}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


class ApiKeyStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _tx(self, what: str, *, write: bool = True) -> AbstractContextManager[Connection]:
        return transaction(self.engine, what, write=write)

    def add(self, key_id: str, secret_hash: str, role: str, workspace: str, name: str,
            created_at: datetime, created_by: str, expires_at: datetime | None = None,
            impersonator: str | None = None) -> ApiKey:
        with self._tx("creating an API key") as conn:
            conn.execute(api_keys.insert().values(
                id=key_id, secret_hash=secret_hash, role=role, workspace=workspace, name=name,
                created_at=created_at, created_by=created_by, expires_at=expires_at,
                impersonator=impersonator))
        return self.get(key_id)

    def get(self, key_id: str) -> ApiKey:
        found = self.find(key_id)
        if found is None:
            raise NotFound(f"no API key with id {key_id!r}", path="key")
        return found

    def find(self, key_id: str) -> ApiKey | None:
        with self._tx("reading an API key", write=False) as conn:
            row = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).first()
        return None if row is None else _key(row)

    def secret_hash(self, key_id: str) -> str | None:
        with self._tx("reading an API key", write=False) as conn:
            return conn.execute(sa.select(api_keys.c.secret_hash)
                                .where(api_keys.c.id == key_id)).scalar()

    def list(self, *, include_revoked: bool = False) -> list[ApiKey]:
        query = sa.select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_at.is_(None))
        with self._tx("listing API keys", write=False) as conn:
            return [_key(row) for row in conn.execute(query)]

    def revoke(self, key_id: str, at: datetime) -> ApiKey:
        """Revoke a key and every impersonation token it issued."""
        with self._tx("revoking an API key") as conn:
            done = conn.execute(api_keys.update().where(
                api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=at)).rowcount
            if not done:
                raise NotFound(f"no active API key with id {key_id!r}", path="key")
            conn.execute(api_keys.update().where(
                api_keys.c.impersonator == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=at))
        return self.get(key_id)

    def touch(self, key_id: str, at: datetime) -> None:
        with self._tx("recording an API key's use") as conn:
            conn.execute(api_keys.update().where(api_keys.c.id == key_id)
                         .values(last_used_at=at))


def _key(row: Any) -> ApiKey:
    return ApiKey(row.id, row.role, row.workspace, row.name,
                  as_utc(row.created_at) or row.created_at, row.created_by,
                  as_utc(row.expires_at), row.impersonator, as_utc(row.revoked_at),
                  as_utc(row.last_used_at))
