"""Encrypted fields: the recipe applications use, and a SQLAlchemy column type.

A token is `lethe1:` + base64(data key id ‖ nonce ‖ ciphertext+tag). The key id
travels with the value, so reading needs no subject; the associated data is
`dataset.column`, so a value pasted into another column does not decrypt.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

from lethe.crypto.keys import Shredded, SubjectKeys
from lethe.crypto.primitives import DecryptionFailed, open_sealed, seal
from lethe.errors import LetheError

PREFIX = "lethe1:"
KEY_ID_BYTES = 16


class FieldError(LetheError):
    """A token is malformed or does not belong to this dataset and column."""


def _associated(dataset: str, column: str) -> bytes:
    return f"lethe-field\x1f{dataset}.{column}".encode()


class FieldCipher:
    """Encrypts fields under their subject's data key.

    Two forms of the same sealed value: bytes (`key id ‖ nonce ‖ ciphertext+tag`, for
    binary columns and the fastest path) and text (`lethe1:` + base64 of those bytes).
    """

    def __init__(self, keys: SubjectKeys) -> None:
        self.keys = keys
        self._associated: dict[tuple[str, str], bytes] = {}

    def _aad(self, dataset: str, column: str) -> bytes:
        aad = self._associated.get((dataset, column))
        if aad is None:
            aad = self._associated[(dataset, column)] = _associated(dataset, column)
        return aad

    def encrypt_bytes(self, subject_kind: str, subject_id: object, value: bytes, *,
                      dataset: str, column: str) -> bytes:
        key_id, cipher = self.keys.key_for(subject_kind, subject_id)
        aad = self._associated.get((dataset, column)) or self._aad(dataset, column)
        return bytes.fromhex(key_id) + seal(cipher, value, aad)

    def decrypt_bytes(self, sealed: bytes, *, dataset: str, column: str) -> bytes:
        """The plaintext; `Shredded` if the subject's key was destroyed."""
        raw_id = sealed[:KEY_ID_BYTES]
        # The hot path: two dict lookups and one AES-GCM call.
        cipher = self.keys.by_raw.get(raw_id) or self.keys.cipher_by_raw_id(raw_id)
        aad = self._associated.get((dataset, column)) or self._aad(dataset, column)
        try:
            return open_sealed(cipher, sealed, aad, KEY_ID_BYTES)
        except DecryptionFailed:
            raise FieldError("does not decrypt here (another column's value, or tampered)",
                             path=f"{dataset}.{column}") from None

    def encrypt_field(self, subject_kind: str, subject_id: object, value: str, *,
                      dataset: str, column: str) -> str:
        sealed = self.encrypt_bytes(subject_kind, subject_id, value.encode("utf-8"),
                                    dataset=dataset, column=column)
        return PREFIX + binascii.b2a_base64(sealed, newline=False).decode("ascii")

    def decrypt_field(self, token: str, *, dataset: str, column: str) -> str:
        """The plaintext; `Shredded` if the subject's key was destroyed."""
        if not token.startswith(PREFIX):
            raise FieldError("not a lethe ciphertext", path=f"{dataset}.{column}")
        try:
            sealed = binascii.a2b_base64(token[len(PREFIX):])
        except (binascii.Error, ValueError):
            raise FieldError("malformed ciphertext", path=f"{dataset}.{column}") from None
        return self.decrypt_bytes(sealed, dataset=dataset, column=column).decode("utf-8")


@dataclass(frozen=True)
class ForSubject:
    """A plaintext to be written encrypted under a subject's key."""

    subject_kind: str
    subject_id: object
    value: str


class _EncryptedColumn(TypeDecorator[Any]):
    """Write `ForSubject(kind, id, text)` (or an already sealed value); read back the text,
    or None once the subject's key has been shredded. Subclasses pick the stored form."""

    cache_ok = False

    def __init__(self, cipher: FieldCipher, dataset: str, column: str) -> None:
        super().__init__()
        self.cipher = cipher
        self.dataset = dataset
        self.column = column

    def seal(self, value: ForSubject) -> Any:
        raise NotImplementedError

    def sealed(self, value: Any) -> Any | None:
        """`value` when it already is a sealed value of this form, else None."""
        raise NotImplementedError

    def unseal(self, stored: Any) -> str:
        raise NotImplementedError

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, ForSubject):
            return self.seal(value)
        stored = self.sealed(value)
        if stored is None:
            raise FieldError("write ForSubject(kind, id, value) to an encrypted column",
                             path=f"{self.dataset}.{self.column}")
        return stored

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> str | None:
        if value is None:
            return None
        try:
            return self.unseal(value)
        except Shredded:
            return None


class EncryptedText(_EncryptedColumn):
    """`Column("email", EncryptedText(cipher, "users", "email"))`: a `lethe1:` token."""

    impl = sa.Text

    def seal(self, value: ForSubject) -> str:
        return self.cipher.encrypt_field(value.subject_kind, value.subject_id, value.value,
                                         dataset=self.dataset, column=self.column)

    def sealed(self, value: Any) -> str | None:
        return value if isinstance(value, str) and value.startswith(PREFIX) else None

    def unseal(self, stored: Any) -> str:
        return self.cipher.decrypt_field(stored, dataset=self.dataset, column=self.column)


class EncryptedBytes(_EncryptedColumn):
    """The binary form for `bytea` / `BLOB` columns: no base64, about twice as fast."""

    impl = sa.LargeBinary

    def seal(self, value: ForSubject) -> bytes:
        return self.cipher.encrypt_bytes(value.subject_kind, value.subject_id,
                                         value.value.encode("utf-8"),
                                         dataset=self.dataset, column=self.column)

    def sealed(self, value: Any) -> bytes | None:
        return bytes(value) if isinstance(value, bytes | bytearray | memoryview) else None

    def unseal(self, stored: Any) -> str:
        return self.cipher.decrypt_bytes(bytes(stored), dataset=self.dataset,
                                         column=self.column).decode("utf-8")
