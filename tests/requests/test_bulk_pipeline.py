"""A bulk run certifies each group on a thread of its own while the next group is counted
and erased (`Certifications`): every request still ends certified once, with only its own
evidence; a certification that fails stops the run, and a rerun finishes it."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from lethe.audit.chain import canonical_json
from lethe.commands.requests import run_open_requests
from lethe.control.certificates import CertificateStore
from lethe.errors import LetheError
from lethe.requests import erasure
from lethe.requests.certificate import certificate_text, verify_certificate
from lethe.requests.records import requests_of
from lethe.requests.service import open_many, run_many, run_request, stored_certificate
from lethe.requests.subjects import Certifications
from tests.fixtures import runtime
from tests.requests.test_bulk import people_and_orders

PEOPLE = range(1, 8)


def _app(url: str, tmp_path: Path) -> tuple[sa.Engine, Path]:
    """people 1-7, person p with p orders."""
    engine, path, _ = people_and_orders(url, tmp_path, PEOPLE)
    return engine, path


def _opened(rt: Any, people: Any = PEOPLE) -> list[Any]:
    return open_many(rt, "erasure", "person", [[f"email=p{p}@example.com"] for p in people])


def run_people(rt: Any, out: Path, group_size: int = 3) -> tuple[list[Any], list[Any]]:
    """A request for each person, all run in groups of `group_size`; the audit chain
    verifies after. The records and the outcomes."""
    records = _opened(rt)
    outcomes = run_many(rt, [r.id for r in records], out, group_size=group_size)
    assert rt.audit.verify().ok
    return records, outcomes


def _left(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM orders")).scalar_one())


def test_groups_are_certified_on_their_own_thread_each_with_its_own_evidence(
        app_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, path = _app(app_url, tmp_path)
    certifying: list[tuple[str, list[int]]] = []
    certify = erasure.certify_and_complete

    def recorded(rt: Any, done: Any, *args: Any, **kwargs: Any) -> None:
        certifying.append((threading.current_thread().name, [s.record.id for s in done]))
        certify(rt, done, *args, **kwargs)

    monkeypatch.setattr(erasure, "certify_and_complete", recorded)
    rt = runtime(path)
    try:
        records, outcomes = run_people(rt, tmp_path / "out")
        kept = {r.id: stored_certificate(rt, r.id) for r in records}
    finally:
        rt.close()
    # three groups, certified in order, none on the thread that erases
    assert [ids for _, ids in certifying] == [[r.id for r in records[i:i + 3]]
                                               for i in (0, 3, 6)]
    assert all(name.startswith("lethe-certify") for name, _ in certifying)
    assert _left(engine) == 0
    for p, record, outcome in zip(PEOPLE, records, outcomes, strict=True):
        assert outcome.record.status == "completed" and outcome.certified
        document = kept[record.id]
        assert document is not None and verify_certificate(document).ok
        orders = next(d for d in document["certificate"]["datasets"]
                      if d["dataset"] == "orders")
        assert orders["erased"] == p
        # its own request's entries only
        cited = {e["seq"] for e in document["certificate"]["evidence"]["audit_entries"]}
        own = {e.seq for e in rt.audit.entries(targets=[f"request:{record.id}"])}
        assert cited and cited <= own
    engine.dispose()


def test_a_group_that_cannot_be_certified_stops_the_run_and_a_rerun_finishes_it(
        app_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, path = _app(app_url, tmp_path)
    calls: list[int] = []
    certify = erasure.certify_and_complete

    def first_fails(rt: Any, done: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(len(done))
        if len(calls) == 1:
            raise LetheError("cannot certify: the signing key is unreadable", path="key")
        certify(rt, done, *args, **kwargs)

    monkeypatch.setattr(erasure, "certify_and_complete", first_fails)
    rt = runtime(path)
    try:
        records = _opened(rt)
        with pytest.raises(LetheError, match="signing key"):
            run_many(rt, [r.id for r in records], tmp_path / "out", group_size=1)
        first = requests_of(rt).get(records[0].id)
        assert first.status == "in_progress"  # erased, not completed
        assert stored_certificate(rt, records[0].id) is None  # not certified
        # stopped: the groups after the one in flight when it failed were not started
        assert len(calls) < len(PEOPLE)
        assert _left(engine) > 0
        monkeypatch.setattr(erasure, "certify_and_complete", certify)
        again = run_many(rt, [r.id for r in records], tmp_path / "out", group_size=1)
        assert rt.audit.verify().ok
        assert all(o.record.status == "completed" and o.certified for o in again)
        for p, record in zip(PEOPLE, records, strict=True):
            document = stored_certificate(rt, record.id)
            assert document is not None and verify_certificate(document).ok
            orders = next(d for d in document["certificate"]["datasets"]
                          if d["dataset"] == "orders")
            assert orders["rows"] == p and orders["erased"] == p  # the baselines
    finally:
        rt.close()
    assert _left(engine) == 0
    engine.dispose()


def test_certifications_run_in_order_and_tell_the_first_failure() -> None:
    ran: list[str] = []

    def boom() -> None:
        ran.append("boom")
        raise LetheError("first failure", path="group 1")

    def second() -> None:
        ran.append("second")
        raise LetheError("second failure", path="group 2")

    certifications = Certifications()
    certifications.submit(boom)
    certifications.submit(second)
    finished = threading.Event()
    certifications.submit(finished.set)
    assert finished.wait(10)
    with pytest.raises(LetheError, match="first failure"):
        certifications.check()
    with pytest.raises(LetheError, match="second failure"):
        certifications.check()
    certifications.check()  # nothing left to tell
    assert ran == ["boom", "second"]
    with pytest.raises(LetheError, match="first failure"), Certifications() as pending:
        pending.submit(boom)  # told on leaving, once everything handed off has run
    with pytest.raises(KeyError), Certifications() as pending:  # an error leaving wins
        pending.submit(boom)
        raise KeyError("the caller's own")
    assert ran == ["boom", "second", "boom", "boom"]


def test_many_requests_open_in_one_statement_each_record_in_its_place(
        app_url: str, tmp_path: Path) -> None:
    """`open_many` writes its requests in one INSERT (it wrote one per request) and
    gives each subject its own record, in the order asked, past one page of rows — the
    record as the control store reads it back (built from what was written)."""
    engine, path = _app(app_url, tmp_path)
    engine.dispose()
    rt = runtime(path)
    inserts: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("INSERT INTO lethe_requests"):
            inserts.append(statement)

    wanted = [f"p{n}@example.com" for n in random.Random(3).sample(range(5000), 1500)]
    sa.event.listen(rt.control.engine, "before_cursor_execute", seen)
    try:
        records = open_many(rt, "erasure", "person", [[f"email={e}"] for e in wanted])
        sa.event.remove(rt.control.engine, "before_cursor_execute", seen)
        assert records == requests_of(rt).get_many([r.id for r in records])
    finally:
        rt.close()
    assert [r.identities for r in records] == [{"email": e} for e in wanted]
    assert len({r.id for r in records}) == len(wanted)
    assert 1 <= len(inserts) <= 2  # (SQLAlchemy pages at 1,000 rows a statement)


def test_a_kept_certificate_is_its_signed_text_and_reads_as_its_file(
        app_url: str, tmp_path: Path) -> None:
    """The control store keeps each certificate with its body written once, as the
    canonical text the signature covers; read back, it is the same document, in the order
    of the file written at completion."""
    engine, path = _app(app_url, tmp_path)
    engine.dispose()
    rt = runtime(path)
    try:
        records = _opened(rt, (2, 3))
        outcomes = run_many(rt, [r.id for r in records], tmp_path / "out",
                            certificate_files=True)
        for record, outcome in zip(records, outcomes, strict=True):
            text = CertificateStore(rt.control.engine).get(record.id)
            assert text is not None
            body = json.loads(text)["certificate"]
            assert text.startswith('{"certificate":' + canonical_json(body) + ',"signature":')
            assert verify_certificate(json.loads(text)).ok
            kept = stored_certificate(rt, record.id)
            assert kept is not None and verify_certificate(kept).ok
            assert list(kept["certificate"])[:3] == ["format", "organization", "request"]
            assert outcome.certificate is not None
            assert certificate_text(kept) == outcome.certificate.read_text(encoding="utf-8")
    finally:
        rt.close()


def test_run_all_writes_the_files_a_killed_run_did_not(app_url: str, tmp_path: Path) -> None:
    """A run killed after a group's completion committed, before its files were written
    (they follow the commit, and a group is certified while the next is erased): the
    next `request run --all --certificate-files` writes them from the kept certificates."""
    engine, path = _app(app_url, tmp_path)
    engine.dispose()
    rt = runtime(path)
    out = tmp_path / "out"
    try:
        records = _opened(rt, (2, 3, 4))
        run_open_requests(rt, out, group_size=2, certificate_files=True)
        written = {p.name: p.read_text(encoding="utf-8") for p in out.iterdir()}
        assert len(written) == 2 * len(records)  # JSON and HTML each
        for name in list(written)[:3]:
            (out / name).unlink()  # as if killed before they were written
        assert run_open_requests(rt, out, certificate_files=True) == []  # nothing open
        assert {p.name: p.read_text(encoding="utf-8") for p in out.iterdir()} == written
    finally:
        rt.close()


def test_certificate_paths_are_recorded_absolute(app_url: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`--out` given relative: the record names the files absolutely, so a later run
    started elsewhere writes missing files where the first run put them."""
    engine, path = _app(app_url, tmp_path)
    engine.dispose()
    monkeypatch.chdir(tmp_path)
    rt = runtime(path)
    try:
        records = _opened(rt, (2, 3))
        run_open_requests(rt, Path("certs"), certificate_files=True)
        kept = requests_of(rt).get_many([r.id for r in records])
        assert all(r.certificate_path is not None and Path(r.certificate_path).is_absolute()
                   and Path(r.certificate_path).parent == tmp_path / "certs" for r in kept)
        first = Path(str(kept[0].certificate_path))
        first.unlink()
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)
        run_open_requests(rt, Path("certs"), certificate_files=True)
        assert first.is_file() and not (elsewhere / "certs").exists()
    finally:
        rt.close()


def test_an_access_export_path_is_recorded_absolute(app_url: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    engine, path = _app(app_url, tmp_path)
    engine.dispose()
    monkeypatch.chdir(tmp_path)
    rt = runtime(path)
    try:
        record = open_many(rt, "access", "person", [["email=p2@example.com"]])[0]
        outcome = run_request(rt, record.id, Path("exports"))
        kept = requests_of(rt).get(record.id).export_path
    finally:
        rt.close()
    assert outcome.record.status == "completed"
    assert kept is not None and Path(kept) == tmp_path / "exports" / Path(kept).name
    assert Path(kept).is_file()
