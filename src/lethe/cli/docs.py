"""`lethe docs`: write the trust pages generated from the policy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lethe.cli.options import JsonOpt, NowOpt, PolicyOpt, settings
from lethe.cli.output import emit_json, stdout
from lethe.reports.trust import write_trust_pages


def docs_cmd(ctx: typer.Context,
             out: Annotated[Path, typer.Option("--out", help="Directory for the pages.")]
             = Path("trust"),
             fmt: Annotated[str, typer.Option("--format", help="html, markdown or both.")]
             = "both",
             policy: PolicyOpt = None, json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """Render the trust pages (retention schedule, data inventory and residency,
    classification handling) from the policy, as HTML and Markdown."""
    s = settings(ctx, policy, json_out, now)
    written = write_trust_pages(s.load(), s.clock().now(), out, fmt)
    if s.json:
        emit_json({"files": [str(p) for p in written]})
    else:
        stdout.print("wrote " + ", ".join(str(p) for p in written), markup=False)
