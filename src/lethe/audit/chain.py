"""Hash chaining, pure: the same functions verify the database and an offline export.

`hash_n = SHA-256(hash_{n-1} ‖ seq as 8 bytes ‖ body)`, where `body` joins the entry's
text fields with the ASCII unit separator. Fields never contain that byte (details are
JSON, which escapes control characters; other fields are cleaned on append), so the
encoding is unambiguous, and it is cheap enough to verify ~1 M entries/s in Python.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from lethe.crypto.signing import signature_valid

GENESIS = "0" * 64
SEPARATOR = "\x1f"
FIELDS = ("at", "actor", "source", "action", "target", "reason", "details")


@dataclass(frozen=True)
class Entry:
    seq: int
    at: str
    actor: str
    source: str
    action: str
    target: str
    reason: str
    details: str  # canonical JSON
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "actor": self.actor, "source": self.source,
                "action": self.action, "target": self.target, "reason": self.reason,
                "details": self.details, "prev_hash": self.prev_hash, "hash": self.hash}


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    head_hash: str
    at: str
    key_id: str
    signature: str

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "head_hash": self.head_hash, "at": self.at,
                "key_id": self.key_id, "signature": self.signature}


_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f]")  # C0 controls but tab and newline


def clean(text: str) -> str:
    """Remove the separator and other C0 controls from free text before it is hashed."""
    return _CONTROLS.sub(" ", text)


# one encoder for every call: `json.dumps` with options builds a new one each time, which
# cost more than the encoding itself for the small details of an audit entry
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              default=str)
# orjson writes the same text for what lethe hashes and signs, ~8x faster (an erasure's
# details: 12 us -> 1.6 us; a bulk erasure encodes five such documents a subject)
_FAST = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | \
    orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


def _elsewhere(value: Any) -> Any:
    raise TypeError  # not a value both encoders write alike: the standard library's


def canonical_json(data: Mapping[str, Any]) -> str:
    """Sorted keys, no spaces, text as is (control characters escaped): the standard
    library's encoding, which entries and certificates have always been hashed and
    signed over. orjson writes it for text, integers, booleans, None, lists and dicts
    keyed by text, byte for byte the same (tests compare the two over generated
    documents); the rest goes to the standard library — other types and subclasses
    (orjson hands them to `_elsewhere`), integers past 64 bits and unpaired surrogates
    (orjson refuses them). Floats would differ (orjson `0.00001`, the standard library
    `1e-05`): lethe hashes and signs none (counts, flags, text, keys; a test reads every
    registered event's fields)."""
    try:
        return orjson.dumps(data, default=_elsewhere, option=_FAST).decode()
    except TypeError:  # (orjson.JSONEncodeError is one)
        return _CANONICAL.encode(data)


PRUNED = SEPARATOR + "audit.pruned" + SEPARATOR
pack_seq = struct.Struct(">Q").pack  # seq as 8 big-endian bytes


def entry_body(fields: Iterable[str]) -> str:
    """`at, actor, source, action, target, reason, details` joined by the separator."""
    return SEPARATOR.join(fields)


def entry_hash(prev_hash: str, seq: int, fields: Iterable[str]) -> str:
    digest = hashlib.sha256(bytes.fromhex(prev_hash))
    digest.update(seq.to_bytes(8, "big"))
    digest.update(SEPARATOR.join(fields).encode("utf-8"))
    return digest.hexdigest()


def checkpoint_message(organization: str, seq: int, head_hash: str, at: str) -> bytes:
    return SEPARATOR.join(("lethe-checkpoint-v1", organization, str(seq), head_hash, at)).encode()


@dataclass(frozen=True)
class Verdict:
    ok: bool
    entries: int
    first_bad: int | None
    reason: str | None = None
    checkpoints: int = 0
    witnessed: int | None = None  # the witnessed checkpoint checked against, if any

    def as_dict(self) -> dict[str, Any]:
        data = {"ok": self.ok, "entries": self.entries, "first_bad": self.first_bad,
                "reason": self.reason, "checkpoints": self.checkpoints}
        if self.witnessed is not None:
            data["witnessed"] = self.witnessed
        return data


def verify_chain(rows: Iterable[tuple[Any, ...]], checkpoints: Iterable[Checkpoint], *,
                 organization: str, public_key: Any | None) -> Verdict:
    """Verify every link, every checkpoint signature, and truncation against the last one.

    `rows` are `(seq, body, prev_hash, hash)` in seq order (`body` as `entry_body`
    builds it; the database builds the same text in SQL); `public_key` is the
    organization's Ed25519 public key. A chain that starts after seq 1 (pruned) must
    start right after a signed checkpoint and must contain the `audit.pruned` entry that
    says so. The walk stops at the first bad
    link: everything after it is unproven.
    """
    marks = {c.seq: c for c in checkpoints}
    for signed in marks.values():
        message = checkpoint_message(organization, signed.seq, signed.head_hash, signed.at)
        if public_key is None or not signature_valid(public_key, message, signed.signature):
            return Verdict(False, 0, signed.seq, "checkpoint signature invalid", len(marks))
    count = 0
    expected = trusted = 0
    prev = GENESIS
    prev_bytes = b""
    anchor: Checkpoint | None = None
    pruned_through: set[int] = set()
    sha256 = hashlib.sha256
    for seq, body, stored_prev, stored in rows:
        if count == 0:  # where the chain starts: seq 1, or right after a signed checkpoint
            if seq != 1:
                anchor = marks.get(seq - 1)
                if anchor is None:
                    return Verdict(False, 0, 1 if seq > 1 else seq, "missing entries before "
                                   f"{seq} and no checkpoint to start from", len(marks))
                prev, trusted = anchor.head_hash, anchor.seq
            expected = seq
            prev_bytes = bytes.fromhex(prev)
        if seq != expected:
            why = "missing entry" if seq > expected else "out-of-order entry"
            return Verdict(False, count, min(seq, expected), why, len(marks))
        running = sha256(prev_bytes)
        running.update(pack_seq(seq))
        running.update(body.encode())
        digest = running.digest()
        computed = digest.hex()
        if computed != stored or stored_prev != prev:
            return Verdict(False, count, seq, "hash mismatch", len(marks))
        if seq in marks:
            if marks[seq].head_hash != computed:  # rewritten chain: consistent, but not ours
                return Verdict(False, count, trusted + 1, "chain differs from the signed "
                               f"checkpoint at {seq}", len(marks))
            trusted = seq
        if PRUNED in body and body.split(SEPARATOR)[3] == "audit.pruned":
            pruned_through.add(json.loads(body.split(SEPARATOR)[6]).get("through_seq"))
        prev, prev_bytes = computed, digest
        expected += 1
        count += 1
    last = max(marks, default=0)
    if last >= max(expected, 1) and (anchor is None or last > anchor.seq):
        return Verdict(False, count, max(expected, 1),
                       f"truncated: checkpoint {last} is past the end", len(marks))
    if anchor is not None and anchor.seq not in pruned_through:
        return Verdict(False, count, anchor.seq, "entries were removed without a pruning "
                       "record", len(marks))
    return Verdict(True, count, None, None, len(marks))
