"""Object storage: a local directory (`file://`) or an S3-compatible bucket (`s3://`).

Both are seen the same way: keys under a root, each with a last-modified time, a size
and string metadata, listed a page at a time in key order and deleted in batches (S3
`DeleteObjects`, 1,000 keys a request). The S3 URL carries the bucket and an optional
root prefix, plus boto3 client settings as query parameters:
`s3://bucket/prefix?endpoint_url=http://127.0.0.1:9000&region=eu-west-1`.
Credentials come from boto3's usual chain (environment, profile, instance role).

On a local directory, metadata and tags live in a sidecar file next to the object
(`NAME.lethe-meta.json`: `{"metadata": {...}, "tags": {...}}`), which listings skip.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlencode, urlsplit

from lethe.errors import StoreError
from lethe.stores.base import Capabilities

PAGE = 1_000  # keys per listing page and per DeleteObjects request
META_SUFFIX = ".lethe-meta.json"


@dataclass(frozen=True)
class ObjectInfo:
    key: str  # relative to the store's root
    last_modified: datetime
    size: int
    metadata: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)


class ObjectStore(Protocol):
    name: str

    def pages(self, prefix: str, *, metadata: bool = False,
              tags: bool = False) -> Iterator[list[ObjectInfo]]:
        """Objects under `prefix`, in key order, a page at a time; with `metadata` or
        `tags`, those too (one more request per object each, on S3)."""
        ...

    def put(self, key: str, data: bytes, metadata: Mapping[str, str] | None = None,
            tags: Mapping[str, str] | None = None) -> None: ...

    def get(self, key: str) -> bytes: ...

    def delete(self, keys: Sequence[str]) -> int:
        """Delete these keys; returns how many were deleted (absent keys count as done)."""
        ...

    def close(self) -> None: ...


def open_object_store(name: str, url: str, base: Path | None = None,
                      write_args: Mapping[str, str] | None = None) -> ObjectStore:
    """`write_args`: S3 PutObject parameters every write carries (storage class,
    server-side encryption); the policy allows them on S3 stores only."""
    if url.startswith("file://"):
        return LocalObjects(name, url, base)
    return S3Objects(name, url, write_args)


class LocalObjects:
    """A directory tree; keys are its relative paths with `/`."""

    kind = "objects"
    capabilities = Capabilities()
    # files are unlinked one at a time: a failure part way leaves part of a page gone
    transactional_batches = False
    # the directory walk is sorted, so pages come in key order
    ordered_keys = True
    # metadata and tags live in a sidecar file next to each object
    object_metadata = True
    # a file has one version: once unlinked (with its sidecar) nothing of it is left
    versioned_objects = False
    # a directory has no expiry rules of its own
    lifecycle_rules = False

    def __init__(self, name: str, url: str, base: Path | None = None) -> None:
        self.name = name
        path = Path(url[len("file://"):])
        if not path.is_absolute():
            path = (base or Path.cwd()) / path
        self.root = path

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise StoreError(f"{what}: {exc.strerror or type(exc).__name__}",
                             path=f"stores.{self.name}") from None

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise StoreError("object key leaves the store's directory",
                             path=f"stores.{self.name}")
        return path

    def pages(self, prefix: str, *, metadata: bool = False,
              tags: bool = False) -> Iterator[list[ObjectInfo]]:
        if not self.root.is_dir():
            return
        with self._errors("listing objects"):
            keys = sorted(
                Path(dirpath, f).relative_to(self.root).as_posix()
                for dirpath, _dirs, files in os.walk(self.root) for f in files
                if not f.endswith(META_SUFFIX))
        page: list[ObjectInfo] = []
        for key in keys:
            if not key.startswith(prefix):
                continue
            path = self.root / key
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue  # removed since the walk
            side = self._sidecar(path) if metadata or tags else {}
            page.append(ObjectInfo(key, datetime.fromtimestamp(stat.st_mtime, UTC),
                                   stat.st_size, side.get("metadata", {}),
                                   side.get("tags", {})))
            if len(page) == PAGE:
                yield page
                page = []
        if page:
            yield page

    def _sidecar(self, path: Path) -> dict[str, dict[str, str]]:
        sidecar = path.with_name(path.name + META_SUFFIX)
        try:
            data = json.loads(sidecar.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            raise StoreError("unreadable object metadata", path=f"stores.{self.name}") from None
        if not isinstance(data, dict):
            return {}
        # metadata names lowercased as S3 does, so one policy reads both stores alike
        return {part: {(str(k).lower() if part == "metadata" else str(k)): str(v)
                       for k, v in data[part].items()}
                for part in ("metadata", "tags") if isinstance(data.get(part), dict)}

    def put(self, key: str, data: bytes, metadata: Mapping[str, str] | None = None,
            tags: Mapping[str, str] | None = None) -> None:
        path = self._path(key)
        with self._errors("writing an object"):
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.tmp")
            temporary.write_bytes(data)
            sidecar = path.with_name(path.name + META_SUFFIX)
            if metadata or tags:
                sidecar.write_text(json.dumps({"metadata": dict(metadata or {}),
                                               "tags": dict(tags or {})}), encoding="utf-8")
            else:
                sidecar.unlink(missing_ok=True)
            os.replace(temporary, path)

    def get(self, key: str) -> bytes:
        with self._errors("reading an object"):
            return self._path(key).read_bytes()

    def delete(self, keys: Sequence[str]) -> int:
        deleted = 0
        with self._errors("deleting objects"):
            for key in keys:
                path = self._path(key)
                path.unlink(missing_ok=True)
                path.with_name(path.name + META_SUFFIX).unlink(missing_ok=True)
                deleted += 1
        return deleted

    def close(self) -> None:
        pass


class S3Objects:
    """A bucket (and a root prefix in it) on S3 or an S3-compatible server."""

    kind = "objects"
    capabilities = Capabilities()
    # DeleteObjects deletes key by key and reports per-key errors: no all-or-nothing
    transactional_batches = False
    # ListObjectsV2 returns keys in ascending (UTF-8 binary) order
    ordered_keys = True
    # user metadata (HEAD) and tags (GetObjectTagging) come with a listing on request
    object_metadata = True
    # in a bucket that has had versioning on, `delete` removes every version and
    # delete marker of a key, so expired data does not live on as a noncurrent version
    versioned_objects = True
    # the bucket's lifecycle configuration is read and set (`lifecycle`, `set_lifecycle`)
    lifecycle_rules = True

    def __init__(self, name: str, url: str, write_args: Mapping[str, str] | None = None
                 ) -> None:
        self.name = name
        self.write_args = dict(write_args or {})
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise StoreError("expected s3://bucket[/prefix][?endpoint_url=…]",
                             path=f"stores.{name}.url")
        self.bucket = parts.netloc
        root = parts.path.lstrip("/")
        self.root = root if not root or root.endswith("/") else root + "/"
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - {"endpoint_url", "region"}
        if unknown:
            raise StoreError(f"unknown S3 URL parameter {sorted(unknown)[0]!r} (endpoint_url, "
                             "region)", path=f"stores.{name}.url")
        self._versioning: bool | None = None
        import boto3  # only when an S3 store is configured: it costs ~0.3 s to import
        from botocore.config import Config

        self.client: Any = boto3.client(
            "s3", endpoint_url=query.get("endpoint_url"), region_name=query.get("region"),
            config=Config(retries={"max_attempts": 5, "mode": "standard"}))

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        import botocore.exceptions

        try:
            yield
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            raise StoreError(f"{what}: {code}", path=f"stores.{self.name}") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise StoreError(f"{what}: {type(exc).__name__}", path=f"stores.{self.name}") \
                from None

    def pages(self, prefix: str, *, metadata: bool = False,
              tags: bool = False) -> Iterator[list[ObjectInfo]]:
        paginator = self.client.get_paginator("list_objects_v2")
        with self._errors("listing objects"):
            for response in paginator.paginate(Bucket=self.bucket, Prefix=self.root + prefix,
                                               PaginationConfig={"PageSize": PAGE}):
                page = []
                for item in response.get("Contents", []):
                    key = item["Key"][len(self.root):]
                    meta = self._metadata(item["Key"]) if metadata else {}
                    tagging = self._tags(item["Key"]) if tags else {}
                    page.append(ObjectInfo(key, item["LastModified"].astimezone(UTC),
                                           int(item["Size"]), meta, tagging))
                if page:
                    yield page

    def _metadata(self, full_key: str) -> dict[str, str]:
        import botocore.exceptions

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=full_key)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                return {}  # deleted since the listing
            raise
        return {str(k).lower(): str(v) for k, v in head.get("Metadata", {}).items()}

    def _tags(self, full_key: str) -> dict[str, str]:
        import botocore.exceptions

        try:
            response = self.client.get_object_tagging(Bucket=self.bucket, Key=full_key)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                return {}
            raise
        return {str(t["Key"]): str(t["Value"]) for t in response.get("TagSet", [])}

    def put(self, key: str, data: bytes, metadata: Mapping[str, str] | None = None,
            tags: Mapping[str, str] | None = None) -> None:
        extra = {"Tagging": urlencode(dict(tags))} if tags else {}
        with self._errors("writing an object"):
            self.client.put_object(Bucket=self.bucket, Key=self.root + key, Body=data,
                                   Metadata=dict(metadata or {}), **extra, **self.write_args)

    def get(self, key: str) -> bytes:
        with self._errors("reading an object"):
            body: bytes = self.client.get_object(Bucket=self.bucket,
                                                 Key=self.root + key)["Body"].read()
            return body

    def _versioned(self) -> bool:
        """Has the bucket ever had versioning on? Then a plain delete only adds a delete
        marker and the data lives on in older versions. Versioning once on never goes
        off again (it can only be suspended), so a yes is kept; a no is asked again."""
        if not self._versioning:
            with self._errors("reading the bucket's versioning"):
                status = self.client.get_bucket_versioning(Bucket=self.bucket).get("Status")
            self._versioning = status in ("Enabled", "Suspended")
        return self._versioning

    def _versions(self, full_key: str) -> list[dict[str, str]]:
        """Every version and delete marker of one key."""
        found: list[dict[str, str]] = []
        paginator = self.client.get_paginator("list_object_versions")
        with self._errors("listing object versions"):
            for response in paginator.paginate(Bucket=self.bucket, Prefix=full_key):
                for entry in (*response.get("Versions", []), *response.get("DeleteMarkers", [])):
                    if entry["Key"] == full_key:
                        found.append({"Key": full_key, "VersionId": entry["VersionId"]})
        return found

    def delete(self, keys: Sequence[str]) -> int:
        """Delete these keys; in a versioned bucket every version of them, so erased or
        expired data does not live on as a noncurrent version."""
        versioned = self._versioned()
        self._delete_objects([v for key in keys for v in self._versions(self.root + key)]
                             if versioned else [{"Key": self.root + key} for key in keys])
        if not versioned and self._versioned():
            # switched on while these were deleted: a plain delete may have left a marker
            # over the data, so the versions go too
            self._delete_objects([v for key in keys for v in self._versions(self.root + key)])
        return len(keys)

    def _delete_objects(self, targets: Sequence[dict[str, str]]) -> None:
        for start in range(0, len(targets), PAGE):
            batch = targets[start:start + PAGE]
            with self._errors("deleting objects"):
                response = self.client.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": batch, "Quiet": True})
            errors = response.get("Errors", [])
            if errors:
                raise StoreError(f"deleting objects: {len(errors)} of {len(batch)} failed "
                                 f"({errors[0].get('Code', 'error')})",
                                 path=f"stores.{self.name}")

    def lifecycle(self) -> list[dict[str, Any]]:
        """The bucket's lifecycle rules (none: an empty list)."""
        import botocore.exceptions

        try:
            response = self.client.get_bucket_lifecycle_configuration(Bucket=self.bucket)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchLifecycleConfiguration":
                return []
            raise StoreError(f"reading the bucket lifecycle: "
                             f"{exc.response.get('Error', {}).get('Code', 'error')}",
                             path=f"stores.{self.name}") from None
        rules: list[dict[str, Any]] = response.get("Rules", [])
        return rules

    def transition(self, key: str, storage_class: str) -> None:
        """Move an object to a storage class in place (CopyObject onto itself, its
        encryption kept), checking S3 copied the same bytes (its size, and its ETag — an
        MD5 of a single-part object's bytes — but under SSE-KMS) into that class."""
        full = self.root + key
        encryption = {k: v for k, v in self.write_args.items()
                      if k in ("ServerSideEncryption", "SSEKMSKeyId")}
        with self._errors("moving an object to its storage class"):
            before = self.client.head_object(Bucket=self.bucket, Key=full)
            self.client.copy_object(
                Bucket=self.bucket, Key=full, CopySource={"Bucket": self.bucket, "Key": full},
                StorageClass=storage_class, MetadataDirective="COPY", **encryption)
            after = self.client.head_object(Bucket=self.bucket, Key=full)
        # an SSE-KMS object's ETag is no MD5 of its bytes and differs between copies
        fields = ("ContentLength",) if encryption.get("ServerSideEncryption") == "aws:kms" \
            else ("ContentLength", "ETag")
        if any(before.get(f) != after.get(f) for f in fields) \
                or after.get("StorageClass") != storage_class:
            raise StoreError("an object changed, or kept its class, when moved to its "
                             "storage class", path=f"stores.{self.name}")

    def thawed(self, key: str) -> tuple[str, str]:
        """(the object's storage class, whether it can be read: `readable`, `restoring`
        — a restore asked for and not done — or `frozen`)."""
        with self._errors("reading an object's storage class"):
            head = self.client.head_object(Bucket=self.bucket, Key=self.root + key)
        storage_class = str(head.get("StorageClass") or "STANDARD")
        if storage_class not in ("GLACIER", "DEEP_ARCHIVE"):
            return storage_class, "readable"
        restore = str(head.get("Restore") or "")
        if not restore:
            return storage_class, "frozen"
        return storage_class, "restoring" if 'ongoing-request="true"' in restore \
            else "readable"

    def request_restore(self, key: str, tier: str, days: int) -> None:
        """Ask S3 to make a readable copy of a GLACIER or DEEP_ARCHIVE object."""
        with self._errors("asking for an object's restore"):
            self.client.restore_object(Bucket=self.bucket, Key=self.root + key, RestoreRequest={
                "Days": days, "GlacierJobParameters": {"Tier": tier}})

    def replica_buckets(self) -> list[str]:
        """The buckets the bucket's enabled replication rules copy objects to (S3 Cross-
        and Same-Region Replication): each holds a copy of what lethe writes here."""
        import botocore.exceptions

        try:
            response = self.client.get_bucket_replication(Bucket=self.bucket)
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            if code == "ReplicationConfigurationNotFoundError":
                return []
            raise StoreError(f"reading the bucket replication: {code}",
                             path=f"stores.{self.name}") from None
        rules = response.get("ReplicationConfiguration", {}).get("Rules", [])
        return sorted({str(rule["Destination"]["Bucket"]).rpartition(":")[2] for rule in rules
                       if rule.get("Status") == "Enabled"
                       and rule.get("Destination", {}).get("Bucket")})

    def set_lifecycle(self, rules: list[dict[str, Any]]) -> None:
        with self._errors("setting the bucket lifecycle"):
            if not rules:  # S3 refuses an empty configuration: remove it instead
                self.client.delete_bucket_lifecycle(Bucket=self.bucket)
                return
            self.client.put_bucket_lifecycle_configuration(
                Bucket=self.bucket, LifecycleConfiguration={"Rules": rules})

    def close(self) -> None:
        self.client.close()
