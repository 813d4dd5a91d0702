"""The right-of-access package: contents, encoding, checksums, atomicity and permissions."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import stat
import uuid
import zipfile
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from lethe.errors import LetheError
from lethe.requests import export
from lethe.requests.export import (
    FORMAT,
    DatasetRows,
    Manifest,
    verify_access_export,
    write_access_export,
)

GENERATED = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
BERLIN = timezone(timedelta(hours=2))

USERS = DatasetRows(
    dataset="users",
    columns=("id", "name", "bio", "balance", "avatar", "active", "prefs", "joined",
             "birthday", "wakes", "ref", "score", "nickname"),
    rows=[
        (1, "Zoë Ångström 李小龙 🙂", 'says "hi", then\nleaves;\r\nok', Decimal("12.30"),
         b"\x00\xff\x10binary", True, {"lang": "fr", "tags": ["a", "b"], "n": None, "x": 1.5},
         datetime(2024, 1, 2, 3, 4, 5, 600000, tzinfo=BERLIN), date(1990, 12, 31),
         time(6, 30), uuid.UUID("12345678-1234-5678-1234-567812345678"), 0.1, None),
        (2, "", None, Decimal("-0.000001"), b"", False, [1, "two", {"three": 3}],
         datetime(2024, 1, 2, 3, 4, 5), None, time(23, 59, 59, 1, tzinfo=UTC), None,
         float("nan"), ",;\"'"),
    ],
)
ORDERS = DatasetRows(dataset="orders", columns=("id", "user_id", "total"),
                     rows=[(10, 1, Decimal("9.99"))])
EMPTY = DatasetRows(dataset="newsletter_subscribers", columns=("email", "since"), rows=[])


def write(path: Path, datasets: list[DatasetRows] | None = None) -> Manifest:
    return write_access_export(
        path, request_id=42, organization="Acme GmbH", subject_kind="customer",
        generated_at=GENERATED, datasets=datasets if datasets is not None else [USERS, ORDERS,
                                                                                EMPTY])


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def read_json(path: Path, name: str) -> Any:
    return json.loads(members(path)[name].decode("utf-8"))


def read_csv(path: Path, name: str) -> list[list[str]]:
    text = members(path)[name].decode("utf-8")
    return list(csv.reader(io.StringIO(text, newline="")))


def as_csv_text(value: Any) -> str:
    """What a JSON value must look like in the CSV."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False)


def test_round_trip_of_awkward_values(tmp_path: Path) -> None:
    path = tmp_path / "out" / "deeper" / "request-42.zip"
    manifest = write(path)
    assert path.is_file()
    assert set(members(path)) == {
        "users.json", "users.csv", "orders.json", "orders.csv",
        "newsletter_subscribers.json", "newsletter_subscribers.csv", "manifest.json"}
    with zipfile.ZipFile(path) as archive:
        assert all(info.compress_type == zipfile.ZIP_DEFLATED for info in archive.infolist())

    first, second = read_json(path, "users.json")
    assert first == {
        "id": 1,
        "name": "Zoë Ångström 李小龙 🙂",
        "bio": 'says "hi", then\nleaves;\r\nok',
        "balance": "12.30",
        "avatar": "base64:AP8QYmluYXJ5",
        "active": True,
        "prefs": {"lang": "fr", "tags": ["a", "b"], "n": None, "x": 1.5},
        "joined": "2024-01-02T03:04:05.600000+02:00",
        "birthday": "1990-12-31",
        "wakes": "06:30:00",
        "ref": "12345678-1234-5678-1234-567812345678",
        "score": 0.1,
        "nickname": None,
    }
    assert second["bio"] is None and second["name"] == ""
    assert second["avatar"] == "base64:"
    assert second["active"] is False
    assert second["prefs"] == [1, "two", {"three": 3}]
    assert second["joined"] == "2024-01-02T03:04:05"
    assert second["wakes"] == "23:59:59.000001+00:00"
    assert second["score"] == "NaN"
    assert second["nickname"] == ",;\"'"

    raw_json = members(path)["users.json"].decode("utf-8")
    assert "Zoë" in raw_json  # ensure_ascii=False
    assert raw_json.startswith("[\n  {\n    \"id\": 1,")  # indent 2

    header, row1, row2 = read_csv(path, "users.csv")
    assert header == list(USERS.columns)
    assert row1[1] == "Zoë Ångström 李小龙 🙂"
    assert row1[2] == 'says "hi", then\nleaves;\r\nok'
    assert row1[3] == "12.30"
    assert row1[5] == "true" and row2[5] == "false"
    assert json.loads(row1[6]) == first["prefs"]
    assert row1[12] == "" and row2[2] == ""

    assert read_json(path, "orders.json") == [{"id": 10, "user_id": 1, "total": "9.99"}]
    assert manifest.rows == {"users": 2, "orders": 1, "newsletter_subscribers": 0}


