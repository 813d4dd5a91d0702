"""A workspace's termination reaches every store (issue 22, item 3): rows in PostgreSQL
and SQLite, objects in a versioned S3 bucket and a file store, Redis keys, data keys
(`erasure: shred`) and rows already archived. A subject hold on one of the workspace's
people keeps that person's rows, objects and keys, and — since a workspace's erasure
cannot tell whose they are — its data keys and archived rows, until it is released;
another workspace is never touched."""

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
from lethe.holds import parse_scope, place_hold, release_hold
from lethe.policy.load import load_policy
from lethe.requests.certificate import load_certificate, verify_certificate
from lethe.requests.service import run_request
from lethe.requests.termination import open_termination
from lethe.runtime import Runtime
from lethe.stores.objects import open_object_store
from lethe.stores.sql import normalize_url
from tests.fixtures import versioned_bucket

NOW = datetime.now(UTC).replace(microsecond=0)  # objects get the wall clock's times
GONE, HELD, OTHER = 6, 8, 7  # two people of ws_a (one held), one of ws_b
USERS = (GONE, HELD, OTHER)
WORKSPACE = {GONE: "ws_a", HELD: "ws_a", OTHER: "ws_b"}


def _policy(tmp_path: Path, app: str, events: str, s3: str, redis_url: str,
            prefix: str) -> Path:
    policy: dict[str, Any] = {
        "lethe": 1, "organization": "Reach Inc",
        "control": f"sqlite:///{tmp_path / 'state.db'}",
        "audit": {"key": str(tmp_path / "audit.key")},
        "encryption": {"kek_file": str(tmp_path / "kek.json")},
        "termination": {"within": "90d"},
        "stores": {"app": {"url": app}, "events": {"url": events},
                   "files": {"url": s3}, "uploads": {"url": f"file://{tmp_path / 'up'}"},
                   "cache": {"url": redis_url}, "cold": {"url": f"file://{tmp_path / 'cold'}"}},
        "subjects": {"user": {"dataset": "users", "identities": ["email", "id"]}},
        "datasets": {
            "users": {"store": "app", "table": "users", "class": "pii",
                      "workspace": "workspace_id"},
            "notes": {"store": "app", "table": "notes", "class": "pii",
                      "belongs_to": {"users": "user_id"}, "erasure": "shred"},
            "invoices": {"store": "app", "table": "invoices", "class": "operational",
                         "belongs_to": {"users": "user_id"}, "workspace": "workspace_id",
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
    with sa.create_engine(normalize_url(app)).begin() as conn:
        conn.execute(sa.text("CREATE TABLE users (id integer PRIMARY KEY, email text, "
                             "workspace_id text)"))
        conn.execute(sa.text("CREATE TABLE notes (id integer PRIMARY KEY, user_id integer, "
                             "body text)"))
        conn.execute(sa.text("CREATE TABLE invoices (id integer PRIMARY KEY, "
                             "user_id integer, workspace_id text, issued_at timestamptz)"))
        for user in USERS:
            conn.execute(sa.text("INSERT INTO users VALUES (:u, :e, :w)"),
                         {"u": user, "e": f"u{user}@example.com", "w": WORKSPACE[user]})
            conn.execute(sa.text("INSERT INTO notes VALUES (:u, :u, :b)"), {
                "u": user, "b": cipher.encrypt_field("user", user, f"note {user}",
                                                     dataset="notes", column="body")})
            conn.execute(sa.text("INSERT INTO invoices VALUES (:i, :u, :w, :t)"),
                         [{"i": user * 10 + k, "u": user, "w": WORKSPACE[user],
                           "t": NOW - timedelta(days=400 if k else 10)} for k in range(2)])
    with sa.create_engine(events).begin() as conn:
        conn.execute(sa.text("CREATE TABLE user_events (id integer PRIMARY KEY, "
                             "user_id integer)"))
        conn.execute(sa.text("INSERT INTO user_events VALUES (:i, :u)"),
                     [{"i": u * 10 + k, "u": u} for u in USERS for k in range(3)])


def _versions(client: Any, bucket: str, user: int) -> list[str]:
    found = client.list_object_versions(Bucket=bucket, Prefix=f"root/exports/{user}/")
    return [v["Key"] for v in (*found.get("Versions", []), *found.get("DeleteMarkers", []))]


def _archived(rt: Runtime) -> dict[str, int]:
    sink = ArchiveSink(rt, "invoices", rt.catalog.object_store("cold"))
    return sink.erase("workspace_id", {"ws_a": "ws_a", "ws_b": "ws_b"}, dry=True)


def _users(app: str, table: str, column: str = "id") -> list[int]:
    engine = sa.create_engine(normalize_url(app))
    with engine.connect() as conn:
        found = sorted(conn.execute(sa.text(f"SELECT DISTINCT {column} FROM {table}"))
                       .scalars())
    engine.dispose()
    return found


@pytest.mark.postgres
def test_a_terminated_workspace_is_gone_from_every_store_and_a_held_person_stays(
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
    assert execute(rt, build_plan(rt)).ok  # the old invoices go to the cold archive
    assert _archived(rt) == {"ws_a": 2, "ws_b": 1}
    hold = place_hold(rt.control, rt.audit, rt.clock,
                      parse_scope(rt.policy, f"user:u{HELD}@example.com", None, None), "case")
    record = open_termination(rt, "ws_a")
    first = run_request(rt, record.id, tmp_path / "out")
    rt.close()
    assert first.record.status == "in_progress" and first.certificate is None
    assert first.record.note is not None and f"hold {hold}" in first.record.note
    kept = first.as_dict()["datasets"]["invoices"]  # the held person's, and the archived
    assert (kept["held"], kept["erased"]) == (3, 1)  # ones: whose they are is unknown
    assert _users(postgres_url, "users") == sorted([HELD, OTHER])
    assert _users(postgres_url, "invoices", "user_id") == sorted([HELD, OTHER])
    assert _users(events, "user_events", "user_id") == sorted([HELD, OTHER])
    assert _versions(client, bucket, GONE) == []
    assert len(_versions(client, bucket, HELD)) == 2
    listed = {i.key for page in uploads.pages("uploads/") for i in page}
    assert listed == {f"uploads/{u}/photo.jpg" for u in (HELD, OTHER)}
    assert {k.decode() for k in cache.scan_iter(match=f"{prefix}:sess:*")} == \
        {f"{prefix}:sess:{u}:a" for u in (HELD, OTHER)}
    fresh = Runtime.open(load_policy(path), Clock(NOW + timedelta(days=1)))
    assert _archived(fresh) == {"ws_a": 2, "ws_b": 1}  # whose they are is unknown: kept
    release_hold(fresh.control, fresh.audit, fresh.clock, hold, "closed")
    second = run_request(fresh, record.id, tmp_path / "out")
    fresh.close()
    assert second.record.status == "completed", second.record.note
    assert _users(postgres_url, "users") == [OTHER]
    assert _users(events, "user_events", "user_id") == [OTHER]
    assert _versions(client, bucket, HELD) == [] and len(_versions(client, bucket, OTHER)) == 2
    assert {k.decode() for k in cache.scan_iter(match=f"{prefix}:sess:*")} == \
        {f"{prefix}:sess:{OTHER}:a"}
    last = Runtime.open(load_policy(path), Clock(NOW + timedelta(days=1)))
    assert _archived(last) == {"ws_b": 1}
    cipher = last.cipher()
    with sa.create_engine(normalize_url(postgres_url)).connect() as conn:
        notes = dict(conn.execute(sa.text("SELECT user_id, body FROM notes")).all())
    for user in (GONE, HELD):  # shred: the rows stay, unreadable
        with pytest.raises(Shredded):
            cipher.decrypt_field(notes[user], dataset="notes", column="body")
    assert cipher.decrypt_field(notes[OTHER], dataset="notes", column="body") == \
        f"note {OTHER}"
    shredded = [e for e in last.audit.entries() if e.action == "keys.shredded"]
    assert shredded and shredded[-1].target == f"request:{record.id}"
    last.close()
    report = second.as_dict()["datasets"]
    assert report["users"]["rows"] == 2 and report["users"]["erased"] == 2
    assert report["invoices"]["rows"] == 4  # 2 archived + 2 in the table, both people
    assert report["exports"]["erased"] == 2 and report["web_sessions"]["erased"] == 2
    assert second.certificate is not None
    assert verify_certificate(load_certificate(second.certificate)).ok
    client.close()
    cache.close()
