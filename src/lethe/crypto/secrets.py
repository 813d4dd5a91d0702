"""API key secrets: generated here, kept only as scrypt hashes.

A key reads `lethe_<id>_<secret>`. The id is public (it names the key in lists, audit
entries and responses); the secret is 32 random bytes that exist in plaintext only in
the answer that creates the key. scrypt at n = 2^15 makes a stolen hash expensive to
attack; that cost (~50-100 ms) is also why the API remembers keys it has verified.
"""

from __future__ import annotations

import base64
import os
import secrets as _random

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

PREFIX = "lethe"
SCRYPT_N = 2 ** 15
SCRYPT_R = 8
SCRYPT_P = 1
HASH_BYTES = 32


def new_key_id() -> str:
    return _random.token_hex(6)


def new_secret() -> str:
    return _random.token_urlsafe(32)


def token_for(key_id: str, secret: str) -> str:
    return f"{PREFIX}_{key_id}_{secret}"


def split_token(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed token, else None; never echoes what it was given."""
    prefix, sep, rest = token.partition("_")
    key_id, sep2, secret = rest.partition("_")
    if prefix != PREFIX or not sep or not sep2 or len(key_id) != 12 or len(secret) < 20:
        return None
    return key_id, secret


def _kdf(salt: bytes, n: int, r: int, p: int) -> Scrypt:
    return Scrypt(salt=salt, length=HASH_BYTES, n=n, r=r, p=p)


def hash_secret(secret: str) -> str:
    """`scrypt$n$r$p$salt$hash` (base64): parameters travel with the hash, so they can
    be raised later without invalidating existing keys."""
    salt = os.urandom(16)
    digest = _kdf(salt, SCRYPT_N, SCRYPT_R, SCRYPT_P).derive(secret.encode("utf-8"))
    return "$".join(["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P),
                     _b64(salt), _b64(digest)])


def verify_secret(secret: str, stored: str) -> bool:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return False
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, digest = _unb64(parts[4]), _unb64(parts[5])
        _kdf(salt, n, r, p).verify(secret.encode("utf-8"), digest)
    except (InvalidKey, ValueError):
        return False
    return True


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)
