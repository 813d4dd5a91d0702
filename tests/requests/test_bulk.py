"""Bulk erasure: many requests erased in groups give each subject exactly what erasing
it alone would, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from lethe.holds import parse_scope, place_hold
from lethe.requests.certificate import load_certificate, verify_certificate
from lethe.requests.service import (
    open_bulk,
    open_many,
    run_many,
    run_request,
    stored_certificate,
)
from lethe.stores.sql import normalize_url
from tests.fixtures import (
    NOW,
    build_app,
    ids,
    invoices,
    profiles,
    runtime,
    sessions,
    users,
    write_policy,
)

LATER = NOW + timedelta(days=31)


def certified(document: dict[str, Any] | None) -> dict[str, dict[str, int]]:
    assert document is not None
    assert verify_certificate(document).ok
    return {d["dataset"]: {k: d[k] for k in ("rows", "erased", "retained", "held")}
            for d in document["certificate"]["datasets"]}


def people_and_orders(url: str, tmp_path: Path, people: range, *, items: bool = False
                      ) -> tuple[sa.Engine, Path, list[tuple[int, int]]]:
    """`people` (id, email), person p with p `orders` (ids p * 100 ...), with `items`
    order o with o % 4 items; the policy naming them (person subjects by e-mail). The
    engine, the policy's path and the (order, person) pairs."""
    engine = sa.create_engine(normalize_url(url))
    meta = sa.MetaData()
    sa.Table("people", meta, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
             sa.Column("email", sa.String(100)))
    sa.Table("orders", meta, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
             sa.Column("person_id", sa.Integer, index=True))
    if items:
        sa.Table("items", meta, sa.Column("id", sa.Integer, primary_key=True,
                                          autoincrement=False),
                 sa.Column("order_id", sa.Integer, index=True))
    meta.drop_all(engine)
    meta.create_all(engine)
    orders = [(o, p) for p in people for o in range(p * 100, p * 100 + p)]
    with engine.begin() as conn:
        conn.execute(meta.tables["people"].insert(),
                     [{"id": p, "email": f"p{p}@example.com"} for p in people])
        conn.execute(meta.tables["orders"].insert(),
                     [{"id": o, "person_id": p} for o, p in orders])
        if items:
            conn.execute(meta.tables["items"].insert(),
                         [{"id": o * 10 + k, "order_id": o} for o, _ in orders
                          for k in range(o % 4)])
    datasets: dict[str, Any] = {
        "people": {"store": "app", "table": "people", "class": "pii"},
        "orders": {"store": "app", "table": "orders", "class": "operational",
                   "belongs_to": {"people": "person_id"}}}
    if items:
        datasets["items"] = {"store": "app", "table": "items", "class": "operational",
                             "belongs_to": {"orders": "order_id"}}
    path = tmp_path / "lethe.yaml"
    path.write_text(yaml.safe_dump({
        "lethe": 1, "organization": "Test Co", "control": "sqlite:///state.db",
        "stores": {"app": {"url": url}},
        "subjects": {"person": {"dataset": "people", "identities": ["email"]}},
        "datasets": datasets}))
    return engine, path, orders


