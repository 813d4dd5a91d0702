"""Fixtures shared by the engine's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lethe.stores.registry import open_store
from lethe.stores.sql import SqlStore


@pytest.fixture
def store(postgres_url: str) -> Iterator[SqlStore]:
    """The PostgreSQL test database as lethe's `app` store, closed after the test."""
    opened = open_store("app", postgres_url)
    assert isinstance(opened, SqlStore)
    yield opened
    opened.close()
