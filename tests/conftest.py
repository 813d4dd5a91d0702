"""Real stores for tests: a SQLite file per test and a throwaway PostgreSQL database.

PostgreSQL comes from LETHE_TEST_POSTGRES_URL (default: the local server). Under
CI=true a missing server fails the run instead of skipping.

The suite runs on several processes (pytest-xdist, `-n` in pyproject.toml). A test
marked `alone` asserts something another process's work in the same PostgreSQL
cluster can change (any open transaction, in any database, keeps PostgreSQL from
pruning deleted rows): it runs while no other test does.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from lethe.stores.sql import normalize_url


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None
                            ) -> Generator[None, object, object]:
    """Across the run's processes, a readers-writer lock: every test (with its fixtures'
    set-up and tear-down) holds it shared, an `alone` test exclusively. The gate, taken
    briefly by readers, lets a waiting `alone` test in before the next reader."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run is None:  # one process: nothing runs beside the test
        return (yield)
    base = Path(tempfile.gettempdir()) / f"lethe-tests-{run}"
    with open(f"{base}.gate", "a") as gate, open(f"{base}.lock", "a") as lock:
        fcntl.flock(gate, fcntl.LOCK_EX)
        alone = item.get_closest_marker("alone") is not None
        fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        if not alone:
            fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            return (yield)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            fcntl.flock(gate, fcntl.LOCK_UN)


POSTGRES_URL = os.environ.get("LETHE_TEST_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/test")


def _admin_engine() -> sa.Engine:
    return sa.create_engine(normalize_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")


def postgres_available() -> bool:
    try:
        with _admin_engine().connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True
    except sa.exc.OperationalError:
        return False


@pytest.fixture(scope="session")
def postgres_server() -> str:
    if not postgres_available():
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL} (required under CI)")
        pytest.skip("PostgreSQL is not reachable")
    return POSTGRES_URL


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh database for one test, dropped afterwards."""
    name = f"lethe_test_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(normalize_url(postgres_server)).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'app.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def app_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Run the test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'app.db'}"
    return str(request.getfixturevalue("postgres_url"))


REDIS_URL = os.environ.get("LETHE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_space() -> Iterator[tuple[str, str]]:
    """(Redis URL, a key prefix of this test's own); its keys are removed afterwards."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is not reachable at {REDIS_URL} (required under CI)")
        pytest.skip("Redis is not reachable")
    prefix = f"lethe-test-{uuid.uuid4().hex[:10]}"
    try:
        yield REDIS_URL, prefix
    finally:
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.unlink(key)
        client.close()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 protocol server on loopback: moto in server mode, in its own process."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(endpoint, timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the moto S3 server did not start")
                time.sleep(0.1)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def s3_url(s3_endpoint: str) -> str:
    """A fresh bucket on the loopback S3 server, as a store URL with a root prefix."""
    import boto3

    bucket = f"lethe-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    client.close()
    return f"s3://{bucket}/root?endpoint_url={s3_endpoint}&region=us-east-1"


@pytest.fixture(params=["file", "s3"])
def objects_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Run the test once on a local directory and once on the S3 server."""
    if request.param == "file":
        return f"file://{tmp_path / 'objects'}"
    return str(request.getfixturevalue("s3_url"))
