"""Shared set-up for benchmarks: a throwaway PostgreSQL database and result files."""

from __future__ import annotations

import gc
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from lethe.cli.app import COLLECTOR_THRESHOLDS
from lethe.defaults import BATCH_SECONDS
from lethe.stores.sql import normalize_url

# Every bench runs with the cyclic collector the `lethe` console script sets up
# (cli.app.entry). With Python's defaults a bulk erasure of 2,000 subjects spent
# 255-273 ms of its ~1.9 s in collections that `lethe request run --all` never pays
# (12-23 ms with these thresholds); the benches before 2026-12-07 ran with the defaults.
gc.set_threshold(*COLLECTOR_THRESHOLDS)

POSTGRES_URL = os.environ.get("LETHE_BENCH_POSTGRES_URL",
                              os.environ.get("LETHE_TEST_POSTGRES_URL",
                                             "postgresql://postgres@127.0.0.1:5432/test"))
RESULTS = Path(__file__).parent / "results"


def fresh_database(name: str, tablespace: str | None = None) -> str:
    """A new, empty database; in `tablespace` (an existing one) when given."""
    admin = sa.create_engine(normalize_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    where = f' TABLESPACE "{tablespace}"' if tablespace else ""
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"{where}'))
    admin.dispose()
    url = sa.engine.make_url(normalize_url(POSTGRES_URL)).set(database=name)
    return url.render_as_string(hide_password=False)


def drop_database(name: str) -> None:
    admin = sa.create_engine(normalize_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    data = {"measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, **data}
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def timed_run(url: str, datasets: dict[str, Any], now: datetime,
              batch_size: int, batch_seconds: float = BATCH_SECONDS
              ) -> tuple[Any, Any, float]:
    """lethe's run over one store at `url` with these datasets, timed as a worker runs it:
    the policy loaded, the plan made and the organization's key loaded before the clock
    starts (its creation belongs to a deployment's first run); everything `execute` does
    is timed. (plan, result, seconds). `batch_seconds`: the run's time budget per batch
    (lethe's default unless given; 0: every batch `batch_size` rows)."""
    import yaml

    from lethe.clock import Clock
    from lethe.engine.execute import execute
    from lethe.engine.plan import build_plan
    from lethe.policy.load import load_policy
    from lethe.runtime import Runtime

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lethe.yaml"
        path.write_text(yaml.safe_dump({
            "lethe": 1, "organization": "bench", "control": "sqlite:///state.db",
            "stores": {"app": {"url": url}}, "datasets": datasets}))
        rt = Runtime.open(load_policy(path), Clock(now))
        try:
            plan = build_plan(rt)
            rt.audit.key()
            started = time.perf_counter()
            result = execute(rt, plan, batch_size=batch_size, batch_seconds=batch_seconds)
            return plan, result, time.perf_counter() - started
        finally:
            rt.close()
