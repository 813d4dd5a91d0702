"""The demo's object store: "download my data" exports in a local directory.

Users ask for an export of their data now and then; each is a file under
`exports/USER_ID/`, dated by its modification time over the last 90 days. The policy
keeps them 30 days, so about two thirds are due on the demo's first run. The first
user listed (the demo's erasure request) has a recent one, which goes with the user.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

EXPORT_WINDOW_DAYS = 90


def build_demo_files(root: Path, now: datetime, user_ids: Sequence[int], *,
                     seed: int = 7) -> int:
    """Write (overwrite) the exports under `root`; returns how many files."""
    shutil.rmtree(root, ignore_errors=True)
    rng = random.Random(seed)
    written = 0
    for position, user_id in enumerate(user_ids):
        for number in range(rng.randint(1, 3)):
            # the first user (the demo's erasure request) has one from two days ago
            age = 2.0 if position == 0 and number == 0 else rng.uniform(0, EXPORT_WINDOW_DAYS)
            made = now - timedelta(days=age)
            path = root / "exports" / str(user_id) / f"export-{made:%Y%m%d-%H%M%S}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"user": user_id, "requested_at": made.isoformat(),
                                        "note": "synthetic demo export"}), encoding="utf-8")
            stamp = made.timestamp()
            os.utime(path, (stamp, stamp))
            written += 1
    return written
