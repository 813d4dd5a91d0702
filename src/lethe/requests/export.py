"""The right-of-access package: one zip per request, a JSON and a CSV file per dataset.

Every dataset that was searched gets both files, even with zero rows, so the subject
sees every place lethe looked. `manifest.json` lists each member with its row count,
size and SHA-256, and `verify_access_export` re-hashes the members against it.

A value is encoded once and then written to both formats, so JSON and CSV agree:
date/time values as ISO-8601, Decimal and UUID as strings, bytes as ``base64:...``,
bool as true/false, None as null (an empty CSV field), dict/list as JSON (JSON text in
CSV). Non-finite floats become the strings ``NaN``, ``Infinity`` and ``-Infinity``
because JSON has no literal for them.

The zip is written to a 0600 temporary file beside the target, flushed to disk and
renamed over it, so a crash never leaves a half-written export under the final name.
Error messages name datasets, columns and files, never row values.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import ipaddress
import json
import math
import os
import re
import tempfile
import uuid
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from lethe.errors import LetheError

__all__ = [
    "FORMAT",
    "MANIFEST_NAME",
    "DatasetRows",
    "Manifest",
    "ManifestFile",
    "verify_access_export",
    "write_access_export",
]

FORMAT = "lethe-access-export-v1"
MANIFEST_NAME = "manifest.json"

_DATASET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RESERVED = frozenset({"manifest"})
_CHUNK = 1 << 16
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class DatasetRows:
    """The rows found for the subject in one dataset, values straight from the database."""

    dataset: str
    columns: tuple[str, ...]
    rows: Sequence[Sequence[Any]]


@dataclass(frozen=True)
class ManifestFile:
    """One member of the export: its name, dataset, row count, SHA-256 and size in bytes."""

    name: str
    dataset: str
    rows: int
    sha256: str
    bytes: int

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dataset": self.dataset, "rows": self.rows,
                "sha256": self.sha256, "bytes": self.bytes}


@dataclass(frozen=True)
class Manifest:
    """What was written: `as_dict()` is exactly the content of ``manifest.json``."""

    path: Path
    request_id: int
    organization: str
    subject_kind: str
    generated_at: datetime
    files: tuple[ManifestFile, ...]
    rows: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "request": self.request_id,
            "organization": self.organization,
            "subject_kind": self.subject_kind,
            "generated_at": self.generated_at.isoformat(),
            "files": [entry.as_dict() for entry in self.files],
            "datasets": dict(self.rows),
        }


# --- value encoding -------------------------------------------------------------------


class _Unsupported(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def _iso_duration(value: timedelta) -> str:
    micros = abs(value // timedelta(microseconds=1))
    sign = "-" if value < timedelta(0) else ""
    days, micros = divmod(micros, 86_400_000_000)
    seconds, micros = divmod(micros, 1_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    second_text = f"{seconds}.{micros:06d}".rstrip("0").rstrip(".") if micros else str(seconds)
    return f"{sign}P{days}DT{hours}H{minutes}M{second_text}S"


def _encode(value: Any) -> Any:
    """A database value as a JSON-native value (None, bool, int, float, str, list, dict)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "base64:" + base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, timedelta):
        return _iso_duration(value)
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address
                  | ipaddress.IPv4Network | ipaddress.IPv6Network
                  | ipaddress.IPv4Interface | ipaddress.IPv6Interface):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): _encode(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(item) for item in value]
    raise _Unsupported(type(value).__name__)


def _csv_cell(encoded: Any) -> str:
    """The CSV text of an already encoded value: the JSON text for everything but strings."""
    if encoded is None:
        return ""
    if isinstance(encoded, str):
        return encoded
    if isinstance(encoded, bool):
        return "true" if encoded else "false"
    return json.dumps(encoded, ensure_ascii=False, allow_nan=False)


def _dataset_members(data: DatasetRows) -> tuple[bytes, bytes]:
    """The JSON and CSV bytes of one dataset."""
    columns = data.columns
    if len(set(columns)) != len(columns):
        raise LetheError(f"dataset {data.dataset!r} has duplicate column names", path="export")
    objects: list[dict[str, Any]] = []
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(columns)
    for number, row in enumerate(data.rows, start=1):
        if len(row) != len(columns):
            raise LetheError(
                f"dataset {data.dataset!r} row {number} has {len(row)} values "
                f"for {len(columns)} columns", path="export")
        encoded: list[Any] = []
        for column, value in zip(columns, row, strict=True):
            try:
                encoded.append(_encode(value))
            except _Unsupported as exc:
                raise LetheError(
                    f"dataset {data.dataset!r} column {column!r}: cannot export a value of "
                    f"type {exc.kind}", path="export") from None
        objects.append(dict(zip(columns, encoded, strict=True)))
        writer.writerow([_csv_cell(item) for item in encoded])
    json_bytes = (json.dumps(objects, ensure_ascii=False, indent=2, allow_nan=False)
                  + "\n").encode("utf-8")
    return json_bytes, text.getvalue().encode("utf-8")


# --- writing --------------------------------------------------------------------------


def _check_names(datasets: Sequence[DatasetRows]) -> None:
    seen: dict[str, str] = {}
    for data in datasets:
        name = data.dataset
        if not isinstance(name, str) or not _DATASET_NAME.fullmatch(name):
            raise LetheError(f"invalid dataset name {name!r}: must match "
                             "[A-Za-z_][A-Za-z0-9_]*", path="export")
        folded = name.lower()
        if folded in _RESERVED:
            raise LetheError(f"dataset name {name!r} is reserved in an access export",
                             path="export")
        # Case-insensitive: "Users" and "users" would overwrite each other when unpacked
        # on macOS or Windows.
        if folded in seen:
            raise LetheError(f"dataset {name!r} appears twice (as {seen[folded]!r})",
                             path="export")
        seen[folded] = name


