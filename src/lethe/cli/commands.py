"""`lethe schema|init|check|plan|run|demo`."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lethe.cli.docs import docs_cmd
from lethe.cli.lifecycle import lifecycle_cmd
from lethe.cli.options import (
    BatchSecondsOpt,
    DatasetOpt,
    JsonOpt,
    NowOpt,
    PolicyOpt,
    open_runtime,
    settings,
)
from lethe.cli.output import emit_json, progress_bar, stdout, table
from lethe.cli.report import report_cmd
from lethe.cli.scan import scan_cmd
from lethe.cli.serve import serve_cmd
from lethe.cli.worker import worker_cmd
from lethe.defaults import BATCH_SECONDS, BATCH_SIZE
from lethe.errors import UsageError

if TYPE_CHECKING:
    from lethe.commands.checks import CheckReport
    from lethe.commands.retention import Plan
    from lethe.engine.execute import RunResult
    from lethe.engine.steps import Step
    from lethe.reports.explain import Explanation

BatchOpt = Annotated[int, typer.Option("--batch-size", min=1,
                                       help="Rows per transaction.")]


def render_plan(plan: Plan, title: str) -> None:
    table(f"{title} at {plan.now.isoformat(timespec='seconds')}",
          ["dataset", "rule", "action", "rows", "held", "blocked", "path"],
          [[a.step.dataset, "" if a.step.rule is None else a.step.rule,
            a.step.action + (f" (from {a.step.parent})" if a.step.parent else ""),
            a.rows, a.held, a.blocked,
            f"{a.partitions} partitions" if a.partitions else "rows"] for a in plan.actions])
    render_blocked([(a.step, a.blocked, a.blocked_by) for a in plan.actions])
    for dataset, reason in plan.skipped:
        stdout.print(f"not enforced: {dataset} ({reason})", markup=False)
    for dataset, periods in plan.chosen.items():
        chosen = ", ".join(f"{period}: {n}" for period, n in sorted(periods.items()))
        stdout.print(f"periods workspaces chose: {dataset} ({chosen}; the others: the "
                     "default)", markup=False)


def render_run(result: RunResult) -> None:
    table(f"Run {result.run} at {result.plan.now.isoformat(timespec='seconds')}",
          ["dataset", "rule", "action", "rows", "held", "blocked", "done", "verified",
           "longest ms"],
          [[a.planned.step.dataset, "" if a.planned.step.rule is None else a.planned.step.rule,
            a.planned.step.action, a.planned.rows, a.planned.held, a.kept_by_references[0],
            a.done, "yes" if a.verified else ("error: " + a.error if a.error else "no"),
            f"{a.longest_batch_ms:.0f}"] for a in result.actions])
    render_blocked([(a.planned.step, *a.kept_by_references) for a in result.actions])


def render_blocked(lines: Sequence[tuple[Step, int, Sequence[tuple[str, int]]]]) -> None:
    """Under a plan or run: which foreign keys keep the blocked rows."""
    from lethe.engine.plan import blocked_reason
    from lethe.engine.steps import step_label

    for step, blocked, blocked_by in lines:
        if blocked:
            stdout.print(f"blocked: {step_label(step)}: {blocked} rows "
                         f"{blocked_reason(blocked_by)}", markup=False)


def render_explanation(told: Explanation) -> None:
    from lethe.reports.explain import reason_lines

    scope = ", ".join(f"{k} {v}" if k == "workspace" else f"one {v}"
                      for k, v in told.scope.items()) or "every row"
    stdout.print(f"{told.dataset} at {told.now.isoformat(timespec='seconds')}: {told.rows} "
                 f"rows ({scope})", markup=False)
    for line in told.lines:
        step = line.step
        if step.parent is not None:
            head = f"cascade from {step.parent}"
        elif step.action == "purge":
            head = f"purge: {line.keep} after {line.after}"
        else:
            when = f" when {line.when}" if line.when else ""
            head = f"rule {step.rule}: {step.action} {line.keep} after {line.after}{when}"
        if line.cutoff is not None:
            head += f" (cutoff {line.cutoff.isoformat(timespec='seconds')})"
        stdout.print(head, markup=False, highlight=False)
        for text in reason_lines(line):
            stdout.print(f"  {text}", markup=False, highlight=False)
        if line.due_from is not None:
            stdout.print(f"  the oldest waiting row becomes due at "
                         f"{line.due_from.isoformat(timespec='seconds')}", markup=False)
    if told.no_rule:
        stdout.print(f"no rule: {told.no_rule} rows match no rule's `when`: kept",
                     markup=False)
    for note in told.notes:
        stdout.print(note, markup=False)


def render_check(report: CheckReport) -> None:
    if not report.findings:
        stdout.print("check: policy and stores agree; no findings")
        return
    table("Findings", ["severity", "code", "path", "message"],
          [[f.severity, f.code, f.path, f.message] for f in report.findings])


def schema(ctx: typer.Context) -> None:
    """Print the JSON Schema of lethe.yaml."""
    from lethe.policy.model import Policy

    print(json.dumps(Policy.model_json_schema(by_alias=True), indent=2))


def init(ctx: typer.Context,
         database: Annotated[str | None, typer.Option(
             "--database", help="The application's database: a SQLite file or a URL "
             "(postgresql://user@host/db). Asked for on a terminal; otherwise a "
             "placeholder path to edit.", show_default=False)] = None,
         demo: Annotated[bool, typer.Option("--demo", help="Also create the demo database.")]
         = False,
         force: Annotated[bool, typer.Option("--force", help="Overwrite lethe.yaml.")] = False,
         policy: PolicyOpt = None, json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """Write a starter lethe.yaml for your database (with --demo: the demo's policy and
    database), and say what to run next."""
    from lethe.crypto.kek import KEK_ENV, LocalKeyFile
    from lethe.crypto.signing import create_key, key_path
    from lethe.policy.model import AuditPolicy, EncryptionPolicy
    from lethe.policy.templates import PLACEHOLDER_DATABASE, database_url, starter_policy

    s = settings(ctx, policy, json_out, now)
    if s.policy_path.exists() and not force:
        raise UsageError("already exists (use --force to overwrite)", path=str(s.policy_path))
    if demo and database is not None:
        raise UsageError("--demo builds its own database; give --database or --demo",
                         path="--database")
    if demo:
        from lethe.demo.scenario import create_demo

        created = create_demo(s.policy_path.parent, s.clock().now(),
                              policy_name=s.policy_path.name)
        paths = [str(p) for p in created]
        url = None
    else:
        if database is None and not s.json and sys.stdin.isatty():
            database = typer.prompt(
                "Your application's database (a SQLite file, or a URL such as "
                "postgresql://user@host/db; empty: a placeholder to edit later)",
                default="", show_default=False).strip() or None
        url = database_url(database) if database else PLACEHOLDER_DATABASE
        s.policy_path.write_text(starter_policy(url), encoding="utf-8")
        paths = [str(s.policy_path)]
    key = key_path(s.policy_path.parent / AuditPolicy().key)
    if not key.exists():
        create_key(key)
        paths.append(str(key))
    kek_file = s.policy_path.parent / EncryptionPolicy().kek_file
    if not kek_file.exists() and not os.environ.get(KEK_ENV):
        LocalKeyFile(kek_file)  # creates it, mode 0600
        paths.append(str(kek_file))
    steps = next_steps(s.policy_path, url, PLACEHOLDER_DATABASE)
    if s.json:
        emit_json({"created": paths, "next": steps})
    else:
        stdout.print("created " + ", ".join(paths), markup=False)
        for step in steps:
            stdout.print(f"next: {step}", markup=False, highlight=False)


def next_steps(policy_path: Path, url: str | None, placeholder: str) -> list[str]:
    """What to do after `init`: the commands that take the new policy somewhere."""
    flag = "" if policy_path == Path("lethe.yaml") else f" --policy {policy_path}"
    if url is None:  # the demo: its database and policy are ready
        return [f"lethe plan{flag}   (what the demo policy would delete now)",
                f"lethe run{flag}    (do it: batches, verification, a signed record)"]
    if url == placeholder:
        return [f"set stores.app.url in {policy_path} to your application's database "
                "(or run `lethe init --database PATH_OR_URL --force`)",
                f"lethe check{flag}   (names every table and column the policy expects "
                "and the database lacks)"]
    return [f"lethe check{flag}   (names every table and column the policy expects and "
            "the database lacks; edit datasets in the policy to match)",
            f"lethe scan{flag}    (suggests which columns hold personal data)",
            f"lethe plan{flag}    (what the rules would delete now; changes nothing)"]


def check_cmd(ctx: typer.Context, policy: PolicyOpt = None, json_out: JsonOpt = False,
              now: NowOpt = None) -> None:
    """Validate the policy against the live stores; exit 1 on findings."""
    from lethe.commands.checks import check_policy

    s = settings(ctx, policy, json_out, now)
    with open_runtime(s) as rt:
        report = check_policy(rt)
    if s.json:
        emit_json(report.as_dict())
    else:
        render_check(report)
    if not report.ok:
        raise typer.Exit(1)


def plan_cmd(ctx: typer.Context, dataset: DatasetOpt = None,
             explain: Annotated[str | None, typer.Option(
                 "--explain", help="Explain one dataset: which rule and period apply, the "
                 "cutoff, and why each row that is not due stays.", show_default=False)]
             = None,
             subject: Annotated[str | None, typer.Option(
                 "--subject", help="With --explain: only this subject's rows (KIND:KEY).",
                 show_default=False)] = None,
             workspace: Annotated[str | None, typer.Option(
                 "--workspace", help="With --explain: only this workspace's rows.",
                 show_default=False)] = None,
             policy: PolicyOpt = None, json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """Dry run: what each rule would do now, and what holds keep. Changes nothing."""
    from lethe.commands.retention import plan

    s = settings(ctx, policy, json_out, now)
    if explain is None and (subject is not None or workspace is not None):
        raise UsageError("--subject and --workspace narrow --explain DATASET",
                         path="--explain")
    if explain is not None:
        from lethe.commands.retention import explain_dataset

        with open_runtime(s) as rt:
            told = explain_dataset(rt, explain, subject, workspace)
        if s.json:
            emit_json(told.as_dict())
        else:
            render_explanation(told)
        return
    with open_runtime(s) as rt:
        planned = plan(rt, dataset)
    if s.json:
        emit_json(planned.as_dict())
    else:
        render_plan(planned, "Plan")


def run_cmd(ctx: typer.Context, dataset: DatasetOpt = None,
            batch_size: BatchOpt = BATCH_SIZE,
            batch_seconds: BatchSecondsOpt = BATCH_SECONDS, policy: PolicyOpt = None,
            json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """Execute the plan in short batches, verify each dataset, record the run."""
    from lethe.commands.retention import plan, run
    from lethe.engine.steps import step_label

    s = settings(ctx, policy, json_out, now)
    with open_runtime(s) as rt:
        planned = plan(rt, dataset)
        total = sum(a.rows for a in planned.actions)
        with progress_bar(s.interactive, total, "sweeping") as bar:
            def advance(index: int, rows: int) -> None:
                if bar is not None:
                    bar.update(bar.task_ids[0], advance=rows,
                               description=step_label(planned.actions[index].step))
            result = run(rt, planned, batch_size=batch_size, batch_seconds=batch_seconds,
                         progress=advance)
    if s.json:
        emit_json(result.as_dict())
    else:
        render_run(result)
    if not result.ok:
        raise typer.Exit(1)


def demo(ctx: typer.Context,
         directory: Annotated[Path, typer.Option("--dir", help="Where to build the demo.")]
         = Path("lethe-demo"),
         json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """Build a demo database and policy, then check, plan, run and plan again."""
    from lethe.demo.scenario import run_demo

    s = settings(ctx, None, json_out, now)
    report = run_demo(directory, s.clock(), say=None if s.json else stdout.print)
    if s.json:
        emit_json(report)


def register(app: typer.Typer) -> None:
    app.command("schema")(schema)
    app.command("init")(init)
    app.command("check")(check_cmd)
    app.command("scan")(scan_cmd)
    app.command("plan")(plan_cmd)
    app.command("run")(run_cmd)
    app.command("demo")(demo)
    app.command("lifecycle")(lifecycle_cmd)
    app.command("worker")(worker_cmd)
    app.command("report")(report_cmd)
    app.command("docs")(docs_cmd)
    app.command("serve")(serve_cmd)
