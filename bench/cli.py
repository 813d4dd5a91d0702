"""How long a `lethe` command takes from exec to exit, as a user sees it.

Each figure is the median wall time of `--runs` whole processes of the installed
`lethe` console script (the one beside this interpreter, not a pyenv or shell shim),
with bytecode caches written (as after `pip install`; the first run writes them and is
not counted). The baseline, measured in the same run the same way, is the interpreter
starting and exiting (`python -c pass`): what no command can go below.

    python bench/cli.py [--runs 15]

`lethe demo` (building its 70,000-row database, then check, plan, run, an erasure and
`audit verify`) is timed too, without a target. Writes bench/results/cli.json.
Targets (issue 21): `lethe --help` <= 0.25 s, `lethe plan` on the demo's policy <= 0.6 s.
`plan` is also timed in parts inside one process (imports, loading the policy, opening
the stores, planning, printing) so the figure says where its time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from common import write_result

TARGETS = {"help_s": 0.25, "plan_s": 0.6}
PARTS = r"""
import json, sys, time
t0 = time.perf_counter()
from lethe.cli.app import app  # noqa: F401  (typer and every command's options)
t1 = time.perf_counter()
from lethe.commands.retention import plan
t2 = time.perf_counter()
from pathlib import Path
from lethe.clock import clock_at
from lethe.policy.load import load_policy
policy = load_policy(Path("lethe.yaml"))
t3 = time.perf_counter()
from lethe.runtime import Runtime
rt = Runtime.open(policy, clock_at(None))
t4 = time.perf_counter()
planned = plan(rt, None)
t5 = time.perf_counter()
import contextlib, io
from lethe.cli.commands import render_plan
with contextlib.redirect_stdout(io.StringIO()):
    render_plan(planned, "Plan")
t6 = time.perf_counter()
rt.close()
print(json.dumps({"cli_and_typer": t1 - t0, "engine_imports": t2 - t1,
                  "load_policy": t3 - t2, "open_runtime": t4 - t3, "plan": t5 - t4,
                  "print": t6 - t5}))
"""


def wall(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def median_wall(argv: list[str], cwd: Path, env: dict[str, str], runs: int) -> float:
    wall(argv, cwd, env)  # writes the bytecode caches; not counted
    return statistics.median(wall(argv, cwd, env) for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    python = Path(sys.executable)
    lethe = python.parent / "lethe"
    if not lethe.exists():
        raise SystemExit(f"no lethe console script beside {python}: pip install -e .")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as tmp:
        demo = Path(tmp) / "demo"
        demo_s = statistics.median(
            wall([str(lethe), "demo", "--dir", str(Path(tmp) / f"demo{i}"), "--json"],
                 Path(tmp), env) for i in range(3))
        subprocess.run([str(lethe), "demo", "--dir", str(demo), "--json"], check=True,
                       stdout=subprocess.DEVNULL, env=env)
        baseline = median_wall([str(python), "-c", "pass"], demo, env, args.runs)
        help_s = median_wall([str(lethe), "--help"], demo, env, args.runs)
        plan_s = median_wall([str(lethe), "plan"], demo, env, args.runs)
        parts_runs = [json.loads(subprocess.run(
            [str(python), "-c", PARTS], cwd=demo, env=env, check=True, capture_output=True,
            text=True).stdout) for _ in range(max(3, args.runs // 3))]
    parts = {k: round(statistics.median(r[k] for r in parts_runs), 4) for k in parts_runs[0]}
    figures = {"baseline_python_s": round(baseline, 4), "help_s": round(help_s, 4),
               "plan_s": round(plan_s, 4), "demo_s": round(demo_s, 3)}
    result: dict[str, Any] = {
        "runs": args.runs, "figures": figures,
        "ratios_to_baseline": {"help": round(help_s / baseline, 2),
                               "plan": round(plan_s / baseline, 2),
                               "demo": round(demo_s / baseline, 1)},
        "plan_parts_s": parts, "targets_s": TARGETS,
        "targets_met": {k: figures[k] <= v for k, v in TARGETS.items()}}
    print(f"python -c pass  {baseline:.3f} s (baseline)")
    print(f"lethe --help    {help_s:.3f} s = {help_s / baseline:.1f}x baseline "
          f"(target {TARGETS['help_s']} s)")
    print(f"lethe plan      {plan_s:.3f} s = {plan_s / baseline:.1f}x baseline "
          f"(target {TARGETS['plan_s']} s)")
    print(f"lethe demo      {demo_s:.2f} s = {demo_s / baseline:.0f}x baseline (builds its "
          "database, then check, plan, run, an erasure, audit verify; median of 3)")
    print("plan, in one process: " + ", ".join(f"{k} {v:.3f} s" for k, v in parts.items()))
    print(f"wrote {write_result('cli', result)}")


if __name__ == "__main__":
    main()
