"""`lethe archive restore`: archived rows back into their table."""

from __future__ import annotations

from typing import Annotated

import typer

from lethe.cli.options import JsonOpt, NowOpt, PolicyOpt, open_runtime, settings
from lethe.cli.output import emit_json, stdout

app = typer.Typer(rich_markup_mode=None, no_args_is_help=True,
                  help="Archived rows: bring them back.")


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
        stdout.print(f"{dataset}: {result.restored} rows restored from {result.chunks} "
                     f"chunks ({result.present} already present)", markup=False)
