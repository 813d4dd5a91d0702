"""`lethe serve` as a real process on a real socket, over PostgreSQL: HTTP calls,
schemathesis fuzzing with no server error, masked logs, and a clean SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fixtures import build_app, write_policy

LETHE = [
    sys.executable, "-c", "from lethe.cli.app import main; main()"]


@dataclass
class Server:
    url: str
    policy: Path
    process: subprocess.Popen[bytes]
    log: Path

    def key(self, role: str, workspace: str = "__org__") -> str:
        made = subprocess.run([*LETHE, "keys", "create", "--role", role, "--workspace",
                               workspace, "--policy", str(self.policy), "--json"],
                              capture_output=True, check=True, timeout=60)
        return str(json.loads(made.stdout)["token"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path, postgres_url: str) -> Iterator[Server]:
    build_app(postgres_url).dispose()
    policy = write_policy(tmp_path, postgres_url, control=postgres_url)
    port = _free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*LETHE, "serve", "--policy", str(policy), "--port", str(port),
             "--rate-limit", "100000", "--out", str(tmp_path / "out")],
            stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, "LETHE_DEBUG": ""})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("lethe serve did not come up: " + log.read_text(errors="replace")[-2000:])
    try:
        yield Server(url, policy, process, log)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_the_served_api_answers_audits_masks_and_stops_on_sigterm(server: Server) -> None:
    token = server.key("privacy", "ws_a")
    headers = {"Authorization": f"Bearer {token}"}
    opened = httpx.post(f"{server.url}/v1/requests", headers=headers, json={
        "kind": "access", "subject": "user", "identities": {"email": "user1@example.com"}})
    assert opened.status_code == 201, opened.text
    ran = httpx.post(f"{server.url}/v1/requests/{opened.json()['id']}/run", headers=headers,
                     timeout=60)
    assert ran.status_code == 200 and ran.json()["datasets"]["users"]["rows"] == 1
    # Personal data in a query string reaches the access log only masked.
    httpx.get(f"{server.url}/v1/requests?email=jane.roe@example.com", headers=headers)
    auditor = {"Authorization": f"Bearer {server.key('auditor')}"}
    calls = httpx.get(f"{server.url}/v1/audit?action=api.call&limit=1000",
                      headers=auditor).json()["entries"]
    assert {json.loads(e["details"])["action"] for e in calls} >= {"requests.open",
                                                                    "requests.run"}
    assert all(e["source"] == "api:127.0.0.1" for e in calls)
    server.process.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal it caught
    assert server.process.wait(timeout=15) in (0, -signal.SIGTERM)
    log = server.log.read_text(errors="replace")
    assert "Application shutdown complete" in log
    assert "GET /v1/requests" in log  # the access log is on
    assert "jane.roe@example.com" not in log
    assert token not in log and token.split("_", 2)[2] not in log


@pytest.mark.slow
def test_schemathesis_finds_no_server_error(server: Server, tmp_path: Path) -> None:
    token = server.key("admin")
    fuzz = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/v1/openapi.json",
         "--checks", "not_a_server_error", "--header", f"Authorization: Bearer {token}",
         "--max-examples", "8", "--generation-deterministic", "--phases",
         "examples,coverage,fuzzing,stateful"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    summary = fuzz.stdout[-6000:]
    assert fuzz.returncode == 0, summary
    assert "passed" in summary and "Server error" not in summary
