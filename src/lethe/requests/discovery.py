"""Discovery: from a subject's identities to every row linked to it, dataset by dataset.

The subject's own rows match all of the given identities; every other dataset's rows
are linked to those through `belongs_to`, at any depth. The result is a condition per
dataset, in children-first order, that access exports read and erasure sweeps.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from contextlib import suppress

import orjson

from lethe.control.requests import RequestRecord
from lethe.engine.steps import StepBuilder
from lethe.errors import SchemaMismatch, UsageError
from lethe.policy.graph import Graph
from lethe.policy.model import Policy
from lethe.runtime import Runtime
from lethe.stores.base import FALSE, Condition, Eq, In, Value, all_of, any_of
from lethe.stores.sql.values import not_canonical


def parse_identities(policy: Policy, subject_kind: str, pairs: Sequence[str]) -> dict[str, str]:
    """`NAME=VALUE` pairs, each NAME one of the subject's declared identities."""
    if subject_kind not in policy.subjects:
        raise UsageError(f"unknown subject kind {subject_kind!r}", path="--subject")
    allowed = policy.subjects[subject_kind].identities
    identities: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise UsageError("expected NAME=VALUE", path="--identity")
        if name not in allowed:
            raise UsageError(f"{name!r} is not an identity of {subject_kind!r} "
                             f"(declared: {', '.join(allowed)})", path="--identity")
        if not value.strip():
            raise UsageError(f"identity {name!r} of {subject_kind!r} is empty",
                             path="--identity")
        identities[name] = value  # exactly as given: ' a@x' is not 'a@x'
    if not identities:
        raise UsageError("give at least one --identity NAME=VALUE", path="--identity")
    return identities


def identity_types(rt: Runtime, subject_kind: str) -> dict[str, str]:
    """Each identity of the subject kind -> its column's live type (as reflected)."""
    dataset = rt.policy.subjects[subject_kind].dataset
    columns = rt.catalog.table_of(dataset).columns
    types = {}
    for name in rt.policy.subjects[subject_kind].identities:
        if name not in columns:
            raise SchemaMismatch(f"identity {name!r} is not a column of the subject table",
                                 path=f"subjects.{subject_kind}.identities")
        types[name] = columns[name].type
    return types


def check_identities(types: Mapping[str, str], subject_kind: str,
                     identities: Mapping[str, str], path: str = "--identity") -> None:
    """Each identity must be a canonical value of its column's live type, or the request
    could match someone else's row (or, loosely parsed, several spellings one row). The
    error names the identity, never its value."""
    for name, value in identities.items():
        why = not_canonical(types[name], value)
        if why is not None:
            raise UsageError(f"identity {name!r} of {subject_kind!r} {why}", path=path)


def canonical_subject(subject_kind: str, identities: Mapping[str, str]) -> str:
    """What a subject's fingerprint is computed over (`AuditLog.fingerprint` keys it): the
    standard library's JSON, sorted, compact, non-ASCII escaped — every open request's
    fingerprint was computed over it. orjson writes the same bytes, in a fifth of the
    time, when they are ASCII but DEL (the characters both escape alike); any other
    text goes to the standard library."""
    subject = {"kind": subject_kind, "identities": dict(sorted(identities.items()))}
    with suppress(TypeError):  # (not text: the standard library says what it says)
        fast = orjson.dumps(subject, option=orjson.OPT_SORT_KEYS)
        if fast.isascii() and b"\x7f" not in fast:
            return fast.decode()
    return json.dumps(subject, sort_keys=True, separators=(",", ":"))


def subject_rows(policy: Policy, subject_kind: str, identities: Mapping[str, str]) -> Condition:
    """The subject's rows: every given identity must match (two identities of two
    different people must never widen one request to both)."""
    return all_of(*(Eq(column, value) for column, value in identities.items()))


def selections(policy: Policy, graph: Graph, builder: StepBuilder, subject_kind: str,
               identities: Mapping[str, str]) -> dict[str, Condition]:
    """Rows of each dataset that are the subject's, children first, then the subject
    dataset, then the rows they point at (`referenced_by`)."""
    subject = policy.subjects[subject_kind].dataset
    own = subject_rows(policy, subject_kind, identities)
    found: dict[str, Condition] = {}
    for name in graph.order:
        if name not in builder.keys:
            continue  # not a SQL dataset
        if name == subject:
            found[name] = own
            continue
        linked = builder.linked_to(name, subject, own)
        if linked != FALSE:
            found[name] = linked
    for name in graph.order:  # rows the subject's rows point at (an address)
        pointed = builder.pointed_at(name, found) if name in builder.keys else FALSE
        if pointed != FALSE:
            found[name] = pointed
    return found


def resolve_subjects(rt: Runtime, subject_kind: str,
                     records: Sequence[RequestRecord]) -> dict[int, Value]:
    """Request id -> key of the one subject row its identities name, read for a whole
    batch of requests at once. A request is left out when its identities name no row,
    or might name more than one (also ignoring case, as a case-blind collation would):
    it goes the single-request way, which counts with the database's own comparison."""
    subject = policy_subject(rt, subject_kind)
    ds = rt.policy.datasets[subject]
    key = rt.catalog.key_of(subject)
    store = rt.catalog.store_of(subject)
    by_names: dict[tuple[str, ...], list[RequestRecord]] = {}
    for record in records:
        by_names.setdefault(tuple(sorted(record.identities)), []).append(record)
    resolved: dict[int, Value] = {}
    for names, group in by_names.items():
        if not names:
            continue
        first = tuple({r.identities[names[0]] for r in group})
        rows = store.select(ds.table or "", [key, *names], In(names[0], first))
        exact: dict[tuple[str, ...], list[Value]] = {}
        loose: dict[tuple[str, ...], int] = {}
        for row in rows:
            text = tuple("" if v is None else str(v) for v in row[1:])
            exact.setdefault(text, []).append(row[0])
            folded = tuple(v.casefold() for v in text)
            loose[folded] = loose.get(folded, 0) + 1
        for record in group:
            wanted = tuple(record.identities[n] for n in names)
            keys = exact.get(wanted, [])
            if len(keys) == 1 and loose.get(tuple(v.casefold() for v in wanted)) == 1:
                resolved[record.id] = keys[0]
    return resolved


def policy_subject(rt: Runtime, subject_kind: str) -> str:
    return rt.policy.subjects[subject_kind].dataset


def subject_confined(rt: Runtime, subject_kind: str, value: str, workspace: str) -> bool:
    """Whether the subject rows a hold on `KIND:value` reaches (any identity equal to
    `value`) exist and all belong to `workspace`: a workspace may hold only its own."""
    dataset = policy_subject(rt, subject_kind)
    ds = rt.policy.datasets[dataset]
    if ds.workspace is None:
        return False
    named = any_of(*(Eq(identity, value) for identity in rt.policy.subjects[subject_kind]
                     .identities))
    store, table = rt.catalog.store_of(dataset), ds.table or ""
    rows = store.select(table, [ds.workspace], named)
    return bool(rows) and all(row[0] == workspace for row in rows)
