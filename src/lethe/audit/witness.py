"""Witnesses: signed checkpoints kept outside the control store.

A chain stored beside its own checkpoints cannot prove its length: whoever can delete
the log's tail can delete the checkpoint rows that cover it, and the rest verifies.
So every checkpoint lethe signs is also handed to a witness the control store's users
cannot rewrite, and `audit verify --witness` checks the log against the latest one it
holds: an entry at or below that sequence number deleted, edited or reordered, or the
log cut short of it, is caught even when the checkpoint rows went too.

* `file:///path` (or a plain path): one JSON line per checkpoint, appended and synced.
  Keep it somewhere the control store's writers cannot write (another host, an
  append-only mount).
* `s3://bucket/prefix?endpoint_url=…&region=…`: one object per checkpoint, written
  with Object Lock in compliance mode until `audit.retention` has passed: nobody, the
  bucket's owner included, can delete or overwrite it before then. The bucket must
  have Object Lock enabled.
* `stdout`: one JSON line per checkpoint on standard output, for a pipeline to keep;
  verify against what it kept with `--witness file://…`.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from lethe.audit.chain import Checkpoint
from lethe.errors import LetheError, StoreError

FIELDS = ("seq", "head_hash", "at", "key_id", "signature")


class Witness(Protocol):
    readable: bool  # `latest` can be asked (not so for stdout)

    def publish(self, mark: Checkpoint) -> None:
        """Keep this checkpoint; raise when it could not be kept."""

    def latest(self) -> Checkpoint | None:
        """The checkpoint with the highest sequence number kept so far."""


def _line(mark: Checkpoint) -> str:
    return json.dumps(mark.as_dict(), sort_keys=True, separators=(",", ":"))


def _parse(text: str, where: str) -> Checkpoint:
    try:
        data = json.loads(text)
        return Checkpoint(int(data["seq"]), str(data["head_hash"]), str(data["at"]),
                          str(data["key_id"]), str(data["signature"]))
    except (ValueError, KeyError, TypeError):
        raise StoreError("not a checkpoint", path=where) from None


class FileWitness:
    readable = True

    def __init__(self, path: Path) -> None:
        self.path = path

    def publish(self, mark: Checkpoint) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(_line(mark) + "\n")
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            raise StoreError(f"cannot write the audit witness: {exc.strerror}",
                             path=str(self.path)) from None

    def latest(self) -> Checkpoint | None:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise StoreError(f"cannot read the audit witness: {type(exc).__name__}",
                             path=str(self.path)) from None
        marks = [_parse(line, f"{self.path}:{n}") for n, line in enumerate(lines, 1)
                 if line.strip()]
        return max(marks, key=lambda m: m.seq, default=None)


class StdoutWitness:
    readable = False

    def publish(self, mark: Checkpoint) -> None:
        print(_line(mark), file=sys.stdout, flush=True)

    def latest(self) -> Checkpoint | None:
        raise LetheError("a stdout witness cannot be read back: verify against what the "
                         "pipeline kept (--witness file://…)", path="--witness")


class S3Witness:
    readable = True

    def __init__(self, url: str, retain_until: Any) -> None:
        import boto3
        from botocore.config import Config

        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.bucket = parts.netloc
        root = parts.path.lstrip("/")
        self.prefix = root if not root or root.endswith("/") else root + "/"
        self.retain_until = retain_until  # () -> datetime | None
        self.client: Any = boto3.client(
            "s3", endpoint_url=query.get("endpoint_url"), region_name=query.get("region"),
            config=Config(retries={"max_attempts": 5, "mode": "standard"}))

    def _key(self, seq: int) -> str:
        return f"{self.prefix}checkpoint-{seq:016d}.json"  # key order is seq order

    def publish(self, mark: Checkpoint) -> None:
        import botocore.exceptions

        until: datetime | None = self.retain_until()
        lock: dict[str, Any] = {} if until is None else {
            "ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": until}
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(mark.seq),
                                   Body=_line(mark).encode(), ContentType="application/json",
                                   **lock)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise StoreError(f"cannot write the audit witness: {_code(exc)}",
                             path=f"s3://{self.bucket}/{self.prefix}") from None

    def latest(self) -> Checkpoint | None:
        import botocore.exceptions

        last = None
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{self.prefix}checkpoint-")
            for page in pages:
                for item in page.get("Contents", []):
                    last = max(last or item["Key"], item["Key"])
            if last is None:
                return None
            body = self.client.get_object(Bucket=self.bucket, Key=last)["Body"].read()
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise StoreError(f"cannot read the audit witness: {_code(exc)}",
                             path=f"s3://{self.bucket}/{self.prefix}") from None
        return _parse(body.decode("utf-8", "replace"), f"s3://{self.bucket}/{last}")


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", type(exc).__name__))
    return type(exc).__name__


def open_witness(url: str, *, retain_until: Any = lambda: None,
                 base: Path | None = None) -> Witness:
    """The witness a URL names (see the module doc); `retain_until()` dates an S3
    object's compliance lock."""
    if url in ("stdout", "-"):
        return StdoutWitness()
    if url.startswith("s3://"):
        if not urlsplit(url).netloc:
            raise LetheError("expected s3://bucket[/prefix][?endpoint_url=…]", path="witness")
        return S3Witness(url, retain_until)
    if url.startswith("file://"):
        url = url[len("file://"):]
    if not url:
        raise LetheError("expected file:///path, s3://bucket/prefix or stdout", path="witness")
    path = Path(url)
    return FileWitness(path if path.is_absolute() or base is None else base / path)
