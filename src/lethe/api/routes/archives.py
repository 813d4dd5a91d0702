"""Archives: each archived chunk of a dataset, its storage class and restore state
(organization keys: an archive holds every workspace's rows)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Request

from lethe.api.context import Caller, Context, act
from lethe.api.fields import NO_CONTROLS
from lethe.commands.retention import list_archived
from lethe.errors import NotFound

router = APIRouter(prefix="/v1/archives", tags=["archives"])


@router.get("/{dataset}", name="archives.list",
            summary="A dataset's archived chunks: rows, storage class, restore state")
def list_chunks(request: Request, principal: Caller, ctx: Context,
                dataset: str = Path(min_length=1, max_length=200, pattern=NO_CONTROLS)
                ) -> dict[str, Any]:
    """`state`: `readable`, `restoring` (a restore S3 has not finished) or `frozen` (in
    GLACIER or DEEP_ARCHIVE, not restored: an erasure or `archive restore` asks for it)."""
    act(request, principal, "archives.read", f"dataset:{dataset}")
    if dataset not in ctx.runtime.policy.datasets:
        raise NotFound(f"no dataset {dataset!r}", path="dataset")
    return {"dataset": dataset, "chunks": list_archived(ctx.runtime, dataset)}