def _zip_time(moment: datetime) -> tuple[int, int, int, int, int, int]:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    stamp = (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)
    return max(stamp, _ZIP_EPOCH)


def _add_member(archive: zipfile.ZipFile, name: str, data: bytes,
                stamp: tuple[int, int, int, int, int, int]) -> None:
    info = zipfile.ZipInfo(name, date_time=stamp)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (0o100600 << 16)  # a regular file, rw for the owner only
    archive.writestr(info, data)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - filesystems that refuse directory fsync
        pass
    finally:
        os.close(fd)


def write_access_export(path: Path, *, request_id: int, organization: str, subject_kind: str,
                        generated_at: datetime, datasets: Sequence[DatasetRows]) -> Manifest:
    """Write the access package for one request and return its manifest.

    The zip lands at `path` atomically with mode 0600; an existing file there is
    replaced only once the new one is complete. The output is deterministic: the same
    inputs give the same bytes (member times are `generated_at` in UTC).
    """
    _check_names(datasets)
    stamp = _zip_time(generated_at)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file 0600 whatever the umask.
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temp = Path(temp_name)
    files: list[ManifestFile] = []
    rows: dict[str, int] = {}
    try:
        with os.fdopen(fd, "wb") as handle:
            with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                for data in datasets:
                    json_bytes, csv_bytes = _dataset_members(data)
                    count = len(data.rows)
                    rows[data.dataset] = count
                    for suffix, content in ((".json", json_bytes), (".csv", csv_bytes)):
                        name = data.dataset + suffix
                        _add_member(archive, name, content, stamp)
                        files.append(ManifestFile(
                            name=name, dataset=data.dataset, rows=count,
                            sha256=hashlib.sha256(content).hexdigest(), bytes=len(content)))
                manifest = Manifest(path=path, request_id=request_id, organization=organization,
                                    subject_kind=subject_kind, generated_at=generated_at,
                                    files=tuple(files), rows=rows)
                manifest_bytes = (json.dumps(manifest.as_dict(), ensure_ascii=False, indent=2)
                                  + "\n").encode("utf-8")
                _add_member(archive, MANIFEST_NAME, manifest_bytes, stamp)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return manifest


# --- verifying ------------------------------------------------------------------------


def _member_digest(archive: zipfile.ZipFile, name: str, limit: int) -> tuple[str, int]:
    """SHA-256 and size of a member, reading at most one chunk past `limit` bytes."""
    digest = hashlib.sha256()
    size = 0
    with archive.open(name) as member:
        while size <= limit and (chunk := member.read(_CHUNK)):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _manifest_entries(manifest: Any) -> list[ManifestFile] | str:
    """The file entries of a parsed manifest, or the reason it is malformed."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return f"manifest.json is not a {FORMAT} manifest"
    raw_files = manifest.get("files")
    raw_rows = manifest.get("datasets")
    if not isinstance(raw_files, list) or not isinstance(raw_rows, dict):
        return "manifest.json lacks its files or datasets"
    entries: list[ManifestFile] = []
    for raw in raw_files:
        try:
            entry = ManifestFile(name=raw["name"], dataset=raw["dataset"], rows=raw["rows"],
                                 sha256=raw["sha256"], bytes=raw["bytes"])
        except (TypeError, KeyError):
            return "manifest.json has a malformed file entry"
        if not (isinstance(entry.name, str) and isinstance(entry.dataset, str)
                and isinstance(entry.sha256, str) and isinstance(entry.bytes, int)
                and isinstance(entry.rows, int)):
            return "manifest.json has a malformed file entry"
        if raw_rows.get(entry.dataset) != entry.rows:
            return f"manifest.json row counts disagree for {entry.name}"
        entries.append(entry)
    names = [entry.name for entry in entries]
    if len(set(names)) != len(names) or MANIFEST_NAME in names:
        return "manifest.json lists a file twice"
    listed = {entry.dataset for entry in entries}
    if set(raw_rows) != listed:
        return "manifest.json datasets do not match its files"
    return entries


def verify_access_export(path: Path) -> tuple[bool, str | None]:
    """Re-hash every file listed in the manifest; (False, reason) on a missing/extra/altered file.

    This proves the package is intact, not who wrote it: the manifest is not signed, so
    someone able to rewrite the zip can rewrite the manifest too.
    """
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        return False, f"{path} does not exist"
    except (zipfile.BadZipFile, OSError) as exc:
        return False, f"{path} is not a readable zip ({exc.__class__.__name__})"
    with archive:
        members = archive.namelist()
        if len(set(members)) != len(members):
            return False, "the zip holds two members with the same name"
        if MANIFEST_NAME not in members:
            return False, "manifest.json is missing"
        try:
            manifest = json.loads(archive.read(MANIFEST_NAME).decode("utf-8"))
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError):
            return False, "manifest.json is unreadable"
        entries = _manifest_entries(manifest)
        if isinstance(entries, str):
            return False, entries
        present = set(members) - {MANIFEST_NAME}
        for entry in entries:
            if entry.name not in present:
                return False, f"{entry.name} is listed in the manifest but missing"
        extra = sorted(present - {entry.name for entry in entries})
        if extra:
            return False, f"{extra[0]} is not listed in the manifest"
        for entry in entries:
            try:
                digest, size = _member_digest(archive, entry.name, entry.bytes)
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError):
                return False, f"{entry.name} is corrupt"
            if digest != entry.sha256 or size != entry.bytes:
                return False, f"{entry.name} was altered (checksum mismatch)"
    return True, None
