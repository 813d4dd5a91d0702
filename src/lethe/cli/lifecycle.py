"""`lethe lifecycle`: the bucket lifecycle equivalent to the policy's object rules."""

from __future__ import annotations

from typing import Annotated

import typer

from lethe.cli.options import JsonOpt, NowOpt, PolicyOpt, open_runtime, settings
from lethe.cli.output import emit_json, stdout


def lifecycle_cmd(ctx: typer.Context,
                  apply: Annotated[bool, typer.Option(
                      "--apply", help="Set the rules on each bucket (its own rules are kept)")]
                  = False,
                  policy: PolicyOpt = None, json_out: JsonOpt = False,
                  now: NowOpt = None) -> None:
    """Print (or --apply) the S3 lifecycle rules equivalent to the policy's object rules."""
    from lethe.commands.retention import bucket_lifecycle

    s = settings(ctx, policy, json_out, now)
    with open_runtime(s) as rt:
        results = bucket_lifecycle(rt, apply=apply)
    if s.json:
        emit_json({"stores": {r.store: r.as_dict() for r in results}})
        return
    for result in results:
        state = "applied" if result.applied else ("in sync" if not result.drift else
                                                 "differs: " + "; ".join(result.drift))
        stdout.print(f"store {result.store}: {len(result.rules)} rules, {state}", markup=False)
        for rule in result.rules:
            stdout.print(f"  {rule['ID']}: expire {rule['Filter']['Prefix']!r} after "
                         f"{rule['Expiration']['Days']} days", markup=False)
        for excluded in result.excluded:
            stdout.print(f"  not pushed down: {excluded.dataset} ({excluded.reason})",
                         markup=False)
