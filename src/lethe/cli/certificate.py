"""`lethe certificate verify`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lethe.cli.options import JsonOpt, NowOpt, PolicyOpt, read_pem, settings
from lethe.cli.output import emit_json, stdout
from lethe.requests.certificate import load_certificate, verify_certificate

app = typer.Typer(no_args_is_help=True, help="Certificates of deletion.")


@app.command("verify")
def verify(ctx: typer.Context,
           file: Annotated[Path, typer.Argument(help="The certificate's JSON file.",
                                                show_default=False)],
           public_key: Annotated[Path | None, typer.Option(
               "--public-key", help="PEM public key to trust (default: the key inside the "
               "certificate, which proves integrity but not who signed it).")] = None,
           policy: PolicyOpt = None, json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """Check a certificate of deletion offline; exit 1 saying what is wrong with it."""
    s = settings(ctx, policy, json_out, now)
    pem = read_pem(public_key)
    verdict = verify_certificate(load_certificate(file), pem)
    if s.json:
        emit_json(verdict.as_dict())
    elif verdict.ok:
        trust = "the trusted key" if pem is not None else "its embedded key (not pinned)"
        stdout.print(f"certificate ok: request {verdict.request}, signed by {trust} "
                     f"{verdict.key_id}", markup=False, highlight=False)
    else:
        stdout.print(f"certificate INVALID: {verdict.reason}", markup=False, highlight=False)
    if not verdict.ok:
        raise typer.Exit(1)


