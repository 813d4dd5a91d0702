"""lethe's own tables and their migrations.

Migrations are plain ordered steps recorded in `lethe_migrations`; each runs in one
transaction with the version row, so a half-applied migration cannot exist
(PostgreSQL and SQLite both have transactional DDL).
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

metadata = sa.MetaData()

migrations_table = sa.Table(
    "lethe_migrations", metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)

runs = sa.Table(
    "lethe_runs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("now", sa.DateTime(timezone=True), nullable=False),
    # running | completed | completed_with_errors | failed | stopped | interrupted
    # (20 characters before migration 11: `completed_with_errors` did not fit on PostgreSQL)
    sa.Column("status", sa.String(40), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("host", sa.String(200), nullable=False),
    sa.Column("datasets", sa.Text, nullable=False),  # JSON list of dataset names
    sa.Column("error", sa.Text),
    # Who runs it, and when it last recorded progress (migration 11): a `running` run
    # whose process is gone is closed as `interrupted` by the next run (engine.recovery).
    sa.Column("machine", sa.String(200)),
    sa.Column("pid", sa.Integer),
    sa.Column("alive_at", sa.DateTime(timezone=True)),
)

run_actions = sa.Table(
    "lethe_run_actions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("lethe_runs.id"), nullable=False, index=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("dataset", sa.String(200), nullable=False),
    sa.Column("rule", sa.Integer),
    sa.Column("action", sa.String(20), nullable=False),
    sa.Column("parent", sa.String(200)),
    sa.Column("planned", sa.Integer, nullable=False),
    sa.Column("held", sa.Integer, nullable=False),
    sa.Column("done", sa.Integer, nullable=False, default=0),
    sa.Column("remaining", sa.Integer),
    sa.Column("verified", sa.Boolean),
    sa.Column("batches", sa.Integer, nullable=False, default=0),
    sa.Column("longest_batch_ms", sa.Float, nullable=False, default=0.0),
    sa.Column("error", sa.Text),
    # `done` includes a dropped partition's planner estimate (migration 10; NULL before)
    sa.Column("estimated", sa.Boolean),
    # due rows a foreign key kept (as planned; as verified once the step is), and the
    # keys keeping them: JSON {foreign key: rows} (migration 12; NULL before)
    sa.Column("blocked", sa.Integer),
    sa.Column("blocked_by", sa.Text),
    # how long the step's oldest due row had been past its limit when the run planned it:
    # the deletion lag the run ended (migration 14; NULL: nothing due, or before)
    sa.Column("lag_seconds", sa.Float),
)

holds = sa.Table(
    "lethe_holds", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("scope_kind", sa.String(20), nullable=False),  # subject | workspace | dataset
    sa.Column("subject_kind", sa.String(200)),
    sa.Column("scope_value", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("placed_by", sa.String(200), nullable=False),
    sa.Column("released_at", sa.DateTime(timezone=True)),
    sa.Column("released_by", sa.String(200)),
    sa.Column("release_reason", sa.Text),
)


audit = sa.Table(
    "lethe_audit", metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=False),
    sa.Column("at", sa.String(40), nullable=False, index=True),  # ISO-8601 UTC, fixed width
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("action", sa.String(100), nullable=False, index=True),
    sa.Column("target", sa.Text, nullable=False, index=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("details", sa.Text, nullable=False),  # canonical JSON
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

audit_checkpoints = sa.Table(
    "lethe_audit_checkpoints", metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=False),
    sa.Column("head_hash", sa.String(64), nullable=False),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("key_id", sa.String(32), nullable=False),
    sa.Column("signature", sa.Text, nullable=False),
)


requests = sa.Table(
    "lethe_requests", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(20), nullable=False),  # access | erasure
    sa.Column("subject_kind", sa.String(200), nullable=False),
    # The identities are personal data: kept only while needed, scrubbed on completion.
    sa.Column("identities", sa.Text, nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False, index=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("completed_at", sa.DateTime(timezone=True)),
    sa.Column("soft_deleted_at", sa.DateTime(timezone=True)),
    sa.Column("note", sa.Text),
    sa.Column("result", sa.Text),  # JSON: per-dataset counts
    sa.Column("export_path", sa.Text),
    sa.Column("certificate_path", sa.Text),
    sa.Column("workspace", sa.String(200)),  # added by migration 7
)


subject_keys = sa.Table(
    "lethe_subject_keys", metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # travels inside every ciphertext
    sa.Column("subject_ref", sa.String(64), nullable=False, unique=True),  # sha256, not PII
    sa.Column("kek_id", sa.String(32), nullable=False, index=True),
    sa.Column("wrapped", sa.LargeBinary),  # NULL once shredded: the key is gone for good
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("shredded_at", sa.DateTime(timezone=True)),
)


def _create_initial(conn: Connection) -> None:
    # runs and run actions as migration 1 made them: later migrations add their columns
    later = {"estimated", "machine", "pid", "alive_at", "blocked", "blocked_by", "lag_seconds"}
    first = sa.MetaData()
    sa.Table(runs.name, first,  # what the foreign key names (status: migration 11 widens it)
             *(sa.Column("status", sa.String(20), nullable=False) if c.name == "status"
               else c._copy() for c in runs.columns if c.name not in later)).create(conn)
    sa.Table(run_actions.name, first,
             *(c._copy() for c in run_actions.columns if c.name not in later)).create(conn)
    holds.create(conn)


def _create_audit(conn: Connection) -> None:
    audit.create(conn)
    audit_checkpoints.create(conn)


def _create_requests(conn: Connection) -> None:
    # The table as migration 3 made it: later migrations add their columns themselves.
    later = {"workspace"}
    sa.Table(requests.name, sa.MetaData(),
             *(c._copy() for c in requests.columns if c.name not in later)).create(conn)


def _create_subject_keys(conn: Connection) -> None:
    subject_keys.create(conn)


# Rows each dataset held for a subject when its erasure began. Written before anything is
# erased, cleared when the request completes: a run killed between a sweep and its audit
# entry, or stopped by a hold, still certifies every row the erasure found.
request_baselines = sa.Table(
    "lethe_request_baselines", metadata,
    sa.Column("request_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("dataset", sa.String(200), primary_key=True),
    sa.Column("rows", sa.BigInteger, nullable=False),
    # a `referenced_by` dataset: the keys of the rows the subject's rows pointed at, as a
    # JSON list of text, so a run killed after the subject row went still finds them
    # (migration 13); cleared with the baselines when the request completes
    sa.Column("pointed", sa.Text),
)


def _create_request_baselines(conn: Connection) -> None:
    # as migration 5 made it: later migrations add their columns themselves
    sa.Table(request_baselines.name, sa.MetaData(),
             *(c._copy() for c in request_baselines.columns if c.name != "pointed")
             ).create(conn)


# One row per unit of work several workers might take (a dataset's sweep for one
# schedule occurrence, a request): whoever holds an unexpired lease does it.
leases = sa.Table(
    "lethe_leases", metadata,
    sa.Column("unit", sa.String(400), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),  # running | done
    sa.Column("takeovers", sa.Integer, nullable=False, server_default="0"),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)


def _create_leases(conn: Connection) -> None:
    leases.create(conn)


# HTTP API keys: only an scrypt hash of the secret is kept. An impersonation token is a
# key too, short-lived, naming the admin key that issued it.
api_keys = sa.Table(
    "lethe_api_keys", metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # public part of the key
    sa.Column("secret_hash", sa.Text, nullable=False),  # scrypt$n$r$p$salt$hash
    sa.Column("role", sa.String(20), nullable=False),  # admin | privacy | auditor | service
    sa.Column("workspace", sa.String(200), nullable=False),  # a workspace id or __org__
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True)),
    sa.Column("impersonator", sa.String(32)),  # the admin key behind an impersonation token
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
    sa.Column("last_used_at", sa.DateTime(timezone=True)),
)

# A workspace's region preference (SPEC: "a region preference per account"), set by the API.
workspaces = sa.Table(
    "lethe_workspaces", metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("region", sa.String(50)),  # NULL: no preference
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_by", sa.String(200), nullable=False),
)


def _create_api_tables(conn: Connection) -> None:
    api_keys.create(conn)
    workspaces.create(conn)
    # Which workspace opened a request (NULL: the organization): a workspace key sees only
    # its own requests, and its requests only ever match that workspace's subject rows.
    conn.execute(sa.text("ALTER TABLE lethe_requests ADD COLUMN workspace VARCHAR(200)"))


# Authorised residency transfers: a workspace's dataset may be held in another region
# (until a date, or until revoked); `check` exempts it from the residency finding.
transfers = sa.Table(
    "lethe_transfers", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("workspace", sa.String(200), nullable=False, index=True),
    sa.Column("dataset", sa.String(200), nullable=False),
    sa.Column("to_region", sa.String(50), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("until", sa.DateTime(timezone=True)),  # exclusive; NULL: until revoked
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("recorded_by", sa.String(200), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
    sa.Column("revoked_by", sa.String(200)),
)


def _create_transfers(conn: Connection) -> None:
    transfers.create(conn)


# Signed certificates of deletion, kept by lethe itself: a bulk erasure writes thousands
# in one transaction instead of thousands of files, and an API on another machine than
# the worker that erased can still hand them out. Files are written from here on demand.
certificates = sa.Table(
    "lethe_certificates", metadata,
    sa.Column("request_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("document", sa.Text, nullable=False),  # the signed JSON, as written to files
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


def _create_certificates(conn: Connection) -> None:
    certificates.create(conn)


def _add_estimated_flag(conn: Connection) -> None:
    conn.execute(sa.text("ALTER TABLE lethe_run_actions ADD COLUMN estimated BOOLEAN"))


def _add_run_owner(conn: Connection) -> None:
    for column in ("machine VARCHAR(200)", "pid INTEGER", "alive_at TIMESTAMP"):
        if conn.dialect.name == "postgresql" and column.startswith("alive_at"):
            column = "alive_at TIMESTAMP WITH TIME ZONE"
        conn.execute(sa.text(f"ALTER TABLE lethe_runs ADD COLUMN {column}"))
    if conn.dialect.name == "postgresql":  # SQLite does not enforce a VARCHAR's length
        conn.execute(sa.text("ALTER TABLE lethe_runs ALTER COLUMN status TYPE VARCHAR(40)"))


def _add_blocked(conn: Connection) -> None:
    for column in ("blocked INTEGER", "blocked_by TEXT"):
        conn.execute(sa.text(f"ALTER TABLE lethe_run_actions ADD COLUMN {column}"))


def _add_lag(conn: Connection) -> None:
    conn.execute(sa.text("ALTER TABLE lethe_run_actions ADD COLUMN lag_seconds "
                         + ("DOUBLE PRECISION" if conn.dialect.name == "postgresql" else "REAL")))


def _add_pointed_keys(conn: Connection) -> None:
    conn.execute(sa.text("ALTER TABLE lethe_request_baselines ADD COLUMN pointed TEXT"))


# A workspace's own retention period for a dataset, set through the API within the
# bounds of the dataset's rule (`keep: {default, min, max}`); no row: the default.
retention_overrides = sa.Table(
    "lethe_retention_overrides", metadata,
    sa.Column("workspace", sa.String(200), primary_key=True),
    sa.Column("dataset", sa.String(200), primary_key=True),
    sa.Column("keep", sa.String(20), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_by", sa.String(200), nullable=False),
)


def _create_retention_overrides(conn: Connection) -> None:
    retention_overrides.create(conn)


MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "runs, run actions and holds", _create_initial),
    (2, "hash-chained audit log and signed checkpoints", _create_audit),
    (3, "data-subject requests", _create_requests),
    (4, "wrapped per-subject data keys", _create_subject_keys),
    (5, "erasure baselines", _create_request_baselines),
    (6, "work leases for workers", _create_leases),
    (7, "API keys, workspace regions, request workspaces", _create_api_tables),
    (8, "authorised residency transfers", _create_transfers),
    (9, "certificates of deletion", _create_certificates),
    (10, "run actions say when a count is an estimate", _add_estimated_flag),
    (11, "runs name their process and when it was last alive; longer statuses",
     _add_run_owner),
    (12, "run actions say how many due rows a foreign key kept, and which", _add_blocked),
    (13, "erasure baselines keep the keys of the rows a subject points at", _add_pointed_keys),
    (14, "run actions say how long their oldest due row was past its limit", _add_lag),
    (15, "retention periods workspaces set through the API", _create_retention_overrides),
]
