"""Certificates of deletion in the control store: the signed JSON, one row per request."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from lethe.control.schema import certificates
from lethe.control.tx import joined, transaction


class CertificateStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def put_many(self, documents: Sequence[tuple[int, str]], *,
                 conn: Connection | None = None) -> None:
        """(request id, signed JSON text) pairs, in one transaction (`conn`'s when given);
        a request certified again (a rerun after a crash) keeps its latest certificate."""
        if not documents:
            return
        ids = [request_id for request_id, _ in documents]
        now = datetime.now(UTC)
        with joined(self.engine, conn, "storing certificates") as conn:
            for start in range(0, len(ids), 900):
                conn.execute(certificates.delete().where(
                    certificates.c.request_id.in_(ids[start:start + 900])))
            conn.execute(certificates.insert(), [
                {"request_id": request_id, "document": text, "created_at": now}
                for request_id, text in documents])

    def get(self, request_id: int) -> str | None:
        with transaction(self.engine, "reading a certificate", write=False) as conn:
            found = conn.execute(sa.select(certificates.c.document).where(
                certificates.c.request_id == request_id)).scalar()
        return None if found is None else str(found)
