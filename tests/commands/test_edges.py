"""The edges stay thin: nothing under `lethe/cli` or `lethe/api` reaches the control
store except through `lethe.commands`.

import-linter's layers let a higher layer import any lower one, so it cannot say
"the CLI and the API go through the commands layer"; this test says it, over the
source, so a route or a command that builds its own store object fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import lethe

SOURCE = Path(lethe.__file__).parent
EDGES = [p for edge in ("cli", "api") for p in sorted((SOURCE / edge).rglob("*.py"))]
# Control-store access objects and their factories: only lethe.commands builds them.
STORE_BUILDERS = {"requests_of", "CertificateStore", "ApiKeyStore", "RequestStore",
                  "ControlStore", "Transfers", "WorkspaceRegions"}


def _called_name(node: ast.Call) -> str | None:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _problems(path: Path, root: Path = SOURCE.parent) -> list[str]:
    text = path.read_text(encoding="utf-8")
    where = path.relative_to(root)
    found = [f"{where}: calls {name}(" for name in ("requests_of", "CertificateStore")
             if f"{name}(" in text]
    for node in ast.walk(ast.parse(text, filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names = {a.name for a in node.names}
            if module == "lethe.control" or module.startswith("lethe.control.") or \
                    (module == "lethe" and "control" in names):
                found.append(f"{where}:{node.lineno}: imports from {module}")
        elif isinstance(node, ast.Import):
            found += [f"{where}:{node.lineno}: imports {a.name}" for a in node.names
                      if a.name == "lethe.control" or a.name.startswith("lethe.control.")]
        elif isinstance(node, ast.Call) and _called_name(node) in STORE_BUILDERS:
            found.append(f"{where}:{node.lineno}: builds {_called_name(node)}")
        elif isinstance(node, ast.Attribute) and node.attr == "control":
            found.append(f"{where}:{node.lineno}: reaches into the runtime's control store")
    return found


def test_the_edges_are_found() -> None:
    names = {p.relative_to(SOURCE).as_posix() for p in EDGES}
    assert {"cli/app.py", "cli/requests.py", "api/app.py", "api/routes/requests.py"} <= names


def test_no_edge_touches_the_control_store_itself() -> None:
    problems = [p for path in EDGES for p in _problems(path)]
    assert problems == [], "\n".join(problems)


def test_the_check_sees_what_it_forbids(tmp_path: Path) -> None:
    """The checker itself catches each forbidden form (so a pass above means something)."""
    sample = tmp_path / "edge.py"
    sample.write_text(
        "from lethe.control.requests import RequestRecord\n"
        "import lethe.control.store\n"
        "from lethe import control\n"
        "def f(rt):\n"
        "    requests_of(rt).list()\n"
        "    CertificateStore(rt.control.engine)\n", encoding="utf-8")
    text = "\n".join(_problems(sample, tmp_path))
    for expected in ("imports from lethe.control.requests", "imports lethe.control.store",
                     "imports from lethe", "calls requests_of(", "calls CertificateStore(",
                     "builds CertificateStore", "reaches into the runtime's control store"):
        assert expected in text
