"""Key-encryption keys (KEKs): what wraps every subject's data key.

A provider is a small class with `current_id`, `wrap` and `unwrap` (and, for
rotation, `rotate` and `retire`). A KMS or Vault provider would implement the same four
methods by calling the service's encrypt/decrypt endpoints; one KEK wraps every data
key, so the service holds one key, not one per subject.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from lethe.crypto.primitives import KEY_BYTES, cipher_for, new_key, open_sealed, seal
from lethe.errors import LetheError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEK_ENV = "LETHE_KEK"
KEK_PREVIOUS_ENV = "LETHE_KEK_PREVIOUS"


class KekError(LetheError):
    """The key-encryption key is missing, malformed or unknown."""


class KekProvider(Protocol):
    @property
    def current_id(self) -> str: ...

    def wrap(self, data_key: bytes, associated: bytes) -> tuple[str, bytes]:
        """(KEK id, wrapped key)."""
        ...

    def unwrap(self, kek_id: str, wrapped: bytes, associated: bytes) -> bytes: ...

    def rotate(self) -> str:
        """Make a new KEK current (older ones still unwrap); return its id."""
        ...

    def retire(self, keep: str) -> None:
        """Destroy every KEK but `keep`: backups wrapped under them become unreadable."""
        ...


def kek_id(key: bytes) -> str:
    return hashlib.sha256(b"lethe-kek" + key).hexdigest()[:16]


class _Keyring:
    """KEKs by id, with AES-GCM objects cached (building one costs as much as a use)."""

    def __init__(self, keys: dict[str, bytes], current: str) -> None:
        self.keys = keys
        self.current = current
        self._ciphers: dict[str, AESGCM] = {}

    def cipher(self, key_id: str) -> AESGCM:
        if key_id not in self._ciphers:
            if key_id not in self.keys:
                raise KekError(f"key-encryption key {key_id} is not available", path="keys")
            self._ciphers[key_id] = cipher_for(self.keys[key_id])
        return self._ciphers[key_id]

    def wrap(self, data_key: bytes, associated: bytes) -> tuple[str, bytes]:
        return self.current, seal(self.cipher(self.current), data_key, associated)

    def unwrap(self, key_id: str, wrapped: bytes, associated: bytes) -> bytes:
        return open_sealed(self.cipher(key_id), wrapped, associated)


class LocalKeyFile:
    """KEKs in a 0600 JSON file next to the policy (the default)."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        if not path.exists():
            if not create:
                raise KekError("key-encryption key file not found (run `lethe init`)",
                               path=str(path))
            key = new_key()
            self._save({kek_id(key): key}, kek_id(key))
        self._ring = self._load()

    @property
    def current_id(self) -> str:
        return self._ring.current

    def _load(self) -> _Keyring:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            keys = {k: base64.b64decode(v, validate=True) for k, v in data["keys"].items()}
            current = str(data["current"])
        except (OSError, ValueError, KeyError, TypeError, binascii.Error):
            raise KekError("unreadable key-encryption key file", path=str(self.path)) from None
        if current not in keys or any(len(k) != KEY_BYTES for k in keys.values()):
            raise KekError("malformed key-encryption key file", path=str(self.path))
        return _Keyring(keys, current)

    def _save(self, keys: dict[str, bytes], current: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"current": current,
                           "keys": {k: base64.b64encode(v).decode() for k, v in keys.items()}})
        temporary = self.path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)

    def wrap(self, data_key: bytes, associated: bytes) -> tuple[str, bytes]:
        return self._ring.wrap(data_key, associated)

    def unwrap(self, kek_id_: str, wrapped: bytes, associated: bytes) -> bytes:
        return self._ring.unwrap(kek_id_, wrapped, associated)

    def rotate(self) -> str:
        key = new_key()
        keys = {**self._ring.keys, kek_id(key): key}
        self._save(keys, kek_id(key))
        self._ring = self._load()
        return self._ring.current

    def retire(self, keep: str) -> None:
        self._save({keep: self._ring.keys[keep]}, keep)
        self._ring = self._load()


class EnvironmentKek:
    """A KEK from `LETHE_KEK` (base64 of 32 bytes); during a rotation the old one is in
    `LETHE_KEK_PREVIOUS`. Rotation itself is done by changing the variables."""

    def __init__(self) -> None:
        keys: dict[str, bytes] = {}
        current = ""
        for name in (KEK_PREVIOUS_ENV, KEK_ENV):
            text = os.environ.get(name)
            if text:
                try:
                    key = base64.b64decode(text, validate=True)
                except binascii.Error:
                    raise KekError("not base64", path=name) from None
                if len(key) != KEY_BYTES:
                    raise KekError("must be 32 bytes (base64)", path=name)
                keys[kek_id(key)] = key
                current = kek_id(key)
        if not os.environ.get(KEK_ENV):
            raise KekError("not set", path=KEK_ENV)
        self._ring = _Keyring(keys, current)

    @property
    def current_id(self) -> str:
        return self._ring.current

    def wrap(self, data_key: bytes, associated: bytes) -> tuple[str, bytes]:
        return self._ring.wrap(data_key, associated)

    def unwrap(self, kek_id_: str, wrapped: bytes, associated: bytes) -> bytes:
        return self._ring.unwrap(kek_id_, wrapped, associated)

    def rotate(self) -> str:
        raise KekError(f"set a new {KEK_ENV} (and the old one as {KEK_PREVIOUS_ENV}) to rotate",
                       path=KEK_ENV)

    def retire(self, keep: str) -> None:
        """Nothing to destroy here: unset LETHE_KEK_PREVIOUS once rotation is done."""


def kek_provider(key_file: Path) -> KekProvider:
    """The environment's KEK when LETHE_KEK is set, else the local key file."""
    return EnvironmentKek() if os.environ.get(KEK_ENV) else LocalKeyFile(key_file)
