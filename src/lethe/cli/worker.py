"""`lethe worker`: run the schedules and pending requests, sharing work through leases."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from lethe.cli.options import (
    BatchSecondsOpt,
    JsonOpt,
    NowOpt,
    PolicyOpt,
    open_runtime,
    settings,
)
from lethe.cli.output import emit_json, stderr
from lethe.defaults import BATCH_SECONDS, BATCH_SIZE


def worker_cmd(ctx: typer.Context,
               once: Annotated[bool, typer.Option(
                   "--once", help="Exit when the current schedule occurrences are done")]
               = False,
               name: Annotated[str | None, typer.Option(
                   "--name", help="This worker's name in leases, unique (default host:pid:random)")]
               = None,
               lease_seconds: Annotated[float, typer.Option(
                   "--lease-seconds", min=1.0,
                   help="A lease not renewed for this long is taken over")] = 60.0,
               poll_seconds: Annotated[float, typer.Option("--poll-seconds", min=0.1)] = 5.0,
               batch_size: Annotated[int, typer.Option("--batch-size", min=1)]
               = BATCH_SIZE,
               batch_seconds: BatchSecondsOpt = BATCH_SECONDS,
               metrics_port: Annotated[int | None, typer.Option(
                   "--metrics-port", help="Serve Prometheus metrics on 127.0.0.1:PORT")] = None,
               out: Annotated[Path, typer.Option("--out", help="Where request files go")]
               = Path("lethe-requests"),
               policy: PolicyOpt = None, json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """Run the policy's schedules and pending requests; several workers on one
    PostgreSQL control store share the work. SIGTERM finishes the current batch."""
    import secrets
    import signal
    import socket

    from lethe.worker.loop import Worker, WorkerOptions, WorkerReport
    from lethe.worker.metrics import WorkerMetrics

    s = settings(ctx, policy, json_out, now)
    # unique even for two containers with the same host name and pid
    holder = name or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
    metrics = WorkerMetrics()
    if metrics_port is not None:
        metrics.serve(metrics_port)
    with open_runtime(s) as rt:
        worker = Worker(rt, WorkerOptions(holder, lease_seconds, poll_seconds, batch_size,
                                          batch_seconds, out_dir=out), metrics)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: worker.stop())

        shown = 0

        def on_pass(report: WorkerReport) -> None:
            nonlocal shown
            if not s.json:
                for unit in report.units[shown:]:
                    stderr.print(f"{holder}: {unit.unit} {unit.status}, {unit.done} done",
                                 markup=False)
            shown = len(report.units)

        report = worker.run(once=once, on_pass=on_pass)
    if s.json:
        emit_json({"worker": holder, "stopped": worker.stopping.is_set(), **report.as_dict()})
