"""`lethe scan`: suggested PII classifications and coverage of the policy's `fields:`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from lethe.cli.options import JsonOpt, NowOpt, PolicyOpt, settings
from lethe.cli.output import emit_json, stdout, table
from lethe.defaults import SCAN_SAMPLE
from lethe.errors import UsageError

if TYPE_CHECKING:
    from lethe.governance.scan import ScanReport

SampleOpt = Annotated[int, typer.Option("--sample", min=1,
                                        help="Rows sampled per table (read-only).")]
StoreOpt = Annotated[list[str] | None, typer.Option("--store", "-s",
                                                    help="Only this store (repeatable).",
                                                    show_default=False)]


def render_scan(report: ScanReport) -> None:
    import yaml

    shown = [c for c in report.columns if c.status != "clean"]
    if shown:
        table(f"PII scan ({report.sample} rows sampled per table at most)",
              ["store", "table", "column", "detected", "sampled", "declared", "status"],
              [[c.store, c.table, c.column,
                ", ".join(f"{k} {c.share(k):.0%}" for k in c.detected),
                c.sampled, c.declared or "", c.status] for c in shown])
    else:
        stdout.print("scan: no PII found in the sampled columns")
    if report.suggestions:
        stdout.print("\nSuggested classifications (merge into lethe.yaml):", markup=False)
        stdout.print(yaml.safe_dump(report.suggestions, sort_keys=False).rstrip(),
                     markup=False, highlight=False)
    cov = report.coverage
    stdout.print(f"\ncoverage: {cov['covered']} of {cov['discovered']} discovered PII columns "
                 f"declared; {len(cov['undeclared'])} undeclared; "
                 f"{len(cov['not_found'])} declared but not seen in the sample; "
                 f"{len(cov['encrypted'])} encrypted", markup=False)


def scan_cmd(ctx: typer.Context, sample: SampleOpt = SCAN_SAMPLE, store: StoreOpt = None,
             policy: PolicyOpt = None, json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """Sample SQL columns for PII and suggest `fields:`; exit 1 on undeclared PII or
    plaintext in a field declared encrypted."""
    from lethe.catalog import open_catalog
    from lethe.governance.scan import scan

    s = settings(ctx, policy, json_out, now)
    loaded = s.load()
    for name in store or ():
        if name not in loaded.stores:
            raise UsageError(f"unknown store {name!r}", path="--store")
    catalog = open_catalog(loaded)
    try:
        report = scan(catalog, sample, store)
    finally:
        catalog.close()
    if s.json:
        emit_json(report.as_dict())
    else:
        render_scan(report)
    if not report.ok:
        raise typer.Exit(1)
