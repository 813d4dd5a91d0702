"""What a command imports before it does anything (issue 21): deterministic, not timed.

Each case runs in a fresh interpreter and reads `sys.modules` afterwards, so a module
that a command does not use and that slipped back into a top-level import fails here.
How long the commands take is measured by bench/cli.py, never asserted in a test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures import build_app, write_policy

# heavy third-party packages, and lethe's own layers below the command line
NOT_FOR_HELP = {"fastapi", "starlette", "uvicorn", "sqlalchemy", "psycopg", "pymysql",
                "boto3", "botocore", "redis", "jinja2", "pydantic", "yaml", "cryptography",
                "croniter", "prometheus_client", "rich"}
NOT_FOR_HELP_LETHE = {"lethe.api", "lethe.commands", "lethe.engine", "lethe.requests",
                      "lethe.runtime", "lethe.stores", "lethe.policy", "lethe.catalog",
                      "lethe.control", "lethe.audit", "lethe.holds", "lethe.crypto",
                      "lethe.governance", "lethe.worker", "lethe.demo"}
# a SQLite-and-files policy: no server drivers, no API, no S3, no Redis, no templates, and
# no cryptography (a plan signs, encrypts and decrypts nothing)
NOT_FOR_PLAN = {"fastapi", "starlette", "uvicorn", "psycopg", "pymysql", "boto3", "cryptography",
                "botocore", "redis", "jinja2", "prometheus_client",
                "sqlalchemy.dialects.postgresql"}  # its modules cost a SQLite plan ~30 ms
NOT_FOR_PLAN_LETHE = {"lethe.api", "lethe.requests", "lethe.worker", "lethe.demo",
                      "lethe.governance", "lethe.reports.trust", "lethe.reports.render",
                      # a plan writes no audit entry and runs nothing: ~40 event
                      # dataclasses and the executor's run records stay unloaded
                      "lethe.audit.events", "lethe.engine.execute", "lethe.engine.recovery"}

REPORT = "import json, sys; print(json.dumps(sorted(sys.modules)), file=sys.stderr)"


def loaded(code: str, cwd: Path | None = None) -> set[str]:
    """The modules a fresh interpreter has after running `code` (reported on stderr, the
    last line, so a command's own output does not matter)."""
    done = subprocess.run([sys.executable, "-c", f"{code}\n{REPORT}"], cwd=cwd,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def under(modules: set[str], packages: set[str]) -> set[str]:
    """The packages (or modules) of `packages` that `modules` contains, or lies under."""
    return {p for p in packages if any(m == p or m.startswith(p + ".") for m in modules)}


def run_main(*argv: str) -> str:
    return ("from lethe.cli.app import main\n"
            f"try:\n    main({list(argv)!r})\nexcept SystemExit:\n    pass")


def test_importing_the_command_line_loads_nothing_heavy() -> None:
    modules = loaded("import lethe.cli.app")
    assert under(modules, NOT_FOR_HELP) == set()
    assert under(modules, NOT_FOR_HELP_LETHE) == set()
    assert "typer" in modules  # the check can see what is loaded


def test_help_loads_nothing_heavy() -> None:
    modules = loaded(run_main("--help"))
    assert under(modules, NOT_FOR_HELP) == set()
    assert under(modules, NOT_FOR_HELP_LETHE) == set()


def test_a_subcommand_help_loads_nothing_heavy() -> None:
    modules = loaded(run_main("request", "run", "--help"))
    # Typer (0.2x) itself builds a command's parameters with pydantic's TypeAdapter
    assert under(modules, NOT_FOR_HELP - {"pydantic"}) == set()
    assert under(modules, NOT_FOR_HELP_LETHE) == set()


def test_import_lethe_is_lazy_and_still_exports_the_api() -> None:
    modules = loaded("import lethe")
    assert under(modules, {"sqlalchemy", "pydantic", "lethe.engine"}) == set()
    modules = loaded("from lethe import Runtime, build_plan, execute, load_policy")
    assert under(modules, {"sqlalchemy", "lethe.engine.plan", "lethe.runtime"}) == {
        "sqlalchemy", "lethe.engine.plan", "lethe.runtime"}


@pytest.fixture
def policy(tmp_path: Path, sqlite_url: str) -> Path:
    build_app(sqlite_url)
    return write_policy(tmp_path, sqlite_url)


def test_plan_on_sqlite_loads_no_server_driver_api_or_templates(policy: Path) -> None:
    modules = loaded(run_main("plan", "--json", "--policy", str(policy)))
    assert under(modules, NOT_FOR_PLAN) == set()
    assert under(modules, NOT_FOR_PLAN_LETHE) == set()
    assert {"sqlalchemy", "lethe.engine.plan"} <= modules  # it did plan


@pytest.mark.parametrize(("url", "driver"), [("s3://bucket/prefix?region=eu-west-1", "boto3"),
                                             ("redis://127.0.0.1:6379/0", "redis")])
def test_a_store_backend_loads_when_a_store_of_its_kind_is_opened(url: str,
                                                                  driver: str) -> None:
    before = loaded("import lethe.catalog, lethe.stores.registry")
    assert driver not in before
    opened = loaded(f"from lethe.stores.registry import open_store\nopen_store('x', {url!r})")
    assert driver in opened
