"""The demo database's tables and indexes, and writing its rows to SQLite in one go."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path

Row = tuple[object, ...]

TABLES = """
CREATE TABLE workspaces (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, region TEXT NOT NULL CHECK (region IN ('us', 'eu')),
  created_at TEXT NOT NULL);
CREATE TABLE users (
  id INTEGER PRIMARY KEY, workspace_id TEXT NOT NULL REFERENCES workspaces(id),
  email TEXT NOT NULL UNIQUE, display_name TEXT NOT NULL, phone TEXT, created_at TEXT NOT NULL,
  last_login_at TEXT, closed_at TEXT, deleted_at TEXT);
CREATE TABLE sessions (
  id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),
  workspace_id TEXT NOT NULL, ip_address TEXT, user_agent TEXT, created_at TEXT NOT NULL,
  last_seen_at TEXT NOT NULL);
CREATE TABLE login_history (
  id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),
  workspace_id TEXT NOT NULL, ip_address TEXT, succeeded INTEGER NOT NULL,
  created_at TEXT NOT NULL);
CREATE TABLE failed_logins (
  id INTEGER PRIMARY KEY, email_attempted TEXT NOT NULL, ip_address TEXT,
  created_at TEXT NOT NULL);
CREATE TABLE password_reset_tokens (
  id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),
  token_hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL, expires_at TEXT NOT NULL,
  used_at TEXT);
CREATE TABLE oauth_states (
  id TEXT PRIMARY KEY, user_id INTEGER REFERENCES users(id), provider TEXT NOT NULL,
  created_at TEXT NOT NULL);
CREATE TABLE access_tokens (
  id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),
  workspace_id TEXT NOT NULL, token_prefix TEXT NOT NULL, scopes TEXT NOT NULL,
  created_at TEXT NOT NULL, expires_at TEXT NOT NULL, revoked_at TEXT);
CREATE TABLE webhook_events (
  id INTEGER PRIMARY KEY, workspace_id TEXT NOT NULL, event_type TEXT NOT NULL,
  status TEXT NOT NULL, payload TEXT NOT NULL, received_at TEXT NOT NULL);
CREATE TABLE app_logs (
  id INTEGER PRIMARY KEY, level TEXT NOT NULL, message TEXT NOT NULL, request_id TEXT,
  created_at TEXT NOT NULL);
CREATE TABLE error_logs (
  id INTEGER PRIMARY KEY, level TEXT NOT NULL, message TEXT NOT NULL, stack TEXT,
  user_id INTEGER REFERENCES users(id), created_at TEXT NOT NULL);
CREATE TABLE audit_logs (
  id INTEGER PRIMARY KEY, workspace_id TEXT NOT NULL,
  actor_user_id INTEGER, action TEXT NOT NULL, target TEXT, ip_address TEXT,
  created_at TEXT NOT NULL);
CREATE TABLE metrics (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL, value REAL NOT NULL, recorded_at TEXT NOT NULL);
CREATE TABLE analytics_events (
  id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id), workspace_id TEXT NOT NULL,
  event_name TEXT NOT NULL, ip_address TEXT, properties TEXT NOT NULL, occurred_at TEXT NOT NULL);
CREATE TABLE invoices (
  id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),
  workspace_id TEXT NOT NULL, number TEXT NOT NULL UNIQUE, amount_cents INTEGER NOT NULL,
  currency TEXT NOT NULL, issued_at TEXT NOT NULL, paid_at TEXT);
"""
# audit_logs.actor_user_id deliberately has no FOREIGN KEY: the audit trail outlives the
# accounts it mentions (7 years against a 90-day purge), and the id is kept as history.

# Every *_id column (cascades walk them) and every retention `after` column (plans scan
# them); without these, purging a parent costs a table scan per child.
INDEXES = {
    "users": ["workspace_id", "closed_at", "deleted_at"],
    "sessions": ["user_id", "workspace_id", "last_seen_at"],
    "login_history": ["user_id", "workspace_id", "created_at"],
    "failed_logins": ["created_at"],
    "password_reset_tokens": ["user_id", "created_at"],
    "oauth_states": ["user_id", "created_at"],
    "access_tokens": ["user_id", "workspace_id", "expires_at"],
    "webhook_events": ["workspace_id", "status, received_at", "received_at"],
    "app_logs": ["request_id", "created_at"],
    "error_logs": ["user_id", "created_at"],
    "audit_logs": ["workspace_id", "actor_user_id", "created_at"],
    "metrics": ["name", "recorded_at"],
    "analytics_events": ["user_id", "workspace_id", "occurred_at"],
    "invoices": ["user_id", "workspace_id", "issued_at"],
}


def write_tables(path: Path, tables: Mapping[str, list[Row]]) -> None:
    """Create (overwrite) the database at `path` holding these rows, in one transaction."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("BEGIN")
        for statement in TABLES.split(";"):
            if statement.strip():
                conn.execute(statement)
        for name, rows in tables.items():
            if rows:
                marks = ", ".join("?" * len(rows[0]))
                conn.executemany(f"INSERT INTO {name} VALUES ({marks})", rows)
        for name, columns in INDEXES.items():
            for columns_sql in columns:
                suffix = columns_sql.replace(", ", "_")
                conn.execute(f"CREATE INDEX ix_{name}_{suffix} ON {name} ({columns_sql})")
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
