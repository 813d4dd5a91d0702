"""The batch loop every deletion goes through: retention steps and erasure requests alike.

The sweep is rebuilt before every batch, so conditions that can change while a run is
going (holds, above all) are read fresh each time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lethe.holds import HoldGate
from lethe.stores.base import BatchResult, RowStore, Sweep, Value

OnBatch = Callable[[BatchResult, float], None]  # (batch, milliseconds)


@dataclass
class SweepStats:
    rows: int = 0
    batches: int = 0
    longest_ms: float = 0.0
    total_ms: float = 0.0
    tallies: dict[Value, int] = field(default_factory=dict)  # Sweep.tally value -> rows


def sweep_all(store: RowStore, make_sweep: Callable[[], Sweep], batch_size: int,
              on_batch: OnBatch | None = None, *, gate: HoldGate) -> SweepStats:
    """Sweep in batches until nothing is left. Each batch builds its sweep (reading the
    holds) and commits inside the hold gate, so a hold placed meanwhile either is in the
    sweep's condition or waits for the batch's commit (lethe.holds.gate)."""
    stats = SweepStats()
    after = None
    while True:
        with gate.shared():
            sweep = make_sweep()
            started = time.perf_counter()
            batch = store.sweep_batch(sweep, after, batch_size)
        elapsed_ms = (time.perf_counter() - started) * 1000
        if batch.upper is None:
            return stats
        stats.batches += 1
        stats.rows += batch.rows
        stats.longest_ms = max(stats.longest_ms, elapsed_ms)
        stats.total_ms += elapsed_ms
        for value, rows in batch.tallies.items():
            stats.tallies[value] = stats.tallies.get(value, 0) + rows
        if on_batch is not None:
            on_batch(batch, elapsed_ms)
        if batch.last:
            return stats
        after = batch.upper
