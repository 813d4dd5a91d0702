"""Per-subject data keys, stored only wrapped by the KEK, in the control store.

Shredding a subject sets its wrapped key to NULL: every copy of that subject's
encrypted fields — live rows, backups, archives, dumps — becomes unreadable, and a
restored old copy of this table is unreadable too once the KEK it was wrapped under
has been rotated away.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from lethe.control.schema import subject_keys
from lethe.control.tx import transaction
from lethe.crypto.kek import KekProvider
from lethe.crypto.primitives import cipher_for, new_key
from lethe.errors import LetheError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class Shredded(LetheError):
    """The subject's data key was destroyed: the value is gone for good."""

    exit_code = 1


def subject_ref(subject_kind: str, subject_id: object) -> str:
    return hashlib.sha256(f"{subject_kind}\x1f{subject_id}".encode()).hexdigest()


def live_subjects(engine: Engine, subject_kind: str, subject_ids: list[object]) -> list[object]:
    """The subjects among `subject_ids` whose data key still exists (no KEK needed)."""
    refs = {subject_ref(subject_kind, i): i for i in subject_ids}
    live: list[object] = []
    chunks = [list(refs)[i:i + 1000] for i in range(0, len(refs), 1000)]
    with transaction(engine, "reading data keys", write=False) as conn:
        for chunk in chunks:
            found = conn.execute(sa.select(subject_keys.c.subject_ref).where(
                subject_keys.c.subject_ref.in_(chunk), subject_keys.c.wrapped.is_not(None)))
            live += [refs[r] for r in found.scalars()]
    return live


def shred_subject(engine: Engine, subject_kind: str, subject_id: object,
                  at: datetime | None = None) -> str | None:
    """Destroy a subject's data key; the destroyed key's id, or None if it had none."""
    ref = subject_ref(subject_kind, subject_id)
    with transaction(engine, "shredding a data key") as conn:
        row = conn.execute(sa.select(subject_keys.c.id).where(
            subject_keys.c.subject_ref == ref, subject_keys.c.wrapped.is_not(None))).first()
        if row is None:
            return None
        conn.execute(subject_keys.update().where(subject_keys.c.id == row.id).values(
            wrapped=None, shredded_at=at or datetime.now(UTC)))
    return str(row.id)


def _associated(key_id: str) -> bytes:
    return b"lethe-data-key\x1f" + key_id.encode("ascii")


class SubjectKeys:
    def __init__(self, engine: Engine, kek: KekProvider) -> None:
        self.engine = engine
        self.kek = kek
        self._ciphers: dict[str, AESGCM] = {}
        self._by_subject: dict[tuple[str, object], tuple[str, AESGCM]] = {}
        self.by_raw: dict[bytes, AESGCM] = {}

    def key_for(self, subject_kind: str, subject_id: object) -> tuple[str, AESGCM]:
        """The subject's data key (created on first use); a shredded subject has none."""
        cached = self._by_subject.get((subject_kind, subject_id))
        if cached is None:
            ref = subject_ref(subject_kind, subject_id)
            key_id = self._find(ref) or self._create(ref)
            cached = (key_id, self.cipher(key_id))
            self._by_subject[(subject_kind, subject_id)] = cached
        return cached

    def _find(self, ref: str) -> str | None:
        with transaction(self.engine, "reading a data key", write=False) as conn:
            row = conn.execute(sa.select(subject_keys.c.id, subject_keys.c.wrapped)
                               .where(subject_keys.c.subject_ref == ref)).first()
        if row is not None and row.wrapped is None:
            raise Shredded("this subject's data key was shredded", path="keys")
        return None if row is None else str(row.id)

    def _create(self, ref: str) -> str:
        key_id = secrets.token_hex(16)
        kek_id, wrapped = self.kek.wrap(new_key(), _associated(key_id))
        try:
            with transaction(self.engine, "storing a data key") as conn:
                conn.execute(subject_keys.insert().values(
                    id=key_id, subject_ref=ref, kek_id=kek_id, wrapped=wrapped,
                    created_at=datetime.now(UTC)))
        except LetheError:
            found = self._find(ref)  # another process created it first
            if found is None:
                raise
            return found
        return key_id

    def cipher(self, key_id: str) -> AESGCM:
        """The AES-GCM object for a data key id (cached: creating one costs a use)."""
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            with transaction(self.engine, "reading a data key", write=False) as conn:
                row = conn.execute(sa.select(subject_keys.c.kek_id, subject_keys.c.wrapped)
                                   .where(subject_keys.c.id == key_id)).first()
            if row is None:
                raise LetheError("unknown data key", path="keys")
            if row.wrapped is None:
                raise Shredded("this subject's data key was shredded", path="keys")
            cipher = cipher_for(self.kek.unwrap(row.kek_id, bytes(row.wrapped),
                                                _associated(key_id)))
            self._ciphers[key_id] = cipher
        return cipher

    def cipher_by_raw_id(self, raw_id: bytes) -> AESGCM:
        """`cipher`, keyed by the id's bytes as they travel in a ciphertext (hot path)."""
        cipher = self.by_raw.get(raw_id)
        if cipher is None:
            cipher = self.by_raw[raw_id] = self.cipher(raw_id.hex())
        return cipher

    def shred(self, subject_kind: str, subject_id: object, at: datetime | None = None) -> bool:
        """Destroy the subject's data key; True if there was one to destroy."""
        key_id = shred_subject(self.engine, subject_kind, subject_id, at)
        self._by_subject.pop((subject_kind, subject_id), None)
        if key_id is not None:  # forget it here too: this process must not decrypt either
            self._ciphers.pop(key_id, None)
            self.by_raw.pop(bytes.fromhex(key_id), None)
        return key_id is not None

    def rotate(self, *, batch: int = 500,
               progress: Callable[[int], None] | None = None) -> dict[str, int | str]:
        """Rewrap every live data key under a new KEK, then retire the old ones.

        Resumable: a run killed midway left keys under an older KEK; the next run
        finishes rewrapping those under the KEK that is already current.
        """
        pending = self._pending_count()
        if pending == 0:
            self.kek.rotate()
        current = self.kek.current_id
        rewrapped = 0
        while True:
            with transaction(self.engine, "rewrapping data keys") as conn:
                rows = conn.execute(sa.select(subject_keys.c.id, subject_keys.c.kek_id,
                                              subject_keys.c.wrapped)
                                    .where(subject_keys.c.kek_id != current,
                                           subject_keys.c.wrapped.is_not(None))
                                    .limit(batch)).all()
                for row in rows:
                    data_key = self.kek.unwrap(row.kek_id, bytes(row.wrapped),
                                               _associated(row.id))
                    kek_id, wrapped = self.kek.wrap(data_key, _associated(row.id))
                    conn.execute(subject_keys.update().where(subject_keys.c.id == row.id)
                                 .values(kek_id=kek_id, wrapped=wrapped))
            if not rows:
                break
            rewrapped += len(rows)
            if progress is not None:
                progress(len(rows))
        with transaction(self.engine, "marking shredded keys") as conn:
            conn.execute(subject_keys.update().where(subject_keys.c.wrapped.is_(None))
                         .values(kek_id=current))
        self.kek.retire(current)
        return {"kek": current, "rewrapped": rewrapped}

    def _pending_count(self) -> int:
        with transaction(self.engine, "reading data keys", write=False) as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(subject_keys).where(
                subject_keys.c.kek_id != self.kek.current_id,
                subject_keys.c.wrapped.is_not(None))).scalar_one())


__all__ = ["Shredded", "SubjectKeys", "subject_ref"]
