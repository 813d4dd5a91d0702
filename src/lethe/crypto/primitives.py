"""The only module that touches AES-GCM directly (the "hazmat" layer of lethe).

Recipes (`lethe.crypto.fields`, `lethe.crypto.keys`) call these; nothing else does.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when a key is made or used: a command that encrypts nothing
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # does not load it

NONCE_BYTES = 12
KEY_BYTES = 32


class DecryptionFailed(Exception):
    """Wrong key, wrong associated data, or tampered ciphertext (never says which)."""


def new_key() -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM.generate_key(bit_length=256)


def seal(cipher: AESGCM, plaintext: bytes, associated: bytes) -> bytes:
    """nonce ‖ ciphertext+tag, with a fresh random nonce."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + cipher.encrypt(nonce, plaintext, associated)


def open_sealed(cipher: AESGCM, sealed: bytes, associated: bytes, start: int = 0) -> bytes:
    """Open `sealed[start:]` (nonce ‖ ciphertext+tag); slicing bytes here is cheaper than
    a memoryview for field-sized values."""
    try:
        return cipher.decrypt(sealed[start:start + NONCE_BYTES], sealed[start + NONCE_BYTES:],
                              associated)
    except (_invalid_tag(), ValueError):
        raise DecryptionFailed() from None


def cipher_for(key: bytes) -> AESGCM:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def _invalid_tag() -> type[Exception]:
    from cryptography.exceptions import InvalidTag

    return InvalidTag
