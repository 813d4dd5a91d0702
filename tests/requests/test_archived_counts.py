"""Archived rows in erasure counts (review of the cold tier): rows a hold keeps in an
archive are held, not erased; a chunk an interrupted erasure replaced is not counted
twice."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from lethe.engine import archive as archive_mod
from lethe.engine.archive import ArchiveSink
from lethe.engine.execute import execute
from lethe.engine.plan import build_plan
from lethe.errors import StoreError
from lethe.holds.scopes import parse_scope, place_hold
from lethe.requests.service import open_request, run_request
from lethe.stores.sql import normalize_url
from tests.fixtures import NOW, build_app, runtime, write_policy


def test_archived_rows_a_hold_keeps_are_certified_held_not_erased(
        sqlite_url: str, s3_url: str, tmp_path: Path) -> None:
    engine = sa.create_engine(normalize_url(sqlite_url))
    with engine.begin() as c:
        c.execute(sa.text("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)"))
        c.execute(sa.text("CREATE TABLE notes (id INTEGER PRIMARY KEY, user_id INTEGER"
                          " REFERENCES users(id), ws TEXT, created_at TIMESTAMP)"))
        c.execute(sa.text("INSERT INTO users VALUES (1, 'u1@example.com'),"
                          " (2, 'u2@example.com')"))
        old = (NOW - timedelta(days=60)).isoformat()
        c.execute(sa.text("INSERT INTO notes VALUES (1, 1, 'a', :t), (2, 1, 'b', :t),"
                          " (3, 2, 'a', :t)"), {"t": old})
    path = tmp_path / "lethe.yaml"
    path.write_text(yaml.safe_dump({
        "lethe": 1, "organization": "Acme", "control": "sqlite:///state.db",
        "stores": {"app": {"url": sqlite_url}, "cold": {"url": s3_url}},
        "subjects": {"user": {"dataset": "users", "identities": ["email", "id"]}},
        "datasets": {
            "users": {"store": "app", "table": "users", "class": "pii"},
            "notes": {"store": "app", "table": "notes", "class": "pii", "workspace": "ws",
                      "belongs_to": {"users": "user_id"},
                      "retention": [{"keep": "30d", "after": "created_at",
                                     "action": "archive", "to": "cold"}]}}}))
    rt = runtime(path)
    try:
        [a] = execute(rt, build_plan(rt, ["notes"])).actions
        assert a.done == 3
        place_hold(rt.control, rt.audit, rt.clock, parse_scope(rt.policy, None, "a", None),
                   "case 1")
        outcome = run_request(rt, open_request(rt, "erasure", "user", ["id=1"]).id,
                              tmp_path / "out")
        sink = ArchiveSink(rt, "notes", rt.catalog.object_store("cold"))
        left = sink.erase("user_id", {"1": "1"}, dry=True)
    finally:
        rt.close()
    assert outcome.record.status == "in_progress"  # a hold keeps one of them
    report = outcome.as_dict()["datasets"]["notes"]
    assert (report["rows"], report["erased"], report["held"]) == (2, 1, 1)
    assert left == {"1": 1}


RULE = {"keep": "30d", "after": "last_seen_at", "action": "archive", "to": "cold"}


def test_a_chunk_an_interrupted_erasure_replaced_is_counted_once(
        sqlite_url: str, s3_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build_app(sqlite_url)
    path = write_policy(tmp_path, sqlite_url, datasets__users__soft_delete=None,
                        datasets__users__retention=[], datasets__sessions__retention=[RULE])
    data = yaml.safe_load(path.read_text())
    data["stores"]["cold"] = {"url": s3_url}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    rt = runtime(path)
    try:
        execute(rt, build_plan(rt, ["sessions"]))
        real_take = archive_mod.ArchiveSink._take

        def killed_take(self: Any, chunk: str, manifest: Any, keep: Any) -> None:
            # the replacement written and marked, the original not deleted yet
            if keep:
                columns = tuple(str(c) for c in manifest["columns"])
                self.write(columns, [tuple(r.get(c) for c in columns) for r in keep],
                           replaces=chunk)
                self.committed()
            raise StoreError("killed before the original was deleted", path="x")

        monkeypatch.setattr(archive_mod.ArchiveSink, "_take", killed_take)
        first = run_request(rt, open_request(rt, "erasure", "user", ["id=3"]).id, tmp_path / "o")
        assert first.record.status == "in_progress"
        monkeypatch.setattr(archive_mod.ArchiveSink, "_take", real_take)
        out = run_request(rt, open_request(rt, "erasure", "user", ["id=4"]).id, tmp_path / "o")
        report = out.as_dict()["datasets"]["sessions"]
        assert out.record.status == "completed"
        assert (report["rows"], report["erased"]) == (2, 2)  # live + archived, once
    finally:
        rt.close()
