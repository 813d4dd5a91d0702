"""The child process of the crash test: sweep a table batch by batch, saying so.

`python -m lethe.testing.crash URL TABLE CHILD_TABLE CUTOFF LIMIT STALL_AFTER` opens
the store through the registry and deletes TABLE's rows older than CUTOFF (with their
CHILD_TABLE rows, as a cascade), LIMIT keys a batch. After each committed batch it
prints `batch UPPER ROWS`; after STALL_AFTER batches (0: never) it prints `stalled`
and waits to be killed, so the parent can kill it exactly between two batches.

The sweep it runs is `due_sweep`, which the suite also runs in-process: an interrupted
run and an uninterrupted one do the same thing.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime

from lethe.stores.base import Cascade, Delete, Older, RowStore, Sweep
from lethe.stores.registry import open_store


def due_sweep(table: str, child_table: str, cutoff: datetime) -> Sweep:
    """Delete `table`'s rows older than `cutoff`, and their rows in `child_table`."""
    return Sweep(table, "id", Older("created_at", cutoff), Delete(),
                 cascades=(Cascade("items", child_table, "id", "parent_id", Delete()),))


def _say(line: str) -> None:
    """One line to the parent, sent now: it reads them to know what has committed."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    url, table, child_table, cutoff, limit, stall_after = argv
    store = open_store("crash", url)
    if not isinstance(store, RowStore):
        sys.stderr.write(f"{url!r} is not a row store\n")
        return 2
    sweep = due_sweep(table, child_table, datetime.fromisoformat(cutoff))
    after, batches = None, 0
    while True:
        batch = store.sweep_batch(sweep, after, int(limit))
        if batch.upper is None:
            break
        batches += 1
        _say(f"batch {batch.upper} {batch.rows}")
        if batches == int(stall_after):
            _say("stalled")
            time.sleep(3600)  # until the parent's SIGKILL
        if batch.last:
            break
        after = batch.upper
    _say("done")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
