"""The audit log in the control store: gapless appends, checkpoints, queries, pruning.

Appends serialize on a lock (PostgreSQL advisory lock, SQLite's write lock) and read
the last entry by sequence, so two processes appending at once still make one chain
with no gaps: a sequence value is assigned only inside the transaction that uses it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from lethe.audit.chain import (
    GENESIS,
    Checkpoint,
    Entry,
    Verdict,
    canonical_json,
    checkpoint_message,
    clean,
    entry_hash,
    verify_chain,
)
from lethe.audit.events import AuditEvent, AuditPruned, require_registered
from lethe.control.schema import audit, audit_checkpoints
from lethe.crypto.signing import ensure_key, key_id, load_key, public_pem, sign
from lethe.errors import StoreError
from lethe.stores.sql import describe_db_error

APPEND_LOCK = 7263002


def timestamp(moment: datetime | None = None) -> str:
    """Fixed-width UTC text, so string order is time order in every database."""
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class AuditSettings:
    organization: str
    key_path: Path
    checkpoint_every: int = 1000


class AuditLog:
    def __init__(self, engine: Engine, settings: AuditSettings, *, actor: str,
                 source: str) -> None:
        self.engine = engine
        self.settings = settings
        self.actor = clean(actor)
        self.source = clean(source)
        self._key: Ed25519PrivateKey | None = None

    # -- writing ------------------------------------------------------------------------
    @contextmanager
    def _locked(self, what: str) -> Iterator[Connection]:
        try:
            with self.engine.connect().execution_options(lethe_write=True) as conn, \
                    conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": APPEND_LOCK})
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(describe_db_error(exc, what), path="control") from None

    def key(self) -> Ed25519PrivateKey:
        if self._key is None:
            self._key = ensure_key(self.settings.key_path)
        return self._key

    def append(self, event: AuditEvent) -> Entry:
        require_registered(event)
        fields = (timestamp(), self.actor, self.source, event.name, clean(event.target),
                  clean(event.reason), canonical_json(event.details()))
        with self._locked("appending to the audit log") as conn:
            seq, prev = self._head(conn)
            seq += 1
            digest = entry_hash(prev, seq, fields)
            conn.execute(audit.insert().values(
                seq=seq, at=fields[0], actor=fields[1], source=fields[2], action=fields[3],
                target=fields[4], reason=fields[5], details=fields[6], prev_hash=prev,
                hash=digest))
            if seq % self.settings.checkpoint_every == 0:
                self._write_checkpoint(conn, seq, digest)
        return Entry(seq, *fields, prev, digest)

    def _head(self, conn: Connection) -> tuple[int, str]:
        row = conn.execute(sa.select(audit.c.seq, audit.c.hash)
                           .order_by(audit.c.seq.desc()).limit(1)).first()
        if row is not None:
            return int(row.seq), str(row.hash)
        anchor = conn.execute(sa.select(audit_checkpoints.c.seq, audit_checkpoints.c.head_hash)
                              .order_by(audit_checkpoints.c.seq.desc()).limit(1)).first()
        return (int(anchor.seq), str(anchor.head_hash)) if anchor else (0, GENESIS)

    def _write_checkpoint(self, conn: Connection, seq: int, head: str) -> Checkpoint:
        at = timestamp()
        key = self.key()
        mark = Checkpoint(seq, head, at, key_id(key),
                          sign(key, checkpoint_message(self.settings.organization, seq, head,
                                                       at)))
        conn.execute(audit_checkpoints.insert().values(**mark.as_dict()))
        return mark

    def checkpoint(self) -> Checkpoint | None:
        """Sign the current head unless it is already signed (end of every run)."""
        with self._locked("writing an audit checkpoint") as conn:
            row = conn.execute(sa.select(audit.c.seq, audit.c.hash)
                               .order_by(audit.c.seq.desc()).limit(1)).first()
            if row is None:
                return None
            signed = conn.execute(sa.select(audit_checkpoints.c.seq)
                                  .where(audit_checkpoints.c.seq == row.seq)).first()
            if signed is not None:
                return None
            return self._write_checkpoint(conn, int(row.seq), str(row.hash))

    # -- reading ------------------------------------------------------------------------
    def _read(self, what: str) -> Any:
        try:
            return self.engine.connect()
        except SQLAlchemyError as exc:
            raise StoreError(describe_db_error(exc, what), path="control") from None

    def entries(self, *, since: str | None = None, until: str | None = None,
                action: str | None = None, target: str | None = None,
                limit: int | None = None) -> list[Entry]:
        query = sa.select(audit).order_by(audit.c.seq)
        if since:
            query = query.where(audit.c.at >= since)
        if until:
            query = query.where(audit.c.at < until)
        if action:
            query = query.where(sa.or_(audit.c.action == action,
                                       audit.c.action.startswith(action.rstrip(".") + ".")))
        if target:
            query = query.where(sa.or_(audit.c.target == target,
                                       audit.c.target.startswith(target + ":")))
        if limit:
            query = query.limit(limit)
        with self._read("reading the audit log") as conn:
            return [Entry(*row) for row in conn.execute(query)]

    def checkpoints(self) -> list[Checkpoint]:
        with self._read("reading audit checkpoints") as conn:
            return [Checkpoint(*row) for row in conn.execute(
                sa.select(audit_checkpoints).order_by(audit_checkpoints.c.seq))]

    def public_key_pem(self) -> str:
        return public_pem(load_key(self.settings.key_path))

    def verify(self, public_key: Any | None = None) -> Verdict:
        """Verify the stored chain against the checkpoints and the organization's key."""
        key = public_key if public_key is not None else \
            load_key(self.settings.key_path).public_key()
        marks = self.checkpoints()
        query = sa.select(audit.c.seq, audit.c.at, audit.c.actor, audit.c.source,
                          audit.c.action, audit.c.target, audit.c.reason, audit.c.details,
                          audit.c.prev_hash, audit.c.hash).order_by(audit.c.seq)
        with self._read("verifying the audit log") as conn:
            rows = conn.execution_options(stream_results=True, yield_per=20_000).execute(query)
            return verify_chain(rows, marks, organization=self.settings.organization,
                                public_key=key)

    # -- retention ----------------------------------------------------------------------
    def prune(self, older_than: datetime) -> int:
        """Drop entries older than `older_than`, up to the last checkpoint among them.

        What remains starts right after a signed checkpoint, so it still verifies; the
        pruning itself is an entry in the chain, so a silent deletion cannot pose as one.
        """
        cutoff = timestamp(older_than)
        with self._locked("pruning the audit log") as conn:
            last_old = conn.execute(sa.select(sa.func.max(audit.c.seq))
                                    .where(audit.c.at < cutoff)).scalar()
            if last_old is None:
                return 0
            through = conn.execute(sa.select(sa.func.max(audit_checkpoints.c.seq))
                                   .where(audit_checkpoints.c.seq <= last_old)).scalar()
            if through is None:
                return 0
            removed = conn.execute(audit.delete().where(audit.c.seq <= through)).rowcount
        self.append(AuditPruned(int(through), int(removed), cutoff))
        return int(removed)
