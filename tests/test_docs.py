"""Docs are part of the product: every command is documented and the README's claims hold."""

from __future__ import annotations

import re
import types
from pathlib import Path

import typer.main

import lethe
from lethe.cli.app import app

ROOT = Path(__file__).resolve().parent.parent


def command_names() -> list[str]:
    group = typer.main.get_command(app)
    names = []
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        names.append(name)
        assert command.help, f"`lethe {name}` has no help text"
    return names


def test_every_command_has_a_section_in_the_cli_docs() -> None:
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for name in command_names():
        assert re.search(rf"^## lethe {name}\b", text, re.M), f"docs/cli.md lacks `{name}`"


def test_readme_gives_the_two_setup_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "pip install -e . && lethe demo" in readme
    test_command = "pip install -e '.[test]' && python -m pytest"
    assert test_command in readme
    assert test_command in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_public_api_is_exactly_what_all_lists() -> None:
    public = {name for name in dir(lethe) if not name.startswith("_")
              and not isinstance(getattr(lethe, name), types.ModuleType)}
    assert public == set(lethe.__all__)
    for name in lethe.__all__:
        assert getattr(lethe, name) is not None