def test_json_and_csv_agree_row_by_row(tmp_path: Path) -> None:
    path = tmp_path / "export.zip"
    write(path)
    for data in (USERS, ORDERS, EMPTY):
        objects = read_json(path, f"{data.dataset}.json")
        header, *rows = read_csv(path, f"{data.dataset}.csv")
        assert header == list(data.columns)
        assert len(objects) == len(rows) == len(data.rows)
        for obj, row in zip(objects, rows, strict=True):
            assert list(obj) == header
            for column, cell in zip(header, row, strict=True):
                value = obj[column]
                if isinstance(value, dict | list):
                    assert json.loads(cell) == value
                else:
                    assert cell == as_csv_text(value), column


def test_zero_row_dataset_still_gets_both_files(tmp_path: Path) -> None:
    path = tmp_path / "export.zip"
    manifest = write(path)
    files = members(path)
    assert json.loads(files["newsletter_subscribers.json"]) == []
    assert files["newsletter_subscribers.csv"] == b"email,since\r\n"
    assert manifest.rows["newsletter_subscribers"] == 0
    listed = {entry.name: entry.rows for entry in manifest.files}
    assert listed["newsletter_subscribers.json"] == 0
    assert listed["newsletter_subscribers.csv"] == 0


def test_no_datasets_gives_a_manifest_only_package(tmp_path: Path) -> None:
    path = tmp_path / "export.zip"
    manifest = write(path, [])
    assert set(members(path)) == {"manifest.json"}
    assert manifest.files == () and manifest.rows == {}
    assert verify_access_export(path) == (True, None)


def test_manifest_hashes_match_the_members(tmp_path: Path) -> None:
    path = tmp_path / "export.zip"
    manifest = write(path)
    files = members(path)
    on_disk = json.loads(files["manifest.json"])
    assert on_disk == manifest.as_dict()
    assert on_disk["format"] == FORMAT
    assert on_disk["request"] == 42
    assert on_disk["organization"] == "Acme GmbH"
    assert on_disk["subject_kind"] == "customer"
    assert on_disk["generated_at"] == "2024-05-06T07:08:09+00:00"
    assert on_disk["datasets"] == {"users": 2, "orders": 1, "newsletter_subscribers": 0}
    assert [entry["name"] for entry in on_disk["files"]] == [
        "users.json", "users.csv", "orders.json", "orders.csv",
        "newsletter_subscribers.json", "newsletter_subscribers.csv"]
    for entry in on_disk["files"]:
        content = files[entry["name"]]
        assert entry["sha256"] == hashlib.sha256(content).hexdigest()
        assert entry["bytes"] == len(content)
        assert entry["rows"] == on_disk["datasets"][entry["dataset"]]
    assert manifest.path == path
    assert verify_access_export(path) == (True, None)


def test_output_is_deterministic(tmp_path: Path) -> None:
    write(tmp_path / "a.zip")
    write(tmp_path / "b.zip")
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()


def rewrite(path: Path, change: dict[str, bytes | None]) -> None:
    """Rebuild the zip with some members replaced (bytes), removed (None) or added."""
    files = members(path)
    for name, content in change.items():
        if content is None:
            files.pop(name)
        else:
            files[name] = content
    path.unlink()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)


def test_tampering_with_a_member_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "export.zip"
    write(path)
    original = members(path)["users.csv"]
    rewrite(path, {"users.csv": original.replace(b"12.30", b"99.99")})
    ok, reason = verify_access_export(path)
    assert not ok
    assert reason is not None and "users.csv" in reason and "altered" in reason
    assert "99.99" not in reason


def test_missing_and_extra_members_are_detected(tmp_path: Path) -> None:
    path = tmp_path / "missing.zip"
    write(path)
    rewrite(path, {"orders.json": None})
    ok, reason = verify_access_export(path)
    assert not ok and reason is not None and "orders.json" in reason and "missing" in reason

    path = tmp_path / "extra.zip"
    write(path)
    rewrite(path, {"secret.txt": b"smuggled"})
    ok, reason = verify_access_export(path)
    assert not ok and reason is not None and "secret.txt" in reason


