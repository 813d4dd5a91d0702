"""Printing: JSON on stdout for machines, Rich tables for people, errors on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress


class LazyConsole:
    """A Rich console made at its first `print`: Rich costs ~40 ms to import, which
    `lethe --help` and every `--json` command would otherwise pay for nothing."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def print(self, *objects: Any, **options: Any) -> None:
        self.console().print(*objects, **options)

    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console


# Off a terminal (pipes, CI logs) Rich would squeeze tables into 80 columns.
stdout = LazyConsole(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
stderr = LazyConsole(stderr=True, soft_wrap=True)


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def emit_json(data: dict[str, Any]) -> None:
    print(json.dumps(data, default=_default, sort_keys=False))


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.table import Table

    view = Table(title=title, title_justify="left")
    for column in columns:
        view.add_column(column, justify="right" if column in NUMERIC else "left")
    for row in rows:
        view.add_row(*("" if v is None else str(v) for v in row))
    stdout.print(view)


NUMERIC = {"rows", "held", "blocked", "done", "batches", "id", "remaining", "longest ms",
           "erased", "retained"}


@contextmanager
def progress_bar(enabled: bool, total: int, label: str) -> Iterator[Progress | None]:
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=stderr.console(), transient=True)
    with bar:
        bar.add_task(label, total=total or None)
        yield bar
