"""The protocol that makes a hold bind the instant `hold place` returns.

Reading the holds and then deleting is a race: a hold placed between the read and the
commit would lose rows it covers. So every unit of work that acts on data under the
holds (a row batch, a page of objects or keys, a partition drop, a shred, an archive
chunk rewrite) takes the gate *shared* before it reads the holds and keeps it until its
data-store transaction has committed; placing a hold takes it *exclusively* around the
insert's commit. A hold therefore commits either before a unit reads the holds (and the
unit sees it) or after the unit has committed (and `hold place` has not yet returned):
no unit that commits after `hold place` returns can have missed it.

The gate lives beside the holds, in the control store every worker shares:
PostgreSQL: a transaction-scoped advisory lock (`pg_advisory_xact_lock_shared` /
`pg_advisory_xact_lock`) held on a connection of its own; SQLite: `flock` on a file
next to the database (processes on one machine share a SQLite control store). Shared
entries are re-entrant per thread, so nested units never queue behind a waiting
exclusive request they block themselves.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import tempfile
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from lethe.errors import StoreError
from lethe.stores.sql import describe_db_error

GATE_LOCK = 7263003  # advisory lock key on a PostgreSQL control store (not the audit's 7263002)


class HoldGate:
    """Shared for work under the holds, exclusive for placing one (see module doc)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._local = threading.local()
        self._turns = itertools.count(1)
        self._path: str | None = None
        if engine.dialect.name != "postgresql":
            database = engine.url.database
            if database and database != ":memory:":
                self._path = os.path.abspath(database) + ".holds-lock"
            else:  # one process only: a file of its own still serialises its threads
                handle, self._path = tempfile.mkstemp(prefix="lethe-holds-", suffix=".lock")
                os.close(handle)
                # removed with the gate (its engine gone) or at exit, whichever is first
                weakref.finalize(self, _remove, self._path)

    @property
    def _depth(self) -> int:
        return int(getattr(self._local, "depth", 0))

    @contextmanager
    def shared(self) -> Iterator[None]:
        """Hold the gate shared: read the holds inside, commit the work inside."""
        if self._depth:
            self._local.depth += 1
            try:
                yield
            finally:
                self._local.depth -= 1
            return
        with self._locked(exclusive=False):
            self._local.depth = 1
            self._local.turn = next(self._turns)  # unique across threads
            try:
                yield
            finally:
                self._local.depth = 0

    @property
    def turn(self) -> int | None:
        """Which turn of this thread holds the gate shared now (None: none does). No hold
        can be placed during a turn, so holds read once in a turn stay the holds of the
        whole turn (a release meanwhile only keeps more, as it would racing a batch)."""
        return int(self._local.turn) if self._depth else None

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the gate alone: no unit of work is between its hold read and its commit."""
        if self._depth:
            raise RuntimeError("a hold cannot be placed from inside work under the holds")
        with self._locked(exclusive=True):
            yield

    @contextmanager
    def _locked(self, *, exclusive: bool) -> Iterator[None]:
        if self._path is not None:
            with _flocked(self._path, exclusive):
                yield
            return
        what = "placing a hold" if exclusive else "reading the holds"
        function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        conn: Connection | None = None
        try:
            conn = self.engine.connect()
            conn.begin()
            conn.execute(sa.text(f"SELECT {function}(:key)"), {"key": GATE_LOCK})
        except SQLAlchemyError as exc:
            if conn is not None:
                conn.close()
            raise StoreError(describe_db_error(exc, what), path="control") from None
        try:
            yield
        finally:
            try:
                conn.rollback()  # ends the transaction: the lock goes with it
            finally:
                conn.close()


@contextmanager
def _flocked(path: str, exclusive: bool) -> Iterator[None]:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StoreError(f"opening the hold lock: {exc.strerror}", path="control") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases its lock


def _remove(path: str) -> None:
    with suppress(OSError):
        os.unlink(path)


_gates: weakref.WeakKeyDictionary[Engine, HoldGate] = weakref.WeakKeyDictionary()
_gates_lock = threading.Lock()


def gate_of(engine: Engine) -> HoldGate:
    """The one gate of a control store's engine in this process."""
    with _gates_lock:
        gate = _gates.get(engine)
        if gate is None:
            gate = _gates[engine] = HoldGate(engine)
        return gate
