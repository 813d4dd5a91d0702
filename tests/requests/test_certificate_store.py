"""Certificates kept in the control store: a bulk run writes no files, every certificate
can be verified and exported from the store, and a changed stored one is caught."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from lethe.cli.app import main
from lethe.control.schema import certificates
from lethe.requests.certificate import load_certificate, verify_certificate
from lethe.requests.service import open_many, run_many
from tests.fixtures import NOW, build_app, runtime, write_policy


def lethe(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as stopped:
        main(list(argv))
    return int(stopped.value.code or 0), capsys.readouterr().out


def test_bulk_certificates_are_kept_verified_and_exported_from_the_store(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build_app(f"sqlite:///{tmp_path / 'app.db'}").dispose()
    policy = write_policy(tmp_path, f"sqlite:///{tmp_path / 'app.db'}")
    rt = runtime(policy)
    records = open_many(rt, "erasure", "user", [[f"id={i}"] for i in (2, 3)])
    run_many(rt, [r.id for r in records], tmp_path / "out")
    rt.close()
    rt = runtime(policy, NOW + timedelta(days=31))
    done = run_many(rt, [r.id for r in records], tmp_path / "out")
    engine = rt.control.engine
    rt.close()
    assert [o.record.status for o in done] == ["completed", "completed"]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())

    first = str(records[0].id)
    code, out = lethe(capsys, "certificate", "verify", "--request", first,
                      "--policy", str(policy), "--json")
    assert code == 0 and json.loads(out)["ok"] is True
    code, out = lethe(capsys, "certificate", "export", "--request", first, "--request",
                      str(records[1].id), "--out", str(tmp_path / "files"),
                      "--policy", str(policy), "--json")
    assert code == 0
    files = [Path(f) for f in json.loads(out)["files"]]
    assert sorted(f.suffix for f in files) == [".html", ".html", ".json", ".json"]
    for path in (f for f in files if f.suffix == ".json"):
        assert verify_certificate(load_certificate(path)).ok

    with engine.begin() as conn:  # someone edits the kept certificate's counts
        document = json.loads(conn.execute(sa.select(certificates.c.document).where(
            certificates.c.request_id == records[0].id)).scalar_one())
        sessions = next(d for d in document["certificate"]["datasets"]
                        if d["dataset"] == "sessions")
        assert sessions["erased"] == 2
        sessions["erased"], sessions["retained"] = 0, 2  # still adds up; the signature won't
        conn.execute(certificates.update().where(certificates.c.request_id == records[0].id)
                     .values(document=json.dumps(document)))
    engine.dispose()
    code, out = lethe(capsys, "certificate", "verify", "--request", first,
                      "--policy", str(policy), "--json")
    assert code == 1 and json.loads(out)["ok"] is False
    code, _ = lethe(capsys, "certificate", "export", "--request", first,
                    "--out", str(tmp_path / "again"), "--policy", str(policy))
    assert code == 2 and not (tmp_path / "again").exists()
    code, _ = lethe(capsys, "certificate", "verify", "--request", "999",
                    "--policy", str(policy))
    assert code == 2