def test_bulk_erasure_matches_one_by_one_and_keeps_held_subjects(app_url: str,
                                                                  tmp_path: Path) -> None:
    engine = build_app(app_url)
    policy = write_policy(tmp_path, app_url)
    csv_file = tmp_path / "subjects.csv"
    # users 2, 3, 5, 7, 8 by e-mail; 9 by id and e-mail; nobody@ names no one
    csv_file.write_text("email,id\n" + "".join(
        f"user{i}@example.com,\n" for i in (2, 3, 5, 7, 8)) + "user9@example.com,9\n"
        "nobody@example.com,\n", encoding="utf-8")
    rt = runtime(policy)
    records = open_bulk(rt, "erasure", "user", csv_file)
    assert [r.id for r in open_bulk(rt, "erasure", "user", csv_file)] == [r.id for r in records]
    first = run_many(rt, [r.id for r in records], tmp_path / "out", group_size=4)
    rt.close()
    assert [o.record.status for o in first] == ["in_progress"] * 7
    assert ids(engine, users, users.c.deleted_at.is_not(None)) == {2, 3, 5, 6, 7, 8, 9}
    assert [o.datasets["users"].rows for o in first] == [1, 1, 1, 1, 1, 1, 0]

    rt = runtime(policy, LATER)
    hold = place_hold(rt.control, rt.audit, rt.clock,
                      parse_scope(rt.policy, "user:8", None, None), "case 8")
    done = run_many(rt, [r.id for r in records], tmp_path / "out", group_size=4)
    assert rt.audit.verify().ok
    by_id = {o.record.id: o for o in done}
    held = by_id[records[4].id]
    assert held.record.status == "in_progress" and not held.certified
    assert stored_certificate(rt, held.record.id) is None
    assert held.record.note is not None and f"hold {hold}" in held.record.note
    assert held.as_dict()["datasets"]["sessions"]["held"] == 2
    # Bulk certificates are kept in the control store; no file unless asked for.
    assert not list((tmp_path / "out").glob("*-certificate.*"))
    kept = {r.id: stored_certificate(rt, r.id) for r in records}
    rt.close()
    for outcome in (by_id[records[i].id] for i in (0, 1, 2, 3, 5)):
        assert outcome.record.status == "completed" and outcome.certified
        assert outcome.certificate is None
        assert certified(kept[outcome.record.id]) == {
            "sessions": {"rows": 2, "erased": 2, "retained": 0, "held": 0},
            "invoices": {"rows": 1, "erased": 0, "retained": 1, "held": 0},
            "profiles": {"rows": 1, "erased": 1, "retained": 0, "held": 0},
            "users": {"rows": 1, "erased": 1, "retained": 0, "held": 0}}
    nobody = by_id[records[6].id]
    assert nobody.record.status == "completed"
    assert all(r.rows == 0 for r in nobody.datasets.values())
    assert ids(engine, users) == {1, 4, 6, 8, 10}
    assert ids(engine, sessions, sessions.c.user_id.in_([2, 3, 5, 7, 9])) == set()
    assert ids(engine, sessions, sessions.c.user_id == 8) == {80, 81}
    assert ids(engine, invoices) == set(range(1, 11))  # retained: tax law
    with engine.connect() as conn:
        scrubbed = conn.execute(sa.select(profiles.c.id).where(
            profiles.c.bio == "[redacted]", profiles.c.user_id.is_(None))).scalars().all()
    assert sorted(scrubbed) == [2, 3, 5, 7, 9]


def test_bulk_attributes_grandchildren_to_their_subject(app_url: str, tmp_path: Path) -> None:
    """users → orders → items: each user's certificate counts its own items only."""
    engine, path, orders = people_and_orders(app_url, tmp_path, range(1, 9), items=True)
    expected_items = {p: sum(o % 4 for o, q in orders if q == p) for p in range(1, 9)}
    rt = runtime(path)
    records = open_many(rt, "erasure", "person", [[f"email=p{p}@example.com"]
                                                  for p in range(2, 8)])
    outcomes = run_many(rt, [r.id for r in records], tmp_path / "out", certificate_files=True)
    alone = run_request(rt, open_many(rt, "erasure", "person",
                                      [["email=p8@example.com"]])[0].id, tmp_path / "out")
    kept = {o.record.id: stored_certificate(rt, o.record.id) for o in [*outcomes, alone]}
    rt.close()
    for p, outcome in zip(range(2, 8), outcomes, strict=True):
        assert outcome.record.status == "completed" and outcome.certificate is not None
        counts = certified(load_certificate(outcome.certificate))
        assert counts == certified(kept[outcome.record.id])  # the file is the kept one
        assert counts["orders"]["erased"] == p
        assert counts["items"]["erased"] == expected_items[p]
    assert alone.certificate is not None  # a single run writes its files
    assert certified(load_certificate(alone.certificate))["items"]["erased"] == expected_items[8]
    assert kept[alone.record.id] == load_certificate(alone.certificate)
    with engine.connect() as conn:
        left = conn.execute(sa.text("SELECT count(*) FROM items")).scalar_one()
        people = conn.execute(sa.text("SELECT id FROM people")).scalars().all()
    assert people == [1] and left == expected_items[1]
    engine.dispose()
