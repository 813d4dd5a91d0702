"""A small, realistic app schema and policy, built the same way on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from lethe.clock import Clock
from lethe.policy.load import load_policy
from lethe.runtime import Runtime
from lethe.stores.sql import normalize_url

NOW = datetime(2026, 6, 1, tzinfo=UTC)
RECOVER_FOR = timedelta(days=20)  # users' recovery window: shorter than a request's 30 days

metadata = sa.MetaData()
users = sa.Table(
    "users", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("workspace_id", sa.String(40), nullable=True),
    sa.Column("email", sa.String(200)),
    sa.Column("display_name", sa.String(200)),
    sa.Column("closed_at", sa.DateTime(timezone=True)),
    sa.Column("deleted_at", sa.DateTime(timezone=True)),
)
sessions = sa.Table(
    "sessions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("user_id", sa.Integer, nullable=True, index=True),
    sa.Column("last_seen_at", sa.DateTime(timezone=True)),
)
invoices = sa.Table(
    "invoices", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("user_id", sa.Integer, index=True),
    sa.Column("issued_at", sa.DateTime(timezone=True)),
)
profiles = sa.Table(
    "profiles", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("user_id", sa.Integer, nullable=True, index=True),
    sa.Column("bio", sa.Text),
    sa.Column("phone", sa.String(40)),
)
events = sa.Table(
    "events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("workspace_id", sa.String(40)),
    sa.Column("status", sa.String(20)),
    sa.Column("received_at", sa.DateTime(timezone=True)),
)
analytics = sa.Table(
    "analytics", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("ip", sa.String(60)),
    sa.Column("email", sa.String(200)),
    sa.Column("occurred_at", sa.DateTime(timezone=True)),
)

POLICY: dict[str, Any] = {
    "lethe": 1,
    "organization": "Test Co",
    "control": "sqlite:///state.db",
    "stores": {"app": {"url": "APP_URL"}},
    "subjects": {"user": {"dataset": "users", "identities": ["email", "id"]}},
    "datasets": {
        "users": {
            "store": "app", "table": "users", "class": "pii", "workspace": "workspace_id",
            "fields": {"email": {"class": "pii", "anonymize": "mask-email"},
                       "display_name": {"class": "pii", "anonymize": "redact"}},
            "soft_delete": {"column": "deleted_at",
                            "recover_for": f"{RECOVER_FOR.days}d"},
            "retention": [{"keep": "90d", "after": "closed_at", "action": "soft-delete"}],
        },
        "sessions": {
            "store": "app", "table": "sessions", "class": "operational",
            "belongs_to": {"users": "user_id"},
            "retention": [{"keep": "30d", "after": "last_seen_at"}],
        },
        "invoices": {
            "store": "app", "table": "invoices", "class": "operational",
            "belongs_to": {"users": "user_id"}, "erasure": "retain",
            "legal_basis": "tax law: 7 years",
            "retention": [{"keep": "7y", "after": "issued_at"}],
        },
        "profiles": {
            "store": "app", "table": "profiles", "class": "pii",
            "belongs_to": {"users": "user_id"}, "erasure": "anonymize",
            "fields": {"bio": {"class": "pii", "anonymize": "redact"},
                       "phone": {"class": "pii", "anonymize": None}},
        },
        "events": {
            "store": "app", "table": "events", "class": "behavioral",
            "workspace": "workspace_id",
            "retention": [
                {"when": {"status": "processed"}, "keep": "90d", "after": "received_at"},
                {"when": {"status": "failed"}, "keep": "30d", "after": "received_at"},
                {"when": {"status": ["pending", "queued"]}, "keep": "7d",
                 "after": "received_at"},
            ],
        },
        "analytics": {
            "store": "app", "table": "analytics", "class": "behavioral",
            "fields": {"ip": {"class": "pii", "anonymize": None},
                       "email": {"class": "pii", "anonymize": "hash"}},
            "retention": [{"keep": "12mo", "after": "occurred_at", "action": "anonymize"}],
        },
    },
}


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def build_app(url: str) -> sa.Engine:
    """Users 1-10; 1-4 closed long ago, 5 closed recently, 6 soft-deleted 40 days ago."""
    engine = sa.create_engine(normalize_url(url))
    metadata.drop_all(engine)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(users.insert(), [
            {"id": i, "workspace_id": "ws_a" if i <= 5 else "ws_b",
             "email": f"user{i}@example.com", "display_name": f"User {i}",
             "closed_at": days_ago(200) if i <= 4 else (days_ago(10) if i == 5 else None),
             "deleted_at": days_ago(40) if i == 6 else None} for i in range(1, 11)])
        # each user: one old session, one fresh session
        conn.execute(sessions.insert(), [
            {"id": i * 10 + k, "user_id": i, "last_seen_at": days_ago(60 if k == 0 else 1)}
            for i in range(1, 11) for k in range(2)])
        conn.execute(sessions.insert(), [{"id": 999, "user_id": None, "last_seen_at": None}])
        conn.execute(invoices.insert(), [
            {"id": i, "user_id": i, "issued_at": days_ago(400)} for i in range(1, 11)])
        conn.execute(profiles.insert(), [
            {"id": i, "user_id": i, "bio": f"bio {i}", "phone": f"555-01{i:02d}"}
            for i in range(1, 11)])
        statuses = ["processed", "failed", "pending", "queued", None, "other"]
        conn.execute(events.insert(), [
            {"id": i, "workspace_id": "ws_a" if i % 2 else "ws_b",
             "status": statuses[i % len(statuses)],
             "received_at": days_ago([1, 20, 60, 120][i % 4]) if i % 13 else None}
            for i in range(1, 241)])
        conn.execute(analytics.insert(), [
            {"id": i, "ip": f"203.0.113.{i}", "email": f"a{i}@example.org",
             "occurred_at": days_ago(500 if i % 2 else 100)} for i in range(1, 51)])
    return engine


def write_policy(directory: Path, url: str, **changes: Any) -> Path:
    policy = yaml.safe_load(yaml.safe_dump(POLICY))
    policy["stores"]["app"]["url"] = url
    for dotted, value in changes.items():
        node = policy
        parts = dotted.split("__")
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = value
    path = directory / "lethe.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
    return path


def runtime(policy_path: Path, now: datetime = NOW) -> Runtime:
    return Runtime.open(load_policy(policy_path), Clock(now))


def ids(engine: sa.Engine, table: sa.Table, where: Any = None) -> set[int]:
    query = sa.select(table.c.id)
    if where is not None:
        query = query.where(where)
    with engine.connect() as conn:
        return set(conn.execute(query).scalars())


def expected_event_ids(engine: sa.Engine) -> set[int]:
    """Event ids the policy says to delete, computed independently in Python."""
    keep = {"processed": 90, "failed": 30, "pending": 7, "queued": 7}
    due: set[int] = set()
    with engine.connect() as conn:
        for row in conn.execute(sa.select(events)):
            limit = keep.get(row.status)
            if limit is None or row.received_at is None:
                continue
            received = row.received_at
            if received.tzinfo is None:
                received = received.replace(tzinfo=NOW.tzinfo)
            if received < NOW - timedelta(days=limit):
                due.add(row.id)
    return due


def versioned_bucket(s3_url: str) -> tuple[Any, str]:
    """Turn versioning on for the bucket of an `s3_url` store; (boto3 client, bucket)."""
    from urllib.parse import parse_qs, urlsplit

    import boto3

    parts = urlsplit(s3_url)
    client = boto3.client("s3", endpoint_url=parse_qs(parts.query)["endpoint_url"][0],
                          region_name="us-east-1")
    client.put_bucket_versioning(Bucket=parts.netloc,
                                 VersioningConfiguration={"Status": "Enabled"})
    return client, parts.netloc
