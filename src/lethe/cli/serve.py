"""`lethe serve`: the HTTP API on uvicorn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lethe.cli.options import JsonOpt, NowOpt, PolicyOpt, settings
from lethe.defaults import API_MAX_BODY, API_PER_MINUTE
from lethe.errors import UsageError
from lethe.logging import install_masking

if TYPE_CHECKING:
    from lethe.policy.model import Policy


def pii_fields(policy: Policy) -> set[str]:
    """Column names the policy classifies as personal data (a field without a class of
    its own takes its dataset's): masked by name in logs."""
    return {name for ds in policy.datasets.values() for name, field in ds.fields.items()
            if (field.class_ or ds.class_) == "pii"}


def serve_cmd(ctx: typer.Context,
              host: Annotated[str, typer.Option("--host", help="Address to listen on")]
              = "127.0.0.1",
              port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8080,
              out: Annotated[Path, typer.Option(
                  "--out", help="Where request exports and certificates go")]
              = Path("lethe-requests"),
              rate_limit: Annotated[int, typer.Option(
                  "--rate-limit", min=1, help="Calls per minute per key")]
              = API_PER_MINUTE,
              max_body: Annotated[int, typer.Option(
                  "--max-body", min=1, help="Largest request body, bytes")]
              = API_MAX_BODY,
              openapi: Annotated[bool, typer.Option(
                  "--openapi", help="Print the OpenAPI document and exit")] = False,
              policy: PolicyOpt = None, json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """Serve the HTTP API: requests, holds, runs, reports, audit, workspaces."""
    from lethe.api.app import create_app  # FastAPI and the routes: only for this command
    from lethe.runtime import Runtime

    s = settings(ctx, policy, json_out, now)
    if s.now is not None:
        raise UsageError("the API runs on the real clock; --now is not accepted", path="--now")
    rt = Runtime.open(s.load())
    try:
        app = create_app(rt, out_dir=out, per_minute=rate_limit, max_body=max_body)
        if openapi:
            print(json.dumps(app.openapi(), indent=2, sort_keys=True))
            return
        import uvicorn

        config = uvicorn.Config(app, host=host, port=port, proxy_headers=False,
                                server_header=False)  # configures uvicorn's logging
        install_masking(fields=pii_fields(rt.policy))  # so mask after that
        uvicorn.Server(config).run()
    finally:
        rt.close()
