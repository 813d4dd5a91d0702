"""The organization's Ed25519 signing key: created once, kept in a 0600 file, never printed.

Checkpoints and certificates are signed with it; anyone holding the public key can
verify them without trusting lethe's database.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from lethe.errors import LetheError

if TYPE_CHECKING:  # imported by the functions that use them: a command that signs and
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # verifies nothing
        Ed25519PrivateKey,  # does not load cryptography
        Ed25519PublicKey,
    )

KEY_ENV = "LETHE_ORGANIZATION_KEY"


class OrganizationKeyError(LetheError):
    """The organization key is missing, unreadable or not an Ed25519 key."""


def key_path(configured: Path) -> Path:
    """The environment wins over the policy, so a key can live outside the repository."""
    override = os.environ.get(KEY_ENV)
    return Path(override) if override else configured


def create_key(path: Path) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if path.exists():
        raise OrganizationKeyError("an organization key already exists; refusing to overwrite it",
                        path=str(path))
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return key


def load_key(path: Path) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise OrganizationKeyError("organization key not found (create it with `lethe init`)",
                        path=str(path)) from None
    except OSError as exc:
        raise OrganizationKeyError(f"cannot read organization key: {exc.strerror}",
                                   path=str(path)) from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise OrganizationKeyError("not a PEM private key", path=str(path)) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise OrganizationKeyError("the organization key must be Ed25519", path=str(path))
    return key


def ensure_key(path: Path) -> Ed25519PrivateKey:
    return load_key(path) if path.exists() else create_key(path)


def public_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def key_fingerprint(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    """SHA-256 of the raw public bytes: what a published key is checked against."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def key_id(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """A short, stable name for a key: the start of its fingerprint."""
    return key_fingerprint(key)[:16]


def load_public(pem: str) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(pem.encode("ascii"))
    except (ValueError, TypeError, UnicodeEncodeError):
        raise OrganizationKeyError("not a PEM public key", path="public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise OrganizationKeyError("the public key must be Ed25519", path="public key")
    return key


def sign(key: Ed25519PrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message)).decode("ascii")


def signature_valid(public: Ed25519PublicKey, message: bytes, signature: str) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        public.verify(base64.b64decode(signature, validate=True), message)
    except (InvalidSignature, ValueError):
        return False
    return True
