"""Keys: API keys and impersonation tokens (issue, list, verify, revoke), and the
rotation of the key-encryption key.

Verifying a secret costs one scrypt (tens of milliseconds by design), so a verified
token is remembered by its SHA-256 for a short while; the key's row is still read on
every call, so a revocation or an expiry takes effect at once.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from lethe.audit.events import ApiKeyCreated, ApiKeyRevoked, KeysRotated
from lethe.control.api_keys import ApiKey, ApiKeyStore
from lethe.crypto.secrets import (
    hash_secret,
    new_key_id,
    new_secret,
    split_token,
    token_for,
    verify_secret,
)
from lethe.defaults import API_ROLES as ROLES
from lethe.defaults import ORG
from lethe.errors import UsageError
from lethe.runtime import Runtime

MAX_IMPERSONATION = timedelta(hours=1)
REMEMBER_SECONDS = 300.0
TOUCH_EVERY = timedelta(minutes=1)  # last-used is a write: at most once a minute per key


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    token: str  # the only time the plaintext exists outside its holder


def actor_of(key: ApiKey) -> str:
    """The audit log's actor for what a key does (and the admin behind it, if any)."""
    if key.impersonator:
        return f"key:{key.id} (impersonated by key:{key.impersonator})"
    return f"key:{key.id}"


def _check_scope(role: str, workspace: str) -> None:
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r} (one of {', '.join(ROLES)})", path="--role")
    if not workspace.strip() or workspace != workspace.strip():
        raise UsageError("a workspace id (or __org__) is required", path="--workspace")
    if len(workspace) > 200:
        raise UsageError("workspace id longer than 200 characters", path="--workspace")


def _keys(rt: Runtime) -> ApiKeyStore:
    return ApiKeyStore(rt.control.engine)


def create_api_key(rt: Runtime, role: str, workspace: str, name: str = "", *,
                   expires_at: datetime | None = None, impersonator: str | None = None,
                   reason: str = "") -> IssuedKey:
    """A new key for `role` in `workspace` (or ORG), audited in `rt`'s actor's name.
    Only a hash of its secret is kept; the returned token is the one copy."""
    _check_scope(role, workspace)
    key_id, secret = new_key_id(), new_secret()
    key = _keys(rt).add(key_id, hash_secret(secret), role, workspace, name or role,
                        datetime.now(UTC), rt.audit.actor, expires_at, impersonator)
    rt.audit.append(ApiKeyCreated(key_id, role, workspace,
                                  expires_at.isoformat() if expires_at else None,
                                  impersonator, reason))
    return IssuedKey(key, token_for(key_id, secret))


def impersonate(rt: Runtime, role: str, workspace: str, minutes: int, reason: str, *,
                admin: ApiKey) -> IssuedKey:
    """A short-lived token acting as `role` in `workspace`, issued by an admin key.
    Only a workspace can be impersonated: an organization key already spans them all,
    and one acting as the organization would be a second organization key."""
    if workspace == ORG:
        raise UsageError("the organization cannot be impersonated; name a workspace",
                         path="workspace")
    if not 1 <= minutes <= MAX_IMPERSONATION.total_seconds() // 60:
        raise UsageError("minutes must be between 1 and 60", path="minutes")
    if not reason.strip():
        raise UsageError("an impersonation needs a reason", path="reason")
    expires = datetime.now(UTC) + timedelta(minutes=minutes)
    return create_api_key(rt, role, workspace, f"impersonation by {admin.id}",
                          expires_at=expires, impersonator=admin.id, reason=reason)


def list_api_keys(rt: Runtime, *, include_revoked: bool = False) -> list[ApiKey]:
    """Keys (never their secrets), revoked ones only when asked."""
    return _keys(rt).list(include_revoked=include_revoked)


def workspace_actors(rt: Runtime, workspace: str | None) -> list[str]:
    """The audit actors of every key, revoked or not, ever issued to `workspace`: what
    that workspace did, as the audit log and the holds name it."""
    return [actor_of(k) for k in list_api_keys(rt, include_revoked=True)
            if k.workspace == workspace]


def revoke_api_key(rt: Runtime, key_id: str) -> ApiKey:
    """Revoke a key at once (and with it the impersonation tokens it issued)."""
    key = _keys(rt).revoke(key_id, datetime.now(UTC))
    rt.audit.append(ApiKeyRevoked(key_id))
    return key


def rotate_kek(rt: Runtime, batch: int = 500) -> dict[str, Any]:
    """A new key-encryption key; every subject data key rewrapped under it (`batch` per
    transaction, resumable) and the old one retired, audited."""
    result = rt.subject_keys().rotate(batch=batch)
    rt.audit.append(KeysRotated(str(result["kek"]), int(result["rewrapped"])))
    return result


class Authenticator:
    """Token → active key, or None. Thread-safe: the API serves calls on a pool."""

    def __init__(self, store: ApiKeyStore) -> None:
        self.store = store
        self._verified: dict[str, tuple[str, float]] = {}  # sha256(token) -> (id, when)
        self._touched: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def key_for(self, token: str) -> ApiKey | None:
        parts = split_token(token)
        if parts is None:
            return None
        key_id, secret = parts
        mark = hashlib.sha256(token.encode("utf-8")).hexdigest()
        with self._lock:
            remembered = self._verified.get(mark)
        fresh = remembered is not None and remembered[0] == key_id \
            and time.monotonic() - remembered[1] < REMEMBER_SECONDS
        key = self.store.find(key_id)
        now = datetime.now(UTC)
        if key is None or not key.active(now):
            return None
        if not fresh:
            stored = self.store.secret_hash(key_id)
            if stored is None or not verify_secret(secret, stored):
                return None
            with self._lock:
                self._verified[mark] = (key_id, time.monotonic())
        self._touch(key.id, now)
        return key

    def _touch(self, key_id: str, now: datetime) -> None:
        with self._lock:
            last = self._touched.get(key_id)
            if last is not None and now - last < TOUCH_EVERY:
                return
            self._touched[key_id] = now
        self.store.touch(key_id, now)


def authenticator(rt: Runtime) -> Authenticator:
    """The API's token checker over `rt`'s control store, kept for the app's lifetime
    (it remembers verified tokens)."""
    return Authenticator(_keys(rt))


__all__ = ["ORG", "ROLES", "ApiKey", "Authenticator", "IssuedKey", "actor_of",
           "authenticator", "create_api_key", "impersonate", "list_api_keys",
           "revoke_api_key", "rotate_kek", "workspace_actors"]
