"""The starter policy `lethe init` writes: small, valid, and commented."""

STARTER_POLICY = """\
# lethe policy: what data exists, where, how it is classified, how long it may live.
# Reference: `lethe schema` prints the JSON Schema of this file.
lethe: 1
organization: Example Inc
control: sqlite:///.lethe/state.db      # lethe's own tables (runs, holds, audit)
regions: [us]
stores:
  app: {url: "${APP_DATABASE_URL}", region: us}   # postgresql://... or sqlite:///...
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
