"""The monthly compliance report, as JSON, HTML or Markdown (organization keys: it
covers every workspace)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, PlainTextResponse

from lethe.api.context import Caller, Context, act
from lethe.commands.reports import monthly_report
from lethe.reports.render import render_html, render_markdown

router = APIRouter(prefix="/v1/reports", tags=["reports"])
Month = Path(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM")


@router.get("/{month}", name="reports.monthly",
            summary="The monthly compliance report: deletions, verification, holds, requests",
            responses={200: {"content": {"text/html": {}, "text/markdown": {}}}})
def monthly(request: Request, principal: Caller, ctx: Context, month: str = Month,
            format: Literal["json", "html", "markdown"] = "json") -> Any:
    act(request, principal, "reports.read", f"report:{month}")
    report = monthly_report(ctx.runtime, month)
    if format == "html":
        return HTMLResponse(render_html(report))
    if format == "markdown":
        return PlainTextResponse(render_markdown(report), media_type="text/markdown")
    return report.as_dict()
