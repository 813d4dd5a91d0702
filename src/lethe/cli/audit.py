"""`lethe audit verify|show|export|prune`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lethe.cli.options import JsonOpt, NowOpt, PolicyOpt, open_runtime, read_pem, settings
from lethe.cli.output import emit_json, stdout, table
from lethe.clock import parse_instant
from lethe.text import counted

app = typer.Typer(rich_markup_mode=None, no_args_is_help=True,
                  help="The tamper-evident audit log: verify, show, export, prune.")


@app.command("verify")
def verify(ctx: typer.Context,
           file: Annotated[Path | None, typer.Option("--file", help="Verify an export "
                                                     "offline instead of the database.")]
           = None,
           public_key: Annotated[Path | None, typer.Option(
               "--public-key", help="PEM public key to trust (default: the organization's "
               "key, or the one inside --file).")] = None,
           witness: Annotated[str | None, typer.Option(
               "--witness", help="Check against the latest checkpoint this witness holds "
               "(file:///path or s3://bucket/prefix?…; default: the policy's "
               "audit.witness).")] = None,
           policy: PolicyOpt = None, json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """Check every link and checkpoint; exit 1 naming the first bad sequence number."""
    from lethe.commands.audit import verify_chain, verify_file

    s = settings(ctx, policy, json_out, now)
    pem = read_pem(public_key)
    if file is not None:
        verdict = verify_file(file, pem)
    else:
        with open_runtime(s) as rt:
            verdict = verify_chain(rt, pem, witness)
    if s.json:
        emit_json(verdict.as_dict())
    elif verdict.ok:
        witnessed = "" if verdict.witnessed is None else \
            f", witnessed up to {verdict.witnessed}"
        stdout.print(f"audit log ok: {counted(verdict.entries, 'entry', 'entries')}, "
                     f"{counted(verdict.checkpoints, 'signed checkpoint')}{witnessed}")
    else:
        stdout.print(f"audit log BROKEN at sequence {verdict.first_bad}: {verdict.reason} "
                     f"({verdict.entries} entries verified before it)")
    if not verdict.ok:
        raise typer.Exit(1)


@app.command("show")
def show(ctx: typer.Context,
         since: Annotated[str | None, typer.Option("--since", help="ISO-8601 time")] = None,
         until: Annotated[str | None, typer.Option("--until", help="ISO-8601 time")] = None,
         action: Annotated[str | None, typer.Option("--action",
                                                    help="e.g. hold.placed or retention")]
         = None,
         target: Annotated[str | None, typer.Option("--target",
                                                    help="e.g. dataset:sessions or hold")]
         = None,
         limit: Annotated[int | None, typer.Option("--limit", min=1)] = None,
         policy: PolicyOpt = None, json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """List audit entries, filtered by time, action and target."""
    from lethe.commands.audit import entries as audit_entries

    s = settings(ctx, policy, json_out, now)
    with open_runtime(s) as rt:
        entries = audit_entries(
            rt, since=parse_instant(since, "--since") if since else None,
            until=parse_instant(until, "--until") if until else None,
            action=action, target=target, limit=limit)
    if s.json:
        emit_json({"entries": [{**e.as_dict(), "details": json.loads(e.details)}
                               for e in entries]})
    else:
        table("Audit log", ["seq", "at", "actor", "action", "target", "details"],
              [[e.seq, e.at, e.actor, e.action, e.target, e.details] for e in entries])


@app.command("export")
def export(ctx: typer.Context,
           out: Annotated[Path, typer.Option("--out", "-o", help="JSON-lines file to write")],
           policy: PolicyOpt = None, json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """Write entries, checkpoints and the public key as JSON lines, for offline checks."""
    from lethe.commands.audit import export_to

    s = settings(ctx, policy, json_out, now)
    with open_runtime(s) as rt:
        counts = export_to(rt, out)
    if s.json:
        emit_json({"path": str(out), **counts})
    else:
        stdout.print(f"wrote {counts['entries']} entries and {counts['checkpoints']} "
                     f"checkpoints to {out}")


@app.command("prune")
def prune(ctx: typer.Context, policy: PolicyOpt = None, json_out: JsonOpt = False,
          now: NowOpt = None) -> None:
    """Drop entries older than the policy's audit retention; the rest stays verifiable."""
    from lethe.commands.audit import prune as prune_log

    s = settings(ctx, policy, json_out, now)
    with open_runtime(s) as rt:
        removed = prune_log(rt)
    if s.json:
        emit_json({"removed": removed})
    else:
        stdout.print(f"pruned {removed} audit entries older than {rt.policy.audit.retention}")
