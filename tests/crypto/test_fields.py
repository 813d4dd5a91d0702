"""Envelope encryption, shredding with proof on copies, and KEK rotation."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from lethe.control.store import ControlStore
from lethe.crypto.fields import (
    EncryptedBytes,
    EncryptedText,
    FieldCipher,
    FieldError,
    ForSubject,
)
from lethe.crypto.kek import KEK_ENV, EnvironmentKek, KekError, LocalKeyFile
from lethe.crypto.keys import Shredded, SubjectKeys
from lethe.requests.service import open_request, run_request
from lethe.stores.sql import normalize_url
from tests.fixtures import runtime


@pytest.fixture
def keys(tmp_path: Path) -> SubjectKeys:
    control = ControlStore(f"sqlite:///{tmp_path / 'state.db'}")
    return SubjectKeys(control.engine, LocalKeyFile(tmp_path / "kek.json"))


def test_round_trip_and_associated_data(keys: SubjectKeys) -> None:
    cipher = FieldCipher(keys)
    token = cipher.encrypt_field("user", 42, "ada@example.com", dataset="users", column="email")
    assert "ada" not in token and token.startswith("lethe1:")
    assert cipher.decrypt_field(token, dataset="users", column="email") == "ada@example.com"
    with pytest.raises(FieldError, match="does not decrypt here"):
        cipher.decrypt_field(token, dataset="users", column="phone")  # pasted elsewhere
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(FieldError):
        cipher.decrypt_field(tampered, dataset="users", column="email")
    again = cipher.encrypt_field("user", 42, "ada@example.com", dataset="users", column="email")
    assert again != token  # fresh nonce every time


def test_shredding_one_subject_leaves_the_others(keys: SubjectKeys) -> None:
    cipher = FieldCipher(keys)
    tokens = {i: cipher.encrypt_field("user", i, f"user{i}@example.com", dataset="users",
                                      column="email") for i in range(1, 4)}
    assert keys.shred("user", 2) and not keys.shred("user", 2)
    fresh = FieldCipher(SubjectKeys(keys.engine, keys.kek))  # no cache
    with pytest.raises(Shredded):
        fresh.decrypt_field(tokens[2], dataset="users", column="email")
    for i in (1, 3):
        assert fresh.decrypt_field(tokens[i], dataset="users", column="email") == \
            f"user{i}@example.com"
    with pytest.raises(Shredded):  # a shredded subject gets no new key either
        fresh.encrypt_field("user", 2, "again", dataset="users", column="email")


def test_key_store_holds_no_plain_keys_or_ids(keys: SubjectKeys, tmp_path: Path) -> None:
    # letters outside hex, so a random digest cannot spell the name by chance ("ada" did)
    FieldCipher(keys).encrypt_field("user", "zoe.quill@example.com", "x", dataset="d",
                                    column="c")
    with keys.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM lethe_subject_keys")).one()
    assert "zoe.quill" not in json.dumps([str(v) for v in row])
    assert len(bytes(row.wrapped)) == 12 + 32 + 16  # nonce, key, tag: wrapped, not plain


def test_rotation_rewraps_and_retires_the_old_kek(keys: SubjectKeys, tmp_path: Path) -> None:
    cipher = FieldCipher(keys)
    tokens = [cipher.encrypt_field("user", i, f"v{i}", dataset="d", column="c")
              for i in range(1200)]
    old_file = (tmp_path / "kek.json").read_text()
    with keys.engine.connect() as conn:
        old_rows = conn.execute(sa.text("SELECT id, kek_id, wrapped FROM lethe_subject_keys")
                                ).all()
    result = keys.rotate(batch=500)
    assert result["rewrapped"] == 1200
    data = json.loads((tmp_path / "kek.json").read_text())
    assert list(data["keys"]) == [result["kek"]]  # the old KEK is gone
    assert data["keys"] != json.loads(old_file)["keys"]
    fresh = FieldCipher(SubjectKeys(keys.engine, LocalKeyFile(tmp_path / "kek.json")))
    assert [fresh.decrypt_field(t, dataset="d", column="c") for t in tokens[:50]] == \
        [f"v{i}" for i in range(50)]
    # a backup of the key table from before the rotation no longer unwraps
    with pytest.raises(KekError):
        fresh.keys.kek.unwrap(old_rows[0].kek_id, bytes(old_rows[0].wrapped), b"")


def test_rotation_killed_midway_resumes(keys: SubjectKeys, tmp_path: Path) -> None:
    cipher = FieldCipher(keys)
    tokens = [cipher.encrypt_field("user", i, f"v{i}", dataset="d", column="c")
              for i in range(30)]

    def die(_rows: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        keys.rotate(batch=10, progress=die)
    assert len(json.loads((tmp_path / "kek.json").read_text())["keys"]) == 2
    resumed = SubjectKeys(keys.engine, LocalKeyFile(tmp_path / "kek.json"))
    result = resumed.rotate(batch=10)
    assert result["rewrapped"] == 20  # the rest, under the KEK that was already current
    assert len(json.loads((tmp_path / "kek.json").read_text())["keys"]) == 1
    fresh = FieldCipher(SubjectKeys(keys.engine, LocalKeyFile(tmp_path / "kek.json")))
    assert [fresh.decrypt_field(t, dataset="d", column="c") for t in tokens] == \
        [f"v{i}" for i in range(30)]


def test_environment_kek(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(KEK_ENV, "AAAA")
    with pytest.raises(KekError, match="32 bytes"):
        EnvironmentKek()
    import base64
    monkeypatch.setenv(KEK_ENV, base64.b64encode(bytes(range(32))).decode())
    control = ControlStore(f"sqlite:///{tmp_path / 's.db'}")
    cipher = FieldCipher(SubjectKeys(control.engine, EnvironmentKek()))
    token = cipher.encrypt_field("user", 1, "x", dataset="d", column="c")
    assert cipher.decrypt_field(token, dataset="d", column="c") == "x"


# -- proof on copies: the column type, erasure by shred, SQLite copy and pg_dump ------------

def app_tables(cipher: FieldCipher) -> tuple[sa.MetaData, sa.Table, sa.Table]:
    meta = sa.MetaData()
    users = sa.Table("users", meta, sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("email", sa.String(200)),
                     sa.Column("secret_email", EncryptedText(cipher, "users", "email")))
    notes = sa.Table("notes", meta, sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("user_id", sa.Integer, index=True),
                     sa.Column("body", EncryptedText(cipher, "notes", "body")),
                     sa.Column("scan", EncryptedBytes(cipher, "notes", "scan")))
    return meta, users, notes


def write_policy(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "lethe.yaml"
    path.write_text(yaml.safe_dump({
        "lethe": 1, "organization": "Crypto Co", "control": "sqlite:///state.db",
        "stores": {"app": {"url": url}},
        "subjects": {"user": {"dataset": "users", "identities": ["email", "id"]}},
        "datasets": {
            "users": {"store": "app", "table": "users", "class": "pii"},
            "notes": {"store": "app", "table": "notes", "class": "pii",
                      "belongs_to": {"users": "user_id"}, "erasure": "shred"}}}))
    return path


def read_copy(url: str, cipher: FieldCipher) -> dict[int, str | None]:
    _meta, _users, notes = app_tables(cipher)
    engine = sa.create_engine(normalize_url(url))
    with engine.connect() as conn:
        rows = conn.execute(sa.select(notes)).all()
    engine.dispose()
    assert all(r.scan == (None if r.body is None else f"scan {r.user_id}") for r in rows)
    return {r.user_id: r.body for r in rows}


def test_shred_makes_pre_erasure_copies_unreadable(app_url: str, tmp_path: Path,
                                                   request: pytest.FixtureRequest) -> None:
    policy = write_policy(tmp_path, app_url)
    rt = runtime(policy)
    cipher = rt.cipher()
    meta, users, notes = app_tables(cipher)
    engine = sa.create_engine(normalize_url(app_url))
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(users.insert(), [{"id": i, "email": f"u{i}@example.com",
                                       "secret_email": ForSubject("user", i, f"u{i}@x.org")}
                                      for i in (1, 2, 3)])
        conn.execute(notes.insert(), [{"id": i, "user_id": i,
                                       "body": ForSubject("user", i, f"private note {i}"),
                                       "scan": ForSubject("user", i, f"scan {i}")}
                                      for i in (1, 2, 3)])
    # the backup, taken before the erasure
    if app_url.startswith("sqlite"):
        backup_path = tmp_path / "backup.db"
        shutil.copy(app_url[len("sqlite:///"):], backup_path)
        backup_url = f"sqlite:///{backup_path}"
    else:
        backup_url = restore_dump(app_url, tmp_path)
        request.addfinalizer(lambda: drop_database(backup_url))
    assert read_copy(backup_url, cipher) == {i: f"private note {i}" for i in (1, 2, 3)}

    request = open_request(rt, "erasure", "user", ["id=2"])
    outcome = run_request(rt, request.id, tmp_path / "out")
    assert outcome.record.status == "completed"
    assert outcome.as_dict()["datasets"]["notes"]["erased"] == 1
    assert [e.action for e in rt.audit.entries(action="keys.shredded")] == ["keys.shredded"]
    rt.close()

    fresh = runtime(policy).cipher()  # a new process: nothing cached
    assert read_copy(backup_url, fresh) == {1: "private note 1", 2: None,
                                            3: "private note 3"}
    with sa.create_engine(normalize_url(app_url)).connect() as conn:  # the row stays, unreadable
        token = conn.execute(sa.text("SELECT body FROM notes WHERE user_id = 2")).scalar_one()
    with pytest.raises(Shredded):
        fresh.decrypt_field(token, dataset="notes", column="body")


def drop_database(url: str) -> None:
    parsed = sa.engine.make_url(url)
    admin = sa.create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
    admin.dispose()


def restore_dump(url: str, tmp_path: Path) -> str:
    """pg_dump the database and restore it into a sibling database: the 'backup'."""
    source = sa.engine.make_url(normalize_url(url))
    dump = tmp_path / "backup.sql"
    conninfo = f"host={source.host} port={source.port or 5432} user={source.username}"
    subprocess.run(["pg_dump", "--no-owner", "-f", str(dump),
                    f"{conninfo} dbname={source.database}"], check=True)
    target = f"{source.database}_backup"
    admin = sa.create_engine(source.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{target}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{target}"'))
    admin.dispose()
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(dump),
                    f"{conninfo} dbname={target}"], check=True, capture_output=True)
    return source.set(database=target).render_as_string(hide_password=False)



def test_retention_shred_destroys_due_subjects_keys_once(app_url: str, tmp_path: Path) -> None:
    from lethe.engine.execute import execute
    from lethe.engine.plan import build_plan
    from lethe.holds import parse_scope, place_hold
    from tests.fixtures import NOW, build_app
    from tests.fixtures import write_policy as write_app_policy

    build_app(app_url)  # users 1-4 closed 200 days ago
    policy = write_app_policy(tmp_path, app_url, datasets__users__retention=[
        {"keep": "90d", "after": "closed_at", "action": "shred"}],
        datasets__users__soft_delete=None)
    rt = runtime(policy, NOW)
    cipher = rt.cipher()
    tokens = {i: cipher.encrypt_field("user", i, f"secret {i}", dataset="users", column="x")
              for i in range(1, 8)}
    place_hold(rt.control, rt.audit, rt.clock, parse_scope(rt.policy, "user:3", None, None),
               "case")
    plan = build_plan(rt, ["users"])
    shred = next(a for a in plan.actions if a.step.action == "shred")
    assert (shred.rows, shred.held) == (3, 1)
    result = execute(rt, plan)
    assert result.ok, result.as_dict()
    assert next(a for a in build_plan(rt, ["users"]).actions
                if a.step.action == "shred").rows == 0
    rt.close()
    fresh = runtime(policy, NOW).cipher()
    for i, token in tokens.items():
        if i in (1, 2, 4):
            with pytest.raises(Shredded):
                fresh.decrypt_field(token, dataset="users", column="x")
        else:
            assert fresh.decrypt_field(token, dataset="users", column="x") == f"secret {i}"
