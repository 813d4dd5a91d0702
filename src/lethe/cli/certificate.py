"""`lethe certificate verify|export`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lethe.cli.options import JsonOpt, NowOpt, PolicyOpt, open_runtime, read_pem, settings
from lethe.cli.output import emit_json, stdout

app = typer.Typer(rich_markup_mode=None, no_args_is_help=True,
                  help="Certificates of deletion.")


@app.command("verify")
def verify(ctx: typer.Context,
           file: Annotated[Path | None, typer.Argument(help="The certificate's JSON file.",
                                                       show_default=False)] = None,
           request: Annotated[int | None, typer.Option(
               "--request", help="Verify the certificate lethe keeps for this request")]
           = None,
           public_key: Annotated[Path | None, typer.Option(
               "--public-key", help="PEM public key to trust (default: the key inside the "
               "certificate, which proves integrity but not who signed it).")] = None,
           policy: PolicyOpt = None, json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """Check a certificate of deletion offline; exit 1 saying what is wrong with it."""
    from lethe.commands.certificates import kept_certificate
    from lethe.requests.certificate import load_certificate, verify_certificate

    s = settings(ctx, policy, json_out, now)
    if (file is None) == (request is None):
        raise typer.BadParameter("give a certificate FILE or --request ID")
    pem = read_pem(public_key)
    if request is not None:
        with open_runtime(s) as rt:
            document = kept_certificate(rt, request)
    else:
        assert file is not None
        document = load_certificate(file)
    verdict = verify_certificate(document, pem)
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


@app.command("export")
def export(ctx: typer.Context,
           request: Annotated[list[int], typer.Option(
               "--request", help="Request id (repeatable)")],
           out: Annotated[Path, typer.Option("--out", help="Where the files go")]
           = Path("lethe-requests"),
           policy: PolicyOpt = None, json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """Write kept certificates to files (JSON evidence + HTML), checked before writing."""
    from lethe.commands.certificates import export_certificates

    s = settings(ctx, policy, json_out, now)
    with open_runtime(s) as rt:
        written = [str(p) for p in export_certificates(rt, request, out)]
    if s.json:
        emit_json({"files": written})
    else:
        for path in written:
            stdout.print(path, markup=False, highlight=False)
