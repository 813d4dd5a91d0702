"""A bucket's versioning can be switched on while a worker has the store open: deletes
from then on still take every version (S3Objects asks again until it has seen it on)."""

from __future__ import annotations

from lethe.stores.objects import S3Objects
from lethe.stores.registry import open_store
from tests.stores.test_conformance import S3Versioning


def test_versioning_switched_on_while_the_store_is_open_loses_every_version(
        s3_url: str) -> None:
    store = open_store("bucket", s3_url)
    assert isinstance(store, S3Objects)
    versioning = S3Versioning(s3_url)
    try:
        store.put("early", b"x")
        store.delete(["early"])  # the store has now looked at the bucket: not versioned
        versioning.enable()  # e.g. by the bucket's owners, while a worker runs
        for version in (b"1", b"2", b"3"):
            store.put("report.csv", version)
        store.delete(["report.csv"])
        assert [info.key for page in store.pages("") for info in page] == []
        assert versioning.versions("report.csv") == 0
    finally:
        store.close()
