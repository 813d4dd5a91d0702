"""Canonical JSON is the standard library's encoding (sorted keys, no spaces, text as is),
which every entry and certificate has been hashed and signed over; orjson writes it
faster and must write the very same bytes for everything lethe hashes and signs."""

from __future__ import annotations

import dataclasses
import json
import typing
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from lethe.audit.chain import canonical_json
from lethe.audit.events import REGISTRY
from lethe.control.requests import json_text
from lethe.requests.certificate import DatasetOutcome, build_certificate, cite, signed_text
from lethe.requests.discovery import canonical_subject

STDLIB = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          default=str)

text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=30)


@settings(max_examples=600, deadline=None)
@given(st.dictionaries(text, values, max_size=6))
def test_the_same_bytes_as_the_standard_library(document: dict[str, Any]) -> None:
    # text of every code point (controls, U+2028, emoji, unpaired surrogates), integers
    # past 64 bits, nesting: the two agree, or orjson refuses and the library writes it
    assert canonical_json(document) == STDLIB.encode(document)


def test_values_orjson_would_write_its_own_way_go_to_the_standard_library() -> None:
    class Name(str):
        def __str__(self) -> str:
            return "overridden"

    @dataclasses.dataclass
    class Pair:
        a: int

    at = datetime(2026, 12, 7, 1, 2, 3, 456789, tzinfo=UTC)
    for document in ({"at": at}, {"name": Name("x")}, {"pair": Pair(1)},
                     {"big": 2**64}, {"k": "\ud800"}, {"nested": [{"at": at}]}):
        assert canonical_json(document) == STDLIB.encode(document)
    assert canonical_json({"at": at}) == '{"at":"2026-12-07 01:02:03.456789+00:00"}'


def test_no_registered_event_carries_a_float() -> None:
    """Floats are where the two encoders differ: no event may hold one."""
    for cls in set(REGISTRY.values()):
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            assert "float" not in str(hints[field.name]), (cls.__name__, field.name)


def test_a_certificate_body_is_the_same_bytes_as_the_standard_library() -> None:
    now = datetime(2026, 12, 7, 1, 2, 3, 456789, tzinfo=UTC)
    body = build_certificate(
        organization="Acme Inc. — Zürich", request_id=7, subject_kind="user",
        subject_fingerprint="3e4f" * 16, received_at=now, completed_at=now, due_at=now,
        outcomes=[DatasetOutcome("users", 1, 1, 0, 0, "delete", None),
                  DatasetOutcome("payments", 2, 0, 2, 0, "retain", "tax law: 10 years")],
        audit_entries=(), audit_checkpoint=None)
    cited = cite(body, [(5, "ab" * 32), (9, "cd" * 32)], (12, "ef" * 32))
    assert canonical_json(cited) == STDLIB.encode(cited)
    document, kept = signed_text(cited, Ed25519PrivateKey.generate())
    assert kept.startswith('{"certificate":' + STDLIB.encode(cited) + ',"signature":')
    assert json.loads(kept) == json.loads(json.dumps(document))


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(text, text, max_size=4), text)
def test_a_subject_is_fingerprinted_over_the_same_text_as_ever(identities: dict[str, str],
                                                                kind: str) -> None:
    """Every open request's fingerprint was computed over the standard library's text
    (non-ASCII escaped): the faster encoding must not move one."""
    assert canonical_subject(kind, identities) == json.dumps(
        {"kind": kind, "identities": dict(sorted(identities.items()))},
        sort_keys=True, separators=(",", ":"))


def test_request_columns_read_back_what_was_written() -> None:
    """A request's JSON columns (never hashed) are written by orjson, and what it
    cannot write (an integer past 64 bits) by the standard library, as before."""
    result = {"orders": {"rows": 2**70, "erased": 1}, "note": "Zürich \x7f", "n": 1e-05}
    assert json.loads(json_text(result)) == result
