"""The audit log in the control store: gapless appends, checkpoints, queries, pruning.

Appends serialize on a lock (PostgreSQL advisory lock, SQLite's write lock) and read
the last entry by sequence, so two processes appending at once still make one chain
with no gaps: a sequence value is assigned only inside the transaction that uses it.
"""

from __future__ import annotations

import hashlib
import hmac
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from lethe.audit.chain import (
    GENESIS,
    SEPARATOR,
    Checkpoint,
    Entry,
    Verdict,
    canonical_json,
    checkpoint_message,
    clean,
    entry_hash,
    verify_chain,
)
from lethe.audit.witness import Witness
from lethe.control.schema import audit, audit_checkpoints
from lethe.control.tx import insert_many, joined, transaction
from lethe.crypto.signing import ensure_key, key_id, load_key, public_pem, sign

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from lethe.audit.events import AuditEvent

APPEND_LOCK = 7263002
# Built once: every batch of every run appends an entry (a fresh select costs more than
# the query).
_HEAD = sa.select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc()).limit(1)
# conn.info key: (the transaction, seq, hash) of the last entry that transaction appended
_KNOWN_HEAD = "lethe_audit_known_head"
# an entry's values in the table's column order, as `append_many` writes them
ENTRY_COLUMNS = ("seq", "at", "actor", "source", "action", "target", "reason", "details",
                 "prev_hash", "hash")
if tuple(c.name for c in audit.columns) != ENTRY_COLUMNS:  # (checked once, at import)
    raise RuntimeError("lethe_audit's columns are not ENTRY_COLUMNS")


def _last_entry(conn: Connection) -> tuple[int, str] | None:
    """The last entry's (seq, hash): as this transaction last appended it, or read; None
    when there is no entry."""
    known = conn.info.get(_KNOWN_HEAD)
    if known is not None and known[0] is conn.get_transaction() is not None:
        return known[1], known[2]
    row = conn.execute(_HEAD).first()
    return None if row is None else (int(row.seq), str(row.hash))


def _known_head(conn: Connection, seq: int, digest: str) -> None:
    """Remember the head this transaction just appended: while it holds the append lock
    no one else appends, so its next append or checkpoint need not read it back. Tied to
    the transaction object: any other transaction on the connection reads it again. (A
    savepoint rolled back after an append would leave it wrong: the control store uses
    none; one that did would have to forget it.)"""
    conn.info[_KNOWN_HEAD] = (conn.get_transaction(), seq, digest)


def prefetched(fetch: Callable[[], list[Any]]) -> Iterator[Any]:
    """Fetch the next block on a thread while the caller hashes this one.

    The database builds and sends rows on its own core; without this, verification
    waits for every block and the two never overlap.
    """
    blocks: queue.Queue[list[Any] | BaseException] = queue.Queue(maxsize=4)
    stop = threading.Event()

    def produce() -> None:
        try:
            while not stop.is_set() and (block := fetch()):
                blocks.put(block)
            blocks.put([])
        except BaseException as exc:  # handed to the consumer, which re-raises it
            blocks.put(exc)

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    try:
        while True:
            block = blocks.get()
            if isinstance(block, BaseException):
                raise block
            if not block:
                return
            yield from block
    finally:
        stop.set()  # the caller may stop early (a bad link): let the producer finish
        while worker.is_alive():
            with suppress(queue.Empty):
                blocks.get(timeout=0.05)
        worker.join()


def timestamp(moment: datetime | None = None) -> str:
    """Fixed-width UTC text, so string order is time order in every database."""
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class AuditSettings:
    organization: str
    key_path: Path
    checkpoint_every: int = 1000
    witness: Witness | None = None  # where signed checkpoints also go (audit.witness)


