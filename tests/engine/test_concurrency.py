"""Several workers at once, and the control store on PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from lethe.engine.execute import RunResult, execute
from lethe.engine.plan import build_plan
from tests.engine.test_retention import snapshot
from tests.fixtures import build_app, runtime, write_policy


@pytest.mark.postgres
def test_two_workers_at_once_reach_the_single_run_state(postgres_url: str,
                                                        tmp_path: Path) -> None:
    engine = build_app(postgres_url)
    policy = write_policy(tmp_path, postgres_url)
    rt = runtime(policy)
    single = execute(rt, build_plan(rt), batch_size=2)
    rt.close()
    reference = snapshot(engine)

    engine = build_app(postgres_url)
    results: list[RunResult] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            rt = runtime(policy)
            results.append(execute(rt, build_plan(rt), batch_size=2))
            rt.close()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert len(results) == 2 and all(r.ok for r in results)
    assert snapshot(engine) == reference
    # and every row was handled once in total, not twice
    deleting = ("delete", "purge", "soft-delete")
    assert sum(a.done for r in results for a in r.actions
               if a.planned.step.action in deleting) == \
        sum(a.done for a in single.actions if a.planned.step.action in deleting)


@pytest.mark.postgres
def test_control_store_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    build_app(postgres_url)
    policy = write_policy(tmp_path, postgres_url, control=postgres_url)
    rt = runtime(policy)
    from lethe.control.schema import MIGRATIONS

    assert rt.control.schema_version() == MIGRATIONS[-1][0]
    result = execute(rt, build_plan(rt))
    record = rt.control.run(result.run)
    rt.close()
    assert record["status"] == "completed"
    assert [a["done"] for a in record["actions"]] == [a.done for a in result.actions]
    # lethe's own tables live beside the app's and are not "undeclared" data
    from lethe.governance.check import check

    rt = runtime(policy)
    assert check(rt.catalog).findings == ()
    rt.close()
