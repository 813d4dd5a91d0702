"""A retention purge of an account reaches every store, as an erasure does.

An account the app soft-deleted, past its `recover_for`, has rows in two SQL stores
(PostgreSQL and SQLite), objects in a versioned S3 bucket (two versions each) and in a
file store, Redis keys, fields encrypted under its data key (`erasure: shred`) and rows
already archived to a cold store. `lethe run` removes all of it; a hold on a second such
account keeps everything of that one; an active account is untouched.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
import yaml

from lethe.clock import Clock
from lethe.crypto.keys import Shredded
from lethe.engine.archive import ArchiveSink
from lethe.engine.execute import execute
from lethe.engine.plan import build_plan
from lethe.holds import parse_scope, place_hold
from lethe.policy.load import load_policy
from lethe.runtime import Runtime
from lethe.stores.objects import open_object_store
from lethe.stores.sql import normalize_url
from tests.fixtures import versioned_bucket

NOW = datetime.now(UTC).replace(microsecond=0)  # objects get the wall clock's times
GONE, HELD, ACTIVE = 6, 8, 7  # soft-deleted and past the window; the same, held; active
USERS = (GONE, ACTIVE, HELD)


def _policy(tmp_path: Path, app: str, events: str, s3: str, redis_url: str,
            prefix: str) -> Path:
    policy: dict[str, Any] = {
        "lethe": 1, "organization": "Reach Inc",
        "control": f"sqlite:///{tmp_path / 'state.db'}",
        "audit": {"key": str(tmp_path / "audit.key")},
        "encryption": {"kek_file": str(tmp_path / "kek.json")},
        "stores": {"app": {"url": app}, "events": {"url": events},
                   "files": {"url": s3}, "uploads": {"url": f"file://{tmp_path / 'up'}"},
                   "cache": {"url": redis_url}, "cold": {"url": f"file://{tmp_path / 'cold'}"}},
        "subjects": {"user": {"dataset": "users", "identities": ["email", "id"]}},
        "datasets": {
            "users": {"store": "app", "table": "users", "class": "pii",
                      "soft_delete": {"column": "deleted_at", "recover_for": "30d"}},
            "notes": {"store": "app", "table": "notes", "class": "pii",
                      "belongs_to": {"users": "user_id"}, "erasure": "shred"},
            "invoices": {"store": "app", "table": "invoices", "class": "operational",
                         "belongs_to": {"users": "user_id"},
                         "retention": [{"keep": "365d", "after": "issued_at",
                                        "action": "archive", "to": "cold"}]},
            "user_events": {"store": "events", "table": "user_events", "class": "behavioral",
                            "belongs_to": {"users": "user_id"}},
            "exports": {"store": "files", "prefix": "exports/", "class": "pii",
                        "per_subject": {"user": "exports/{id}/"}},
            "uploads": {"store": "uploads", "prefix": "uploads/", "class": "pii",
                        "per_subject": {"user": "uploads/{id}/"}},
            "web_sessions": {"store": "cache", "pattern": f"{prefix}:sess:*",
                             "class": "operational",
                             "per_subject": {"user": f"{prefix}:sess:{{id}}:*"}},
        },
    }
    path = tmp_path / "lethe.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
    return path


def _fill_sql(app: str, events: str, rt: Runtime) -> None:
    cipher = rt.cipher()
    deleted = NOW - timedelta(days=40)
    with sa.create_engine(normalize_url(app)).begin() as conn:
        conn.execute(sa.text("CREATE TABLE users (id integer PRIMARY KEY, email text, "
                             "deleted_at timestamptz)"))
        conn.execute(sa.text("CREATE TABLE notes (id integer PRIMARY KEY, user_id integer, "
                             "body text)"))
        conn.execute(sa.text("CREATE TABLE invoices (id integer PRIMARY KEY, "
                             "user_id integer, issued_at timestamptz)"))
        for user in USERS:
            conn.execute(sa.text("INSERT INTO users VALUES (:u, :e, :d)"),
                         {"u": user, "e": f"u{user}@example.com",
                          "d": None if user == ACTIVE else deleted})
            conn.execute(sa.text("INSERT INTO notes VALUES (:u, :u, :b)"), {
                "u": user, "b": cipher.encrypt_field("user", user, f"note {user}",
                                                     dataset="notes", column="body")})
            conn.execute(sa.text("INSERT INTO invoices VALUES (:i, :u, :t)"),
                         [{"i": user * 10 + k, "u": user,
                           "t": NOW - timedelta(days=400 if k else 10)} for k in range(2)])
    with sa.create_engine(events).begin() as conn:
        conn.execute(sa.text("CREATE TABLE user_events (id integer PRIMARY KEY, "
                             "user_id integer)"))
        conn.execute(sa.text("INSERT INTO user_events VALUES (:i, :u)"),
                     [{"i": u * 10 + k, "u": u} for u in USERS for k in range(3)])


def _versions(client: Any, bucket: str, user: int) -> list[str]:
    found = client.list_object_versions(Bucket=bucket, Prefix=f"root/exports/{user}/")
    return [v["Key"] for v in (*found.get("Versions", []), *found.get("DeleteMarkers", []))]


def _archived_users(rt: Runtime) -> list[int]:
    sink = ArchiveSink(rt, "invoices", rt.catalog.object_store("cold"))
    counted = sink.erase("user_id", {str(u): str(u) for u in USERS}, dry=True)
    return sorted(int(u) for u, n in counted.items() for _ in range(n))


@pytest.mark.postgres
def test_a_purged_account_is_gone_from_every_store_and_a_held_one_stays(
        postgres_url: str, s3_url: str, redis_space: tuple[str, str], tmp_path: Path) -> None:
    redis_url, prefix = redis_space
    events = f"sqlite:///{tmp_path / 'events.db'}"
    path = _policy(tmp_path, postgres_url, events, s3_url, redis_url, prefix)
    rt = Runtime.open(load_policy(path), Clock(NOW))
    _fill_sql(postgres_url, events, rt)
    client, bucket = versioned_bucket(s3_url)
    exports = open_object_store("files", s3_url)
    uploads = rt.catalog.object_store("uploads")
    cache = redis.Redis.from_url(redis_url)
    for user in USERS:
        exports.put(f"exports/{user}/a.csv", b"first")
        exports.put(f"exports/{user}/a.csv", b"second")  # the first is a noncurrent version
        uploads.put(f"uploads/{user}/photo.jpg", b"\xff\xd8")
        cache.set(f"{prefix}:sess:{user}:a", "token")
        cache.set(f"{prefix}:sess:{user}:b", "token")
    place_hold(rt.control, rt.audit, rt.clock,
               parse_scope(rt.policy, f"user:u{HELD}@example.com", None, None), "case 16")

    plan = build_plan(rt)
    lines = {(a.step.dataset, a.step.action, a.step.parent): (a.rows, a.held)
             for a in plan.actions}
    assert lines[("users", "shred", "users")] == (1, 1)
    assert lines[("exports", "remove", "users")] == (1, 1)  # keys; versions go with them
    assert lines[("uploads", "remove", "users")] == (1, 1)
    assert lines[("web_sessions", "remove", "users")] == (2, 2)
    result = execute(rt, plan, batch_size=2)
    assert result.ok, result.as_dict()
    # what plan said is what run did, line by line
    assert [(a.planned.step, a.planned.rows) for a in result.actions] == \
        [(a.planned.step, a.done) for a in result.actions]
    reached = {(a.planned.step.dataset, a.planned.step.action): a.done for a in result.actions}
    assert reached[("invoices", "remove-archived")] == 1  # archived earlier in this run
    rt.close()

    app = sa.create_engine(normalize_url(postgres_url))
    with app.connect() as conn:
        assert sorted(conn.execute(sa.text("SELECT id FROM users")).scalars()) == [ACTIVE, HELD]
        assert sorted(conn.execute(sa.text("SELECT DISTINCT user_id FROM invoices"))
                      .scalars()) == [ACTIVE, HELD]
        notes = dict(conn.execute(sa.text("SELECT user_id, body FROM notes")).all())
    app.dispose()
    with sa.create_engine(events).connect() as conn:
        assert sorted(conn.execute(sa.text("SELECT DISTINCT user_id FROM user_events"))
                      .scalars()) == [ACTIVE, HELD]
    fresh = Runtime.open(load_policy(path), Clock(NOW))  # nothing cached in this process
    cipher = fresh.cipher()
    with pytest.raises(Shredded):
        cipher.decrypt_field(notes[GONE], dataset="notes", column="body")
    assert cipher.decrypt_field(notes[HELD], dataset="notes", column="body") == f"note {HELD}"
    assert _versions(client, bucket, GONE) == []
    assert len(_versions(client, bucket, HELD)) == 2
    assert len(_versions(client, bucket, ACTIVE)) == 2
    listed = {i.key for page in uploads.pages("uploads/") for i in page}
    assert listed == {f"uploads/{u}/photo.jpg" for u in (ACTIVE, HELD)}
    left = {k.decode() for k in cache.scan_iter(match=f"{prefix}:sess:*")}
    assert left == {f"{prefix}:sess:{u}:{k}" for u in (ACTIVE, HELD) for k in "ab"}
    assert _archived_users(fresh) == [ACTIVE]  # the held user's invoice was never archived
    audited = {(e.action, e.target) for e in fresh.audit.entries()
               if e.action in ("retention.shred", "retention.remove",
                               "retention.remove-archived")}
    assert audited == {("retention.shred", "dataset:users"),
                       ("retention.remove", "dataset:exports"),
                       ("retention.remove", "dataset:uploads"),
                       ("retention.remove", "dataset:web_sessions"),
                       ("retention.remove-archived", "dataset:invoices")}
    fresh.close()
    client.close()
    cache.close()
