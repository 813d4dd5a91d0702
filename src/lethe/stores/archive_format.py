"""The archive format: rows as gzipped JSON lines, one chunk per batch or partition.

What a chunk holds and how it reads back, apart from where chunks go and when rows may
leave (engine.archive): a chunk is `CHUNK.jsonl.gz` (one JSON object per row, keys
sorted, values in a JSON form `restore` turns back by the column's type), its
`CHUNK.manifest.json` names the format, the row count, the SHA-256 and the keys.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

from lethe.errors import StoreError

FORMAT = "lethe-archive-v1"
ROOT = "lethe-archive"


def plain_value(value: Any) -> Any:
    """A JSON form of a column value; `restore` turns it back by the column's type."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


def row_line(columns: Sequence[str], row: Sequence[Any]) -> str:
    """A row as a chunk holds it: one JSON object, keys sorted."""
    return json.dumps(dict(zip(columns, map(plain_value, row), strict=True)), sort_keys=True,
                      ensure_ascii=False, default=str)


def encode_rows(columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> bytes:
    lines = (row_line(columns, row) for row in rows)
    # mtime=0: the same rows always make the same bytes (and the same checksum)
    return gzip.compress(("\n".join(lines) + "\n").encode("utf-8"), mtime=0)


def chunk_lines(data: bytes) -> list[str]:
    """A chunk's lines. Lines end at `\\n` only: a value may hold U+2028 and the like,
    which `splitlines` would also split at."""
    try:
        return [line for line in gzip.decompress(data).decode("utf-8").split("\n") if line]
    except (OSError, EOFError, UnicodeDecodeError):
        raise StoreError("an archive chunk is not gzipped JSON lines",
                         path="archive") from None


def comparable_line(line: str) -> str:
    """A chunk line with its times in UTC: the same instant reads back with another
    offset under another session time zone."""
    row = json.loads(line)
    return json.dumps({k: _utc_text(v) for k, v in row.items()}, sort_keys=True,
                      ensure_ascii=False)


def _utc_text(value: Any) -> Any:
    if not isinstance(value, str) or len(value) < 19 or value[10] != "T":
        return value
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    return moment.astimezone(UTC).isoformat() if moment.tzinfo is not None else value


def decode_rows(data: bytes) -> list[dict[str, Any]]:
    """The rows of a chunk."""
    try:
        return [json.loads(line) for line in chunk_lines(data)]
    except ValueError:
        raise StoreError("an archive chunk is not gzipped JSON lines",
                         path="archive") from None
