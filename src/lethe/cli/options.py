"""Options every command accepts, before or after the command name.

The command modules import nothing heavy at module level — `lethe --help` builds every
command's options and must not pay for SQLAlchemy, pydantic or the API — so the policy,
the runtime and the commands they call are imported inside the command that runs.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lethe.clock import Clock, clock_at
from lethe.defaults import MOST_BATCH_SECONDS
from lethe.errors import UsageError

if TYPE_CHECKING:
    from lethe.policy.model import Policy
    from lethe.runtime import Runtime

PolicyOpt = Annotated[Path | None, typer.Option("--policy", "-p", help="Policy file "
                                                "(default ./lethe.yaml).", show_default=False)]
BatchSecondsOpt = Annotated[float, typer.Option(
    "--batch-seconds", min=0.0, max=MOST_BATCH_SECONDS,
    help="A batch's time budget: a PostgreSQL page walk grows its batches past "
         "--batch-size while each commits within it (0: every batch --batch-size rows).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
NowOpt = Annotated[str | None, typer.Option("--now", help="Fix the clock (ISO-8601).",
                                            show_default=False)]
DatasetOpt = Annotated[list[str] | None, typer.Option("--dataset", "-d",
                                                      help="Only this dataset (repeatable).",
                                                      show_default=False)]


@dataclass
class Settings:
    policy_path: Path = Path("lethe.yaml")
    json: bool = False
    now: str | None = None

    def merged(self, policy: Path | None, json_out: bool, now: str | None) -> Settings:
        return Settings(policy or self.policy_path, json_out or self.json, now or self.now)

    def clock(self) -> Clock:
        return clock_at(self.now)

    def load(self) -> Policy:
        from lethe.policy.load import load_policy  # pydantic and the model: only when used

        return load_policy(self.policy_path)

    @property
    def interactive(self) -> bool:
        return not self.json and sys.stderr.isatty()


def settings(ctx: typer.Context, policy: Path | None, json_out: bool,
             now: str | None) -> Settings:
    base = ctx.find_root().obj
    base = base if isinstance(base, Settings) else Settings()
    merged = base.merged(policy, json_out, now)
    ctx.find_root().obj = merged  # so the error handler knows whether to speak JSON
    return merged


def read_pem(path: Path | None) -> str | None:
    """A `--public-key` file's text: the key the user pins instead of the embedded one."""
    if path is None:
        return None
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        raise UsageError("cannot read the public key file", path=str(path)) from None


@contextmanager
def open_runtime(s: Settings) -> Iterator[Runtime]:
    """The policy's runtime for one command, closed however the command ends."""
    from lethe.runtime import Runtime  # the stores and the engine: only for commands using them

    rt = Runtime.open(s.load(), s.clock())
    try:
        yield rt
    finally:
        rt.close()
