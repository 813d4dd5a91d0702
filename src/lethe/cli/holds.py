"""`lethe hold place|list|release`."""

from __future__ import annotations

from typing import Annotated

import typer

from lethe.cli.options import JsonOpt, NowOpt, PolicyOpt, open_runtime, settings
from lethe.cli.output import emit_json, stdout, table

app = typer.Typer(rich_markup_mode=None, no_args_is_help=True,
                  help="Legal holds: held rows are never touched.")


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
    from lethe.commands import holds as hold_commands

    s = settings(ctx, policy, json_out, now)
    with open_runtime(s) as rt:
        scope = hold_commands.hold_scope(rt, subject, workspace, dataset)
        placed = hold_commands.place(rt, scope, reason)
    if s.json:
        emit_json({"id": placed.id, "lifecycle_withdrawn": placed.lifecycle_withdrawn})
    else:
        stdout.print(f"hold {placed.id} placed")
        if placed.lifecycle_withdrawn:
            stdout.print("lifecycle rules withdrawn: "
                         f"{', '.join(placed.lifecycle_withdrawn)}", markup=False)


@app.command("list")
def list_holds(ctx: typer.Context,
               all_: Annotated[bool, typer.Option("--all", help="Include released holds")]
               = False,
               policy: PolicyOpt = None, json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """List active holds."""
    from lethe.commands import holds as hold_commands

    s = settings(ctx, policy, json_out, now)
    with open_runtime(s) as rt:
        shown = [hold_commands.hold_as_dict(h, rt.audit)
                 for h in hold_commands.list_holds(rt, include_released=all_)]
    if s.json:
        emit_json({"holds": shown})
    else:
        table("Holds", ["id", "scope", "reason", "placed at", "released at"],
              [[h["id"], h["scope"], h["reason"], h["placed_at"][:19],
                (h["released_at"] or "")[:19]] for h in shown])


@app.command("release")
def release(ctx: typer.Context, hold_id: Annotated[int, typer.Argument(help="Hold id")],
            reason: Annotated[str | None, typer.Option("--reason")] = None,
            policy: PolicyOpt = None, json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """Release a hold; the rows become subject to retention again."""
    from lethe.commands import holds as hold_commands

    s = settings(ctx, policy, json_out, now)
    with open_runtime(s) as rt:
        hold = hold_commands.release(rt, hold_id, reason)
    if s.json:
        emit_json({"id": hold.id, "released": True})
    else:
        stdout.print(f"hold {hold.id} released")