class AuditLog:
    def __init__(self, engine: Engine, settings: AuditSettings, *, actor: str,
                 source: str) -> None:
        self.engine = engine
        self.settings = settings
        self.actor = clean(actor)
        self.source = clean(source)
        self._key: Ed25519PrivateKey | None = None
        self._pepper: bytes | None = None
        self._witnessed = 0  # the highest checkpoint this process handed to the witness
        # (a bulk run certifies on a thread of its own: checkpoints reach the witness in
        # order, never an older one after a newer)
        self._witnessing = threading.Lock()

    def acting_as(self, actor: str, source: str) -> AuditLog:
        """The same log, written in someone else's name (an API key, a worker): the
        signing key and fingerprint pepper are shared, not read again."""
        view = AuditLog(self.engine, self.settings, actor=actor, source=source)
        self.fingerprint("")  # derives the pepper once, here
        view._key, view._pepper = self.key(), self._pepper
        return view

    # -- writing ------------------------------------------------------------------------
    @contextmanager
    def _locked(self, what: str, conn: Connection | None = None) -> Iterator[Connection]:
        with joined(self.engine, conn, what) as locked:
            self.lock(locked)
            yield locked

    @staticmethod
    def lock(conn: Connection) -> None:
        """Take the append lock in `conn`'s write transaction now, until it ends: what
        it reads before it appends, no other writer changes meanwhile. (PostgreSQL: a
        transaction-scoped advisory lock, taken again by every append; a SQLite write
        transaction already holds the database's write lock.)"""
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": APPEND_LOCK})

    def key(self) -> Ed25519PrivateKey:
        if self._key is None:
            self._key = ensure_key(self.settings.key_path)
        return self._key

    def fingerprint(self, text: str) -> str:
        """An HMAC of `text` under a key derived from the organization's: stable, but not
        something anyone holding a list of emails can recompute and match."""
        if self._pepper is None:
            from cryptography.hazmat.primitives.serialization import (
                Encoding,
                NoEncryption,
                PrivateFormat,
            )

            raw = self.key().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
            self._pepper = hashlib.sha256(b"lethe-fingerprint\x1f" + raw).digest()
        return hmac.new(self._pepper, text.encode("utf-8"), hashlib.sha256).hexdigest()

    def append(self, event: AuditEvent) -> Entry:
        return self.append_many([event])[0]

    def append_many(self, events: Sequence[AuditEvent], *,
                    conn: Connection | None = None) -> list[Entry]:
        """Append in one transaction: one lock and one commit for the whole list; in
        `conn`'s open transaction when given (the entries commit with that work)."""
        from lethe.audit.events import require_registered  # loaded by whoever made them

        for event in events:
            require_registered(event)
        written: list[Entry] = []
        if not events:
            return written
        own = conn is None
        signed: list[Checkpoint] = []
        with self._locked("appending to the audit log", conn) as conn:
            seq, prev = self._head(conn)
            at = timestamp()  # one instant for the whole append
            rows = []
            for event in events:
                target, details = event.entry()
                fields = (at, self.actor, self.source, event.name, clean(target),
                          clean(event.reason), canonical_json(details))
                seq += 1
                digest = entry_hash(prev, seq, fields)
                written.append(Entry(seq, *fields, prev, digest))
                rows.append((seq, *fields, prev, digest))  # ENTRY_COLUMNS, the table's order
                prev = digest
            insert_many(conn, audit, rows)
            _known_head(conn, seq, prev)
            for entry in written:
                if entry.seq % self.settings.checkpoint_every == 0:
                    signed.append(self._write_checkpoint(conn, entry.seq, entry.hash))
        if own:  # committed: witnessed now (in the caller's transaction, the end-of-run
            self.witness(signed)  # checkpoint, signed after its commit, covers them)
        return written

    def witness(self, marks: Sequence[Checkpoint]) -> None:
        """Hand committed checkpoints to the witness, if one is configured."""
        if self.settings.witness is None:
            return
        with self._witnessing:
            for mark in marks:
                if mark.seq > self._witnessed:
                    self.settings.witness.publish(mark)
                    self._witnessed = mark.seq

    def _head(self, conn: Connection) -> tuple[int, str]:
        """Where the next entry chains on: the last entry, else the checkpoint the log
        was pruned to, else the genesis."""
        last = _last_entry(conn)
        if last is not None:
            return last
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

    def checkpoint(self, conn: Connection | None = None) -> Checkpoint | None:
        """Sign the current head unless it is already signed (end of every run), and hand
        the head's checkpoint to the witness. The new checkpoint, if one was made. In
        `conn`'s open transaction when given: the caller hands the head's checkpoint to
        the witness (`witness`) once that has committed."""
        with self._locked("writing an audit checkpoint", conn) as locked:
            last = _last_entry(locked)
            if last is None:
                return None
            seq, digest = last
            signed = locked.execute(sa.select(audit_checkpoints)
                                    .where(audit_checkpoints.c.seq == seq)).first()
            head = self._write_checkpoint(locked, seq, digest) \
                if signed is None else Checkpoint(*signed)
            made = head if signed is None else None
        if conn is None:
            self.witness([head])
        return made

    # -- reading ------------------------------------------------------------------------
    def _read(self, what: str,
              conn: Connection | None = None) -> AbstractContextManager[Connection]:
        """A read transaction of its own, or `conn`'s open one when given."""
        return nullcontext(conn) if conn is not None else \
            transaction(self.engine, what, write=False)

    def entries(self, *, since: str | None = None, until: str | None = None,
                action: str | None = None, target: str | None = None,
                targets: Sequence[str] | None = None, limit: int | None = None,
                after: int | None = None,
                visible: tuple[Sequence[str], Sequence[str]] | None = None,
                conn: Connection | None = None) -> list[Entry]:
        """Entries in order; `targets` picks exact targets (a whole batch of requests);
        `after` starts past a sequence number (paging); `visible` = (actors, targets)
        keeps entries written by one of the actors or about one of the targets. In
        `conn`'s open transaction when given (it sees what that one appended)."""
        query = sa.select(audit).order_by(audit.c.seq)
        if targets is not None:
            query = query.where(audit.c.target.in_(list(targets)))
        if after is not None:
            query = query.where(audit.c.seq > after)
        if visible is not None:
            actors, about = visible
            query = query.where(sa.or_(audit.c.actor.in_(list(actors)),
                                       audit.c.target.in_(list(about))))
        if since:
            query = query.where(audit.c.at >= since)
        if until:
            query = query.where(audit.c.at < until)
        if action:
            query = query.where(sa.or_(audit.c.action == action,
                                       audit.c.action.startswith(action.rstrip(".") + ".")))
        if target:  # `hold:7` is exact (indexed); `hold` means every `hold:…`
            query = query.where(audit.c.target == target) if ":" in target else \
                query.where(audit.c.target.startswith(target + ":"))
        if limit:
            query = query.limit(limit)
        with self._read("reading the audit log", conn) as reading:
            return [Entry(*row) for row in reading.execute(query)]

    def cited(self, targets: Sequence[str], conn: Connection | None = None
              ) -> list[tuple[str, int, str]]:
        """(target, seq, hash) of the targets' entries in order: what a certificate cites
        of them, without reading and building whole entries (a bulk run cites thousands
        of requests' entries a minute)."""
        query = sa.select(audit.c.target, audit.c.seq, audit.c.hash) \
            .where(audit.c.target.in_(list(targets))).order_by(audit.c.seq)
        with self._read("reading the audit log", conn) as reading:
            return [tuple(row) for row in reading.execute(query).all()]

    def checkpoints(self, conn: Connection | None = None) -> list[Checkpoint]:
        with self._read("reading audit checkpoints", conn) as reading:
            return [Checkpoint(*row) for row in reading.execute(
                sa.select(audit_checkpoints).order_by(audit_checkpoints.c.seq))]

    def public_key_pem(self) -> str:
        return public_pem(load_key(self.settings.key_path))

    def verify(self, public_key: Any | None = None, witness: Witness | None = None) -> Verdict:
        """Verify the stored chain against the checkpoints and the organization's key,
        and, given a witness, against the latest checkpoint it holds (so a tail cut off
        together with the checkpoint rows that covered it is caught). A log with nothing
        in it yet is valid and needs no key (a fresh control store, before `lethe init`
        made one). Without `witness`, the configured one, when it can be read back."""
        marks = self.checkpoints()
        witnessed = None
        if witness is None and self.settings.witness is not None \
                and self.settings.witness.readable:
            witness = self.settings.witness
        if witness is not None:
            witnessed = witness.latest()
            if witnessed is None and marks:
                return Verdict(False, 0, None, "the witness holds no checkpoint", len(marks))
            if witnessed is not None:
                stored = next((m for m in marks if m.seq == witnessed.seq), None)
                if stored is not None and stored != witnessed:
                    return Verdict(False, 0, witnessed.seq, "checkpoint differs from the "
                                   "witnessed one", len(marks), witnessed.seq)
                if stored is None:
                    marks.append(witnessed)
        verdict = self._verify(marks, public_key)
        return replace(verdict, witnessed=witnessed.seq if witnessed else None)

    def _verify(self, marks: list[Checkpoint], public_key: Any | None) -> Verdict:
        if public_key is None and not marks and not self.settings.key_path.exists():
            with self._read("verifying the audit log") as conn:
                if conn.execute(sa.select(audit.c.seq).limit(1)).first() is None:
                    return Verdict(True, 0, None)
        key = public_key if public_key is not None else \
            load_key(self.settings.key_path).public_key()
        sep = sa.literal(SEPARATOR)
        body: sa.ColumnElement[Any] = audit.c.at
        for column in (audit.c.actor, audit.c.source, audit.c.action, audit.c.target,
                       audit.c.reason, audit.c.details):
            body = body + sep + column  # concatenated by the database: one string per row
        query = sa.select(audit.c.seq, body, audit.c.prev_hash, audit.c.hash) \
            .order_by(audit.c.seq)
        with self._read("verifying the audit log") as conn:
            return verify_chain(self._stream(conn, query), marks,
                                organization=self.settings.organization, public_key=key)

    @staticmethod
    def _stream(conn: Connection, query: sa.Select[Any]) -> Iterator[tuple[Any, ...]]:
        """Plain tuples straight from the driver: verification is bound by row fetching."""
        if conn.dialect.name == "postgresql":
            compiled = query.compile(dialect=conn.dialect)
            driver = conn.connection.driver_connection
            assert driver is not None
            with driver.cursor(name="lethe_audit_verify") as cursor:
                cursor.execute(str(compiled), compiled.params)
                yield from prefetched(lambda: cursor.fetchmany(5_000))
        else:
            yield from conn.execution_options(stream_results=True, yield_per=20_000) \
                .execute(query)

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
        from lethe.audit.events import AuditPruned

        self.append(AuditPruned(int(through), int(removed), cutoff))
        return int(removed)