def test_a_damaged_or_absent_package_fails_verification(tmp_path: Path) -> None:
    assert verify_access_export(tmp_path / "nope.zip")[0] is False
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip at all")
    assert verify_access_export(junk)[0] is False

    path = tmp_path / "export.zip"
    write(path)
    rewrite(path, {"manifest.json": None})
    assert verify_access_export(path) == (False, "manifest.json is missing")

    path = tmp_path / "garbled.zip"
    write(path)
    rewrite(path, {"manifest.json": b"{not json"})
    assert verify_access_export(path) == (False, "manifest.json is unreadable")

    path = tmp_path / "flipped.zip"
    write(path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("users.json")
    # Flip a byte inside the compressed data of users.json (after its 30-byte local header).
    data[info.header_offset + 30 + len(info.filename) + 5] ^= 0xFF
    path.write_bytes(bytes(data))
    ok, reason = verify_access_export(path)
    assert not ok and reason is not None and "users.json" in reason


@pytest.mark.parametrize("name", [
    "../escape", "a/b", "a\\b", "", "1users", "users.json", "users\n", "naïve", "has space",
    "manifest", "MANIFEST",
])
def test_bad_dataset_names_are_rejected(tmp_path: Path, name: str) -> None:
    path = tmp_path / "export.zip"
    bad = DatasetRows(dataset=name, columns=("id",), rows=[(1,)])
    with pytest.raises(LetheError) as caught:
        write(path, [ORDERS, bad])
    assert caught.value.path == "export"
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_duplicate_datasets_are_rejected_even_across_case(tmp_path: Path) -> None:
    twin = DatasetRows(dataset="Orders", columns=("id",), rows=[])
    with pytest.raises(LetheError, match="twice"):
        write(tmp_path / "export.zip", [ORDERS, twin])


def test_malformed_rows_and_unknown_types_are_rejected_without_values(tmp_path: Path) -> None:
    short = DatasetRows(dataset="users", columns=("id", "email"), rows=[(1,)])
    with pytest.raises(LetheError, match="row 1 has 1 values for 2 columns"):
        write(tmp_path / "a.zip", [short])
    doubled = DatasetRows(dataset="users", columns=("id", "id"), rows=[])
    with pytest.raises(LetheError, match="duplicate column"):
        write(tmp_path / "b.zip", [doubled])
    odd = DatasetRows(dataset="users", columns=("id", "blob"), rows=[(1, {"secret-value"})])
    with pytest.raises(LetheError) as caught:
        write(tmp_path / "c.zip", [odd])
    assert "blob" in str(caught.value) and "secret-value" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_intervals_are_iso_durations(tmp_path: Path) -> None:
    path = tmp_path / "export.zip"
    data = DatasetRows(dataset="sessions", columns=("length",),
                       rows=[(timedelta(days=1, hours=2, minutes=3, seconds=4.5),),
                             (timedelta(seconds=-90),)])
    write(path, [data])
    assert read_json(path, "sessions.json") == [{"length": "P1DT2H3M4.5S"},
                                                {"length": "-P0DT0H1M30S"}]


def test_the_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "export.zip"
    old = os.umask(0o022)
    try:
        write(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_rewriting_replaces_the_old_package(tmp_path: Path) -> None:
    path = tmp_path / "export.zip"
    write(path, [ORDERS])
    write(path)
    assert "users.json" in members(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["export.zip"]


class Boom(RuntimeError):
    pass


def test_an_interrupted_write_leaves_nothing_at_the_final_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    real = zipfile.ZipFile.writestr

    def failing(self: zipfile.ZipFile, *args: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise Boom("disk on fire")
        real(self, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", failing)
    path = tmp_path / "export.zip"
    with pytest.raises(Boom):
        write(path)
    assert calls == 3
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone too


def test_an_interrupted_rewrite_keeps_the_previous_package(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "export.zip"
    write(path, [ORDERS])
    before = path.read_bytes()

    def failing(*args: Any, **kwargs: Any) -> None:
        raise Boom("power cut")

    monkeypatch.setattr(export.os, "replace", failing)
    with pytest.raises(Boom):
        write(path)
    assert path.read_bytes() == before
    assert verify_access_export(path) == (True, None)
    assert [p.name for p in tmp_path.iterdir()] == ["export.zip"]
