"""`lethe archive list|restore`: archived chunks, and their rows back into their table."""

from __future__ import annotations

from typing import Annotated

import typer

from lethe.cli.options import JsonOpt, NowOpt, PolicyOpt, open_runtime, settings
from lethe.cli.output import emit_json, stdout, table

app = typer.Typer(rich_markup_mode=None, no_args_is_help=True,
                  help="Archived rows: list their chunks, bring them back.")


@app.command("restore")
def restore_cmd(ctx: typer.Context,
                dataset: Annotated[str, typer.Argument(help="Dataset whose rows to restore")],
                policy: PolicyOpt = None, json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """Insert every archived row of DATASET whose key is not in the table (checked chunks
    only; rows already there are left as they are)."""
    from lethe.commands.retention import restore_archived

    s = settings(ctx, policy, json_out, now)
    with open_runtime(s) as rt:
        result = restore_archived(rt, dataset)
    if s.json:
        emit_json(result.as_dict())
    else:
        waiting = f"; {result.pending} chunks being restored from their cold storage class" \
            " (run again once they are)" if result.pending else ""
        if result.unsettled:
            waiting += f"; {result.unsettled} chunks an interrupted archive run left " \
                f"unsettled not read (`lethe run --dataset {dataset}` settles them; then " \
                "run again)"
        stdout.print(f"{dataset}: {result.restored} rows restored from {result.chunks} "
                     f"chunks ({result.present} already present){waiting}", markup=False)


@app.command("list")
def list_cmd(ctx: typer.Context,
             dataset: Annotated[str, typer.Argument(help="Dataset whose archive to list")],
             policy: PolicyOpt = None, json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """The dataset's archived chunks: rows, when archived, storage class, and whether
    each can be read now (`readable`), is being restored (`restoring`) or must be
    restored first (`frozen`)."""
    from lethe.commands.retention import list_archived

    s = settings(ctx, policy, json_out, now)
    with open_runtime(s) as rt:
        chunks = list_archived(rt, dataset)
    if s.json:
        emit_json({"dataset": dataset, "chunks": chunks})
    else:
        table(f"Archive of {dataset}", ["store", "chunk", "rows", "archived", "class", "state"],
              [[c["store"], c["chunk"].rsplit("/", 1)[-1], c["rows"], c["archived_at"],
                c["storage_class"], c["state"]] for c in chunks])
