"""What the SIGKILL tests of request runs share: the CLI as a separate process, and
counting rows as they are."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import sqlalchemy as sa


def argv(*args: str) -> list[str]:
    """`lethe ARGS` as a command line of this interpreter."""
    return [sys.executable, "-c", "from lethe.cli.app import main; main()", *args]


def lethe(*args: str) -> dict[str, Any]:
    """Run `lethe ARGS` to the end; it must succeed; its JSON output."""
    proc = subprocess.run(argv(*args), capture_output=True, text=True, check=False,
                          env={**os.environ, "NO_COLOR": "1"}, timeout=300)
    assert proc.returncode == 0, f"lethe {' '.join(args)}: {proc.stdout}\n{proc.stderr}"
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def count(engine: sa.Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar_one())
