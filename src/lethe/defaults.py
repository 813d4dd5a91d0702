"""Defaults the command line shows and the library applies, in one place.

They live apart from the code that uses them so that `lethe --help` can print them
without importing the engine, the API or the scanner.
"""

from __future__ import annotations

BATCH_SIZE = 10_000  # rows per transaction in a sweep
# a retention run's time budget per batch, in seconds: where a batch keeps no rows in
# memory (a PostgreSQL page walk), it grows past BATCH_SIZE while each commits within it
BATCH_SECONDS = 0.1
MOST_BATCH_SECONDS = 2.0  # no batch budget may keep a transaction open longer (issue 20)
SCAN_SAMPLE = 1000  # rows `scan` samples per table
API_PER_MINUTE = 600  # calls per minute per API key
API_MAX_BODY = 1 << 20  # 1 MiB: a request names identities, not documents

# the workspace of organization-level rows and API keys (no workspace, no region)
ORG = "__org__"
# API key roles, widest first
API_ROLES = ("admin", "privacy", "auditor", "service")
ERASURE_GROUP_SIZE = 500  # erasure requests per group: one sweep per dataset for all
