"""The store conformance suite (lethe.testing) on the real servers: SQLite (a file),
PostgreSQL (a throwaway database), S3 (moto's server, a fresh bucket) and Redis (a key
prefix of the test's own). Under CI=true a server that is not there fails the run
(tests/conftest.py's fixtures)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from lethe.testing import (
    CacheBackend,
    CacheStoreSuite,
    ObjectBackend,
    ObjectStoreSuite,
    RowBackend,
    RowStoreSuite,
)


class S3Versioning:
    """Versioning of the bucket behind an `s3://bucket/root?endpoint_url=…` store URL."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.bucket, self.root = parts.netloc, parts.path.strip("/") + "/"
        endpoint = parse_qs(parts.query)["endpoint_url"][0]
        self.client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")

    def enable(self) -> None:
        self.client.put_bucket_versioning(
            Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})

    def versions(self, key: str) -> int:
        full = self.root + key
        listing = self.client.list_object_versions(Bucket=self.bucket, Prefix=full)
        return sum(entry["Key"] == full for part in ("Versions", "DeleteMarkers")
                   for entry in listing.get(part, []))


@pytest.fixture(params=["sqlite", "postgresql"])
def row_backend(request: pytest.FixtureRequest, tmp_path: Path) -> RowBackend:
    if request.param == "sqlite":  # an application's database exists before lethe opens it
        sqlite3.connect(tmp_path / "rows.db").close()
        return RowBackend(f"sqlite:///{tmp_path / 'rows.db'}")
    return RowBackend(str(request.getfixturevalue("postgres_url")))


@pytest.fixture(params=["file", "s3"])
def object_backend(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectBackend:
    if request.param == "file":
        return ObjectBackend(f"file://{tmp_path / 'objects'}")
    url = str(request.getfixturevalue("s3_url"))
    return ObjectBackend(url, versioning=S3Versioning(url))


@pytest.fixture(params=["redis"])
def cache_backend(redis_space: tuple[str, str]) -> CacheBackend:
    url, prefix = redis_space
    return CacheBackend(url, prefix)


class TestRowStores(RowStoreSuite):
    pass


class TestObjectStores(ObjectStoreSuite):
    pass


class TestCacheStores(CacheStoreSuite):
    pass
