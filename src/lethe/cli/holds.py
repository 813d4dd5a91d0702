"""`lethe hold place|list|release`."""

from __future__ import annotations

from typing import Annotated

import typer

from lethe.cli.options import JsonOpt, NowOpt, PolicyOpt, open_runtime, settings
from lethe.cli.output import emit_json, stdout, table
from lethe.engine.lifecycle import withdraw_held
from lethe.holds import parse_scope, place_hold, release_hold

app = typer.Typer(no_args_is_help=True, help="Legal holds: held rows are never touched.")


@app.command("place")
def place(ctx: typer.Context,
          subject: Annotated[str | None, typer.Option("--subject", help="KIND:KEY")] = None,
          workspace: Annotated[str | None, typer.Option("--workspace", help="Workspace id")]
          = None,
          dataset: Annotated[str | None, typer.Option("--dataset", help="Dataset name")] = None,
          reason: Annotated[str, typer.Option("--reason", help="Why (case, ticket)")]
          = "legal hold",
          policy: PolicyOpt = None, json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """Place a hold on a subject (and everything linked to it), a workspace or a dataset."""
    s = settings(ctx, policy, json_out, now)
    with open_runtime(s) as rt:
        scope = parse_scope(rt.policy, subject, workspace, dataset)
        hold_id = place_hold(rt.control, rt.audit, rt.clock, scope, reason)
        withdrawn = withdraw_held(rt)  # a bucket's own expiry must not outrun the hold
    if s.json:
        emit_json({"id": hold_id, "lifecycle_withdrawn": withdrawn})
    else:
        stdout.print(f"hold {hold_id} placed")
        if withdrawn:
            stdout.print(f"lifecycle rules withdrawn: {', '.join(withdrawn)}", markup=False)


@app.command("list")
def list_holds(ctx: typer.Context,
               all_: Annotated[bool, typer.Option("--all", help="Include released holds")]
               = False,
               policy: PolicyOpt = None, json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """List active holds."""
    s = settings(ctx, policy, json_out, now)
    with open_runtime(s) as rt:
        found = rt.control.holds(include_released=all_)
    if s.json:
        emit_json({"holds": [{"id": h.id, "scope": h.scope, "reason": h.reason,
                              "placed_at": h.placed_at.isoformat(), "placed_by": h.placed_by,
                              "released_at": h.released_at.isoformat() if h.released_at
                              else None} for h in found]})
    else:
        table("Holds", ["id", "scope", "reason", "placed at", "released at"],
              [[h.id, h.scope, h.reason, h.placed_at.isoformat(timespec="seconds"),
                h.released_at.isoformat(timespec="seconds") if h.released_at else ""]
               for h in found])


@app.command("release")
def release(ctx: typer.Context, hold_id: Annotated[int, typer.Argument(help="Hold id")],
            reason: Annotated[str | None, typer.Option("--reason")] = None,
            policy: PolicyOpt = None, json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """Release a hold; the rows become subject to retention again."""
    s = settings(ctx, policy, json_out, now)
    with open_runtime(s) as rt:
        hold = release_hold(rt.control, rt.audit, rt.clock, hold_id, reason)
    if s.json:
        emit_json({"id": hold.id, "released": True})
    else:
        stdout.print(f"hold {hold.id} released")
