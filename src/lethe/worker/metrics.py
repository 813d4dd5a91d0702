"""Prometheus metrics a worker exposes (`lethe worker --metrics-port N`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class WorkerMetrics:
    """One registry per worker, so several in one process (tests) do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.rows = Counter("lethe_rows_handled", "Rows, keys or objects handled",
                            ["dataset", "action"], registry=r)
        self.backlog = Gauge("lethe_due_backlog", "Rows due when the dataset was last planned",
                             ["dataset"], registry=r)
        self.unit_seconds = Histogram("lethe_unit_seconds", "Time to carry out a unit of work",
                                      ["kind"], registry=r)
        self.verification_failures = Counter(
            "lethe_verification_failures", "Steps whose re-count found rows still due",
            ["dataset"], registry=r)
        self.requests_open = Gauge("lethe_requests_open", "Data-subject requests not finished",
                                   registry=r)
        self.requests_overdue = Gauge("lethe_requests_overdue",
                                      "Open requests past their due date", registry=r)
        self.takeovers = Counter("lethe_lease_takeovers",
                                 "Units taken over after another worker's lease expired",
                                 registry=r)
        self.units = Counter("lethe_units_done", "Units of work finished", ["kind"], registry=r)

    def serve(self, port: int, address: str = "127.0.0.1") -> None:
        start_http_server(port, address, registry=self.registry)
