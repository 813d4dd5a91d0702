"""Audit benchmark: append throughput, and chain verification against plain hashlib.

`python bench/audit.py [--entries N]`. Verification is measured twice: over rows already
in memory (what an offline export check does) and streamed from PostgreSQL (what
`lethe audit verify` does); the baseline is one `hashlib.sha256` per entry over the same
body bytes, in the same run.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path
from typing import Any

from common import drop_database, fresh_database, write_result

from lethe.audit.chain import (
    GENESIS,
    SEPARATOR,
    canonical_json,
    entry_body,
    entry_hash,
    verify_chain,
)
from lethe.audit.events import RetentionStep
from lethe.audit.log import AuditLog, AuditSettings, timestamp
from lethe.control.schema import audit
from lethe.control.store import ControlStore

DB = "lethe_bench_audit"


def synthetic_rows(n: int) -> list[tuple[Any, ...]]:
    """A valid chain of realistic retention-step entries."""
    rows = []
    prev = GENESIS
    at = timestamp()
    for seq in range(1, n + 1):
        details = canonical_json({"action": "delete", "batches": 12, "dataset": "sessions",
                                  "done": 118_220, "error": None, "held": 3, "parent": None,
                                  "planned": 118_223, "remaining": 0, "rule": 0, "run": 42,
                                  "verified": True})
        fields = (at, "retention-worker", "db-host-1", "retention.delete", "dataset:sessions",
                  "", details)
        digest = entry_hash(prev, seq, fields)
        rows.append((seq, *fields, prev, digest))
        prev = digest
    return rows


def best_of(runs: int, fn: Any) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def measure_append(url: str, n: int, key: Path, per_transaction: int) -> dict[str, Any]:
    control = ControlStore(url)
    log = AuditLog(control.engine, AuditSettings("bench", key, 1000), actor="bench",
                   source="bench")
    event = RetentionStep(1, "sessions", 0, "delete", None, 10, 0, 10, 1, True, 0, None)
    started = time.perf_counter()
    for _ in range(n // per_transaction):
        log.append_many([event] * per_transaction)
    elapsed = time.perf_counter() - started
    ok = log.verify().ok
    control.close()
    return {"entries": n, "per_transaction": per_transaction, "seconds": elapsed,
            "entries_per_s": n / elapsed, "verified": ok}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=500_000)
    parser.add_argument("--appends", type=int, default=5_000)
    args = parser.parse_args()
    rows = synthetic_rows(args.entries)
    bodies = [SEPARATOR.join(r[1:8]).encode("utf-8") for r in rows]

    chain = [(r[0], entry_body(r[1:8]), r[8], r[9]) for r in rows]

    def verify_in_memory() -> bool:
        """The chain walk over rows as the database delivers them: (seq, body, prev, hash)."""
        return verify_chain(iter(chain), [], organization="bench", public_key=None).ok

    baseline_s = best_of(3, lambda: [hashlib.sha256(b).digest() for b in bodies])
    memory_s = best_of(3, verify_in_memory)
    assert verify_in_memory()

    url = fresh_database(DB)
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "org.key"
        try:
            control = ControlStore(url)
            with control.engine.begin() as conn:
                names = ("seq", "at", "actor", "source", "action", "target", "reason",
                         "details", "prev_hash", "hash")
                for start in range(0, len(rows), 50_000):
                    conn.execute(audit.insert(), [dict(zip(names, r, strict=True))
                                                  for r in rows[start:start + 50_000]])
            log = AuditLog(control.engine, AuditSettings("bench", key, 1000), actor="b",
                           source="b")
            log.key()
            db_s = best_of(2, lambda: log.verify(log.key().public_key()))
            assert log.verify().entries == len(rows)
            control.close()
            drop_database(DB)
            fresh_database(DB)
            pg_append = measure_append(url, args.appends, key, 1)
            drop_database(DB)
            fresh_database(DB)
            pg_batched = measure_append(url, args.appends * 10, key, 500)
            sqlite_append = measure_append(f"sqlite:///{Path(tmp) / 'state.db'}",
                                           args.appends, key, 1)
        finally:
            drop_database(DB)

    n = len(rows)
    figures = {
        "hashlib_per_entry": {"entries_per_s": n / baseline_s, "seconds": baseline_s},
        "verify_in_memory": {"entries_per_s": n / memory_s, "seconds": memory_s,
                             "vs_hashlib": baseline_s / memory_s},
        "verify_from_postgresql": {"entries_per_s": n / db_s, "seconds": db_s,
                                   "vs_hashlib": baseline_s / db_s},
        "append_postgresql": pg_append,
        "append_postgresql_500_per_transaction": pg_batched,
        "append_sqlite": sqlite_append,
    }
    print(f"{n:,} entries; baseline hashlib.sha256 per entry: {n / baseline_s:,.0f}/s")
    print(f"verify in memory:       {n / memory_s:>10,.0f} entries/s  "
          f"({baseline_s / memory_s:.2f}x hashlib)")
    print(f"verify from PostgreSQL: {n / db_s:>10,.0f} entries/s  "
          f"({baseline_s / db_s:.2f}x hashlib)")
    print(f"append, PostgreSQL:     {pg_append['entries_per_s']:>10,.0f} entries/s "
          "(one transaction each)")
    print(f"append, PostgreSQL:     {pg_batched['entries_per_s']:>10,.0f} entries/s "
          "(500 per transaction)")
    print(f"append, SQLite:         {sqlite_append['entries_per_s']:>10,.0f} entries/s "
          "(one transaction each)")
    path = write_result("audit", {"entries": n, **figures,
                                  "targets": {"verify_entries_per_s": 300_000,
                                              "verify_vs_hashlib": 0.5}})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
