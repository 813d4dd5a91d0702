"""Retention runs: trigger one (it goes on in the background), list them, show one.

Long sweeps belong to `lethe worker`; a run triggered here is for an operator who wants
one now. It answers with the run's id as soon as the run is recorded.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from lethe.api.context import Caller, Context, RecordId, act
from lethe.api.errors import ApiError
from lethe.api.fields import Name
from lethe.commands.retention import plan, recent_runs, run, run_record

router = APIRouter(prefix="/v1/runs", tags=["runs"])
START_TIMEOUT = 300.0  # planning counts rows; a huge store may take a while


class TriggerRun(BaseModel):
    model_config = ConfigDict(extra="forbid")
    datasets: list[Name] = Field(default_factory=list, max_length=500,
                                description="Only these datasets (default: all)")


@router.post("", name="runs.trigger", status_code=202, summary="Start a retention run now")
def trigger(body: TriggerRun, request: Request, principal: Caller,
            ctx: Context) -> dict[str, Any]:
    act(request, principal, "runs.trigger", "runs")
    rt = ctx.runtime_for(principal)
    if not ctx.heavy.acquire(blocking=False):
        raise ApiError(409, "a run or request is already in progress on this server")
    started: queue.Queue[int | BaseException] = queue.Queue()

    def work() -> None:
        try:
            run(rt, plan(rt, body.datasets or None), started=started.put)
        except BaseException as exc:  # handed to the waiting call
            started.put(exc)
        finally:
            ctx.heavy.release()

    threading.Thread(target=work, name="lethe-api-run", daemon=True).start()
    first = started.get(timeout=START_TIMEOUT)
    if isinstance(first, BaseException):
        raise first
    request.state.resource = f"run:{first}"
    return {"run": first, "status": "running", "href": f"/v1/runs/{first}"}


@router.get("", name="runs.list", summary="Recent runs, newest first")
def list_all(request: Request, principal: Caller, ctx: Context,
             limit: int = Query(50, ge=1, le=500)) -> dict[str, Any]:
    act(request, principal, "runs.read", "runs")
    return {"runs": recent_runs(ctx.runtime, limit)}


@router.get("/{run_id}", name="runs.show", summary="One run with its actions")
def show(run_id: RecordId, request: Request, principal: Caller,
         ctx: Context) -> dict[str, Any]:
    act(request, principal, "runs.read", f"run:{run_id}")
    return run_record(ctx.runtime, run_id)
