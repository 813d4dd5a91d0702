"""`lethe keys rotate`."""

from __future__ import annotations

from typing import Annotated

import typer

from lethe.audit.events import KeysRotated
from lethe.cli.options import JsonOpt, NowOpt, PolicyOpt, open_runtime, settings
from lethe.cli.output import emit_json, stdout

app = typer.Typer(no_args_is_help=True, help="Key-encryption keys and subject data keys.")


@app.command("rotate")
def rotate(ctx: typer.Context,
           batch: Annotated[int, typer.Option("--batch", min=1, help="Keys per transaction")]
           = 500,
           policy: PolicyOpt = None, json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """New KEK; rewrap every data key (data untouched); retire the old KEK. Resumable."""
    s = settings(ctx, policy, json_out, now)
    with open_runtime(s) as rt:
        result = rt.subject_keys().rotate(batch=batch)
        rt.audit.append(KeysRotated(str(result["kek"]), int(result["rewrapped"])))
    if s.json:
        emit_json(result)
    else:
        stdout.print(f"rotated to KEK {result['kek']}; rewrapped {result['rewrapped']} "
                     "data keys")
