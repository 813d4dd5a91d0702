"""Shared set-up for benchmarks: a throwaway PostgreSQL database and result files."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from lethe.stores.sql import normalize_url

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
