"""`lethe request open|list|show|run|reject`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lethe.cli.options import JsonOpt, NowOpt, PolicyOpt, open_runtime, settings
from lethe.cli.output import emit_json, stdout, table
from lethe.defaults import BATCH_SIZE, ERASURE_GROUP_SIZE
from lethe.errors import UsageError

if TYPE_CHECKING:
    from lethe.commands.requests import RequestRecord
    from lethe.runtime import Runtime

app = typer.Typer(rich_markup_mode=None, no_args_is_help=True,
                  help="Data-subject requests: access exports and erasure with certificates.")


def summary(rt: Runtime, record: RequestRecord) -> dict[str, Any]:
    """What a listing shows: never the identities, only their fingerprint."""
    from lethe.commands.requests import is_overdue

    return {"id": record.id, "kind": record.kind, "subject": record.subject_kind,
            "status": record.status, "workspace": record.workspace,
            "received": record.received_at.isoformat(),
            "due": record.due_at.isoformat(), "overdue": is_overdue(rt, record),
            "fingerprint": record.fingerprint[:12], "note": record.note}


@app.command("open")
def open_cmd(ctx: typer.Context,
             kind: Annotated[str, typer.Argument(help="access or erasure")],
             subject: Annotated[str | None, typer.Option(
                 "--subject", help="Subject kind, e.g. user")] = None,
             identity: Annotated[list[str] | None, typer.Option(
                 "--identity", help="NAME=VALUE (repeatable)")] = None,
             workspace: Annotated[str | None, typer.Option(
                 "--workspace", help="Alone (erasure): terminate the workspace, every "
                 "store (policy `termination:`); with --subject: only that workspace's "
                 "subject rows match")] = None,
             from_file: Annotated[Path | None, typer.Option(
                 "--from-file", help="CSV of identities, one request per row")] = None,
             policy: PolicyOpt = None, json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """Open a request (due 30 days after receipt; a termination, `termination.within`);
    the same open request is not doubled."""
    from lethe.commands.requests import open_request, open_requests_from_file, open_termination

    s = settings(ctx, policy, json_out, now)
    if subject is None and workspace is None:
        raise UsageError("give --subject KIND (a person) or --workspace ID (terminate a "
                         "workspace)", path="request open")
    if subject is None and (identity or from_file is not None or kind != "erasure"):
        raise UsageError("--workspace alone terminates a workspace: an erasure, with no "
                         "--identity or --from-file", path="request open")
    with open_runtime(s) as rt:
        if subject is None:
            assert workspace is not None
            records = [open_termination(rt, workspace)]
        elif from_file is not None:
            if identity:
                raise UsageError("give --identity or --from-file, not both", path="request")
            records = open_requests_from_file(rt, kind, subject, from_file)
        else:
            records = [open_request(rt, kind, subject, identity or [], workspace=workspace)]
    shown = [{"id": r.id, "status": r.status, "due": r.due_at.isoformat()} for r in records]
    if s.json:
        emit_json(shown[0] if from_file is None else {"requests": shown})
    else:
        for item in shown:
            stdout.print(f"request {item['id']}: {item['status']}, due {item['due']}")


@app.command("list")
def list_cmd(ctx: typer.Context,
             status: Annotated[str | None, typer.Option("--status")] = None,
             policy: PolicyOpt = None, json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """List requests; overdue ones are flagged."""
    from lethe.commands.requests import list_requests

    s = settings(ctx, policy, json_out, now)
    with open_runtime(s) as rt:
        rows = [summary(rt, r) for r in list_requests(rt, status)]
    if s.json:
        emit_json({"requests": rows})
    else:
        table("Requests", ["id", "kind", "subject", "status", "due", "overdue", "note"],
              [[r["id"], r["kind"], r["subject"], r["status"], r["due"],
                "OVERDUE" if r["overdue"] else "", r["note"] or ""] for r in rows])


@app.command("show")
def show(ctx: typer.Context, request_id: Annotated[int, typer.Argument(help="Request id")],
         policy: PolicyOpt = None, json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """One request: status, dates, per-dataset results, export and certificate paths."""
    from lethe.commands.requests import get_request

    s = settings(ctx, policy, json_out, now)
    with open_runtime(s) as rt:
        record = get_request(rt, request_id)
        data = summary(rt, record)
    data.update(identities=sorted(record.identities), result=record.result,
                export=record.export_path, certificate=record.certificate_path,
                completed=record.completed_at.isoformat() if record.completed_at else None)
    if s.json:
        emit_json(data)
    else:
        for key, value in data.items():
            stdout.print(f"{key}: {value}", markup=False)


@app.command("run")
def run(ctx: typer.Context,
        request_id: Annotated[int | None, typer.Argument(help="Request id")] = None,
        all_open: Annotated[bool, typer.Option(
            "--all", help="Every open request; erasures go through in groups")] = False,
        out: Annotated[Path, typer.Option("--out", help="Where exports and certificates go")]
        = Path("lethe-requests"),
        batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = BATCH_SIZE,
        group_size: Annotated[int, typer.Option(
            "--group-size", min=1, help="Erasure requests erased together (--all)")]
        = ERASURE_GROUP_SIZE,
        certificate_files: Annotated[bool, typer.Option(
            "--certificate-files", help="With --all: also write each certificate to --out "
            "(they are always kept in the control store; `lethe certificate export` "
            "writes them later)")] = False,
        policy: PolicyOpt = None, json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """Carry out a request: export (access) or soft-delete, then erase and certify (erasure)."""
    from lethe.commands.requests import run_open_requests, run_request

    if (request_id is None) == (not all_open):
        raise UsageError("give a request id or --all", path="request run")
    s = settings(ctx, policy, json_out, now)
    with open_runtime(s) as rt:
        if all_open:
            outcomes = run_open_requests(rt, out, batch_size, group_size,
                                         certificate_files=certificate_files)
        else:
            assert request_id is not None
            outcomes = [run_request(rt, request_id, out, batch_size)]
    shown = [o.as_dict() for o in outcomes]
    if s.json:
        emit_json({"requests": shown} if all_open else shown[0])
    else:
        _print_outcomes(shown, all_open)
    if any(o.error is not None for o in outcomes):  # stopped by a store: the request is
        raise typer.Exit(1)  # open and says why; not a usage error


def _print_outcomes(shown: list[dict[str, Any]], all_open: bool) -> None:
    for data in shown:
        stdout.print(f"request {data['id']}: {data['status']}"
                     + (f" — {data['note']}" if data.get("note") else ""), markup=False)
        if not all_open:
            table("Datasets", ["dataset", "rows", "erased", "retained", "held"],
                  [[n, d["rows"], d["erased"], d["retained"], d["held"]]
                   for n, d in data["datasets"].items()])
        for key in ("export", "certificate"):
            if key in data:
                stdout.print(f"{key}: {data[key]}", markup=False)


@app.command("reject")
def reject_cmd(ctx: typer.Context, request_id: Annotated[int, typer.Argument()],
               reason: Annotated[str, typer.Option("--reason")],
               policy: PolicyOpt = None, json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """Reject a request (identity not verified, manifestly unfounded, …)."""
    from lethe.commands.requests import reject_request

    s = settings(ctx, policy, json_out, now)
    with open_runtime(s) as rt:
        record = reject_request(rt, request_id, reason)
    if s.json:
        emit_json({"id": record.id, "status": record.status})
    else:
        stdout.print(f"request {record.id}: rejected")
