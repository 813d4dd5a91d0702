"""The store conformance suite: what every store adapter must do, run on a real server.

Like alembic's `testing/suite`, the suite is plain pytest classes whose tests take a
backend fixture the caller provides; a test module subclasses them (a class whose
name starts with `Test`) and defines the fixture, once per backend it runs on:

    from lethe.testing import RowBackend, RowStoreSuite

    @pytest.fixture(params=["sqlite", "postgresql"])
    def row_backend(request) -> RowBackend: ...

    class TestRowStores(RowStoreSuite):
        pass

Stores are opened from the backend's URL through `lethe.stores.registry.open_store`,
so an adapter is tested as lethe will open it. Tests that depend on a capability flag
check the promise when the flag is True and its absence (or the plain behaviour)
when it is False: nothing is skipped for lack of a feature.

This package needs pytest (the `test` extra) and imports nothing above `lethe.stores`.
"""

from lethe.testing.backends import CacheBackend, ObjectBackend, RowBackend, Versioning
from lethe.testing.cache import CacheStoreSuite
from lethe.testing.objects import ObjectStoreSuite
from lethe.testing.rows import RowStoreSuite

__all__ = [
    "CacheBackend",
    "CacheStoreSuite",
    "ObjectBackend",
    "ObjectStoreSuite",
    "RowBackend",
    "RowStoreSuite",
    "Versioning",
]
