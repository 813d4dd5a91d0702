"""`lethe transfer record|list|revoke`: authorised residency transfers."""

from __future__ import annotations

from typing import Annotated

import typer

from lethe.cli.options import JsonOpt, NowOpt, PolicyOpt, open_runtime, settings
from lethe.cli.output import emit_json, stdout, table

app = typer.Typer(rich_markup_mode=None, no_args_is_help=True,
                  help="Residency transfers: a workspace's data authorised in another region.")


@app.command("record")
def record(ctx: typer.Context,
           workspace: Annotated[str, typer.Option("--workspace", help="Workspace id")],
           dataset: Annotated[str, typer.Option("--dataset", help="Dataset name")],
           to_region: Annotated[str, typer.Option("--to-region", help="Region it may be in")],
           reason: Annotated[str, typer.Option("--reason", help="Why (agreement, ticket)")],
           until: Annotated[str | None, typer.Option(
               "--until", help="Last day (YYYY-MM-DD, UTC) or an ISO-8601 instant",
               show_default=False)] = None,
           policy: PolicyOpt = None, json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """Authorise a workspace's dataset to be held in another region (audited)."""
    from lethe.commands.residency import record_transfer

    s = settings(ctx, policy, json_out, now)
    with open_runtime(s) as rt:
        transfer = record_transfer(rt, workspace=workspace, dataset=dataset,
                                   to_region=to_region, reason=reason, until=until)
    if s.json:
        emit_json({"id": transfer.id, "until": transfer.until})
    else:
        stdout.print(f"transfer {transfer.id} recorded", markup=False)


@app.command("list")
def list_transfers(ctx: typer.Context,
                   all_: Annotated[bool, typer.Option("--all", help="Include revoked ones")]
                   = False,
                   policy: PolicyOpt = None, json_out: JsonOpt = False,
                   now: NowOpt = None) -> None:
    """List recorded transfers (unrevoked ones unless --all)."""
    from lethe.commands.residency import list_transfers as transfers_of

    s = settings(ctx, policy, json_out, now)
    with open_runtime(s) as rt:
        found = transfers_of(rt, include_revoked=all_)
        at = rt.clock.now()
    if s.json:
        emit_json({"transfers": [{**t.as_dict(), "active": t.active(at)} for t in found]})
    else:
        table("Transfers", ["id", "workspace", "dataset", "to region", "reason", "until",
                            "recorded at", "state"],
              [[t.id, t.workspace, t.dataset, t.to_region, t.reason,
                t.until.isoformat(timespec="seconds") if t.until else "",
                t.recorded_at.isoformat(timespec="seconds"),
                "active" if t.active(at) else ("revoked" if t.revoked_at else "expired")]
               for t in found])


@app.command("revoke")
def revoke(ctx: typer.Context,
           transfer_id: Annotated[int, typer.Argument(help="Transfer id")],
           policy: PolicyOpt = None, json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """Revoke a transfer; `check` reports the data again if it is still there (audited)."""
    from lethe.commands.residency import revoke_transfer

    s = settings(ctx, policy, json_out, now)
    with open_runtime(s) as rt:
        transfer = revoke_transfer(rt, transfer_id)
    if s.json:
        emit_json({"id": transfer.id, "revoked": True})
    else:
        stdout.print(f"transfer {transfer.id} revoked", markup=False)
