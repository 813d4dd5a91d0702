"""`lethe docs`: write the trust pages generated from the policy."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lethe.cli.options import JsonOpt, NowOpt, PolicyOpt, open_runtime, settings
from lethe.cli.output import emit_json, stdout

if TYPE_CHECKING:
    from lethe.reports.evidence import RuleEvidence, RuleKey


def docs_cmd(ctx: typer.Context,
             out: Annotated[Path, typer.Option("--out", help="Directory for the pages.")]
             = Path("trust"),
             fmt: Annotated[str, typer.Option("--format", help="html, markdown or both.")]
             = "both",
             evidence: Annotated[bool, typer.Option(
                 "--evidence", help="Beside each retention promise, what backs it now: the "
                 "last verified run, the oldest record, the deletion lag; and 'encrypted at "
                 "rest' for declared columns found fully encrypted (reads the stores and "
                 "lethe's records).")] = False,
             policy: PolicyOpt = None, json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """Render the trust pages (retention schedule, data inventory and residency,
    classification handling) from the policy, as HTML and Markdown."""
    from lethe.crypto.signing import key_path, load_key, public_pem
    from lethe.reports.evidence import encryption_evidence, rule_evidence
    from lethe.reports.trust import KEY_FILE, trust_pages, write_pages

    s = settings(ctx, policy, json_out, now)
    loaded = s.load()
    signing = key_path(Path(loaded.audit.key))
    public = public_pem(load_key(signing)) if signing.exists() else None
    backing: dict[RuleKey, RuleEvidence] | None = None
    sealed: dict[str, tuple[str, ...]] | None = None
    if evidence:
        with open_runtime(s) as rt:
            backing, sealed = rule_evidence(rt), encryption_evidence(rt)
    pages = trust_pages(loaded, s.clock().now(), backing, sealed)
    written = write_pages(pages, out, fmt, public)
    if s.json:  # every sentence about the data, with the policy paths it states
        emit_json({"files": [str(p) for p in written],
                   "public_key": None if public is None else str(out / KEY_FILE),
                   "claims": [c.as_dict() for c in pages.claims]})
    else:
        stdout.print("wrote " + ", ".join(str(p) for p in written), markup=False)
        if public is None:
            stdout.print("no organization key yet (lethe init creates it): the key that "
                         "signs certificates is not published", markup=False)
