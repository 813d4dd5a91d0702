"""The starter policy `lethe init` writes: small, valid, commented, and pointing at the
application database it was given (or at a placeholder path `check` reports as missing)."""

from __future__ import annotations

import json
from pathlib import Path

PLACEHOLDER_DATABASE = "sqlite:///path/to/your-app.db"
_DATABASE = "@DATABASE_URL@"

STARTER_POLICY = """\
# lethe policy: what data exists, where, how it is classified, how long it may live.
# Reference: `lethe schema` prints the JSON Schema of this file.
lethe: 1
organization: Example Inc
control: sqlite:///.lethe/state.db      # lethe's own tables (runs, holds, audit)
regions: [us]
stores:
  # your application's database: sqlite:///path/app.db or postgresql://user@host/db
  # (`${VAR}` reads the environment, e.g. url: "${APP_DATABASE_URL}")
  app: {url: @DATABASE_URL@, region: us}
subjects:
  user: {dataset: users, identities: [email, id]}
datasets:
  users:
    store: app
    table: users
    class: pii
    fields:
      email: {class: pii, anonymize: mask-email}
    soft_delete: {column: deleted_at, recover_for: 14d}
    retention:
      - {keep: 90d, after: closed_at, action: soft-delete}
  sessions:
    store: app
    table: sessions
    class: operational
    belongs_to: {users: user_id}
    retention:
      - {keep: 30d, after: last_seen_at}
"""


def database_url(given: str) -> str:
    """A URL as given; a plain path is a SQLite file, made absolute so the policy means
    the same file whichever directory lethe runs in."""
    if "://" in given:
        return given
    return "sqlite:///" + str(Path(given).expanduser().resolve())


def starter_policy(database: str = PLACEHOLDER_DATABASE) -> str:
    """The starter with `database` (a URL) as the application store's URL."""
    return STARTER_POLICY.replace(_DATABASE, json.dumps(database))  # a YAML "…" scalar
