"""Policy errors name their path; `${VAR}` comes from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lethe.errors import PolicyError
from lethe.policy.load import load_policy, parse_policy

BASE = """
lethe: 1
organization: Acme
stores: {app: {url: "sqlite:///app.db", region: us}}
datasets:
  users:
    store: app
    table: users
    class: pii
    soft_delete: {column: deleted_at, recover_for: 30d}
    retention: [{keep: 90d, after: closed_at, action: soft-delete}]
  sessions:
    store: app
    table: sessions
    class: operational
    belongs_to: {users: user_id}
    retention:
      - {keep: 30d, after: last_seen_at}
      - {keep: 60d, after: created_at}
"""


def load(text: str, **patch: object) -> object:
    data = yaml.safe_load(text)
    for dotted, value in patch.items():
        node = data
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[parts[-1]] = value
    return parse_policy(data)


def error_of(**patch: object) -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        load(BASE, **patch)
    return caught.value


def test_valid_policy_loads() -> None:
    policy = load(BASE)
    assert policy.datasets["sessions"].belongs_to == {"users": "user_id"}  # type: ignore[attr-defined]


def test_bad_duration_names_the_rule() -> None:
    err = error_of(**{"datasets.sessions.retention.1.keep": "30 dayz"})
    assert str(err).startswith("datasets.sessions.retention[1].keep: invalid duration '30 dayz'")
    assert err.exit_code == 2


@pytest.mark.parametrize(("patch", "path", "words"), [
    ({"datasets.users.store": "nope"}, "datasets.users", "unknown store"),
    ({"datasets.users.class": "secret"}, "datasets.users.class", ""),
    ({"datasets.users.colour": "red"}, "datasets.users.colour", "unknown field"),
    ({"datasets.users.table": "users; drop table x"}, "datasets.users", "invalid"),
    ({"datasets.sessions.retention.0.after": "a b"}, "datasets.sessions", "invalid"),
    ({"datasets.sessions.retention.0.action": "archive"}, "datasets.sessions.retention[0]",
     "`to:`"),
    ({"datasets.sessions.retention.0.when": {"status": []}},
     "datasets.sessions.retention[0].when", "empty list"),
    ({"datasets.sessions.erasure": "retain"}, "datasets.sessions", "legal_basis"),
    ({"datasets.sessions.belongs_to": {"ghosts": "ghost_id"}}, "datasets.sessions",
     "unknown dataset"),
    ({"lethe": 2}, "lethe", ""),
    ({"stores.app.url": "ftp://x"}, "stores.app.url", "unsupported"),
])
def test_errors_name_their_path(patch: dict[str, object], path: str, words: str) -> None:
    err = error_of(**patch)
    assert str(err).startswith(path), str(err)
    assert words in str(err)


def test_missing_field_is_named() -> None:
    data = yaml.safe_load(BASE)
    del data["organization"]
    with pytest.raises(PolicyError, match=r"^organization: required field is missing"):
        parse_policy(data)


def test_belongs_to_cycle_is_an_error() -> None:
    err = error_of(**{"datasets.users.belongs_to": {"sessions": "session_id"}})
    assert "cycle" in str(err) and "users" in str(err) and "sessions" in str(err)


def test_environment_variables_are_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_DB", "sqlite:///from-env.db")
    policy = load(BASE, **{"stores.app.url": "${APP_DB}"})
    assert policy.stores["app"].url == "sqlite:///from-env.db"  # type: ignore[attr-defined]


def test_missing_environment_variable_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LETHE_NOPE", raising=False)
    err = error_of(**{"stores.app.url": "${LETHE_NOPE}"})
    assert str(err) == "stores.app.url: environment variable LETHE_NOPE is not set"


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "lethe.yaml"
    path.write_text("lethe: 1\nstores: {app: [\n", encoding="utf-8")
    with pytest.raises(PolicyError, match=r"lethe\.yaml:\d+:\d+: invalid YAML"):
        load_policy(path)


@pytest.mark.parametrize("parser", ["libyaml", "pure Python"])
def test_a_character_yaml_does_not_allow_is_named_with_its_place(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parser: str) -> None:
    """libyaml parses when PyYAML has it (lethe's limits are checked while composing, in
    Python, either way); both say which character and where."""
    import yaml

    from lethe.policy import load
    if parser == "pure Python":
        monkeypatch.setattr(load, "PolicyLoader", load._PythonLoader)
    else:
        assert yaml.__with_libyaml__ and load.PolicyLoader is load._LibyamlLoader
    path = tmp_path / "lethe.yaml"
    # (libyaml counts bytes: the accented letters before it must not shift the column)
    path.write_text('lethe: 1\norganization: "Café Zürich"\nstores: {app: \x07}\n',
                    encoding="utf-8")
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    assert str(raised.value) == f"{path}:3:15: invalid YAML: character #x0007 is not allowed"


@pytest.mark.parametrize("parser", ["libyaml", "pure Python"])
def test_an_alias_inside_the_value_it_names_is_a_one_line_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parser: str) -> None:
    """`x: &a [*a]` is a value that contains itself: refused where it is composed (it
    made an internal RecursionError), while an alias of a finished value still works."""
    from lethe.policy import load
    if parser == "pure Python":
        monkeypatch.setattr(load, "PolicyLoader", load._PythonLoader)
    path = tmp_path / "lethe.yaml"
    path.write_text("lethe: 1\nx: &a [1, *a]\n", encoding="utf-8")
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    assert str(raised.value) == \
        f"{path}:2:11: invalid YAML: alias *a is inside the value it names"
    import yaml
    assert yaml.load("a: &b [1]\nc: [*b, *b]\n", Loader=load.PolicyLoader) == \
        {"a": [1], "c": [[1], [1]]}


def test_without_libyaml_pyyaml_parses_the_policy(tmp_path: Path) -> None:
    """A PyYAML built without libyaml (no `yaml._yaml`): lethe still loads, with PyYAML's
    own parser, and reads the demo's policy as libyaml does."""
    import subprocess
    import sys

    demo = Path(__file__).parents[2] / "src" / "lethe" / "demo" / "policy.yaml"
    code = (
        "import sys, importlib.abc\n"
        "class NoLibyaml(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'yaml._yaml': raise ImportError('no libyaml')\n"
        "sys.meta_path.insert(0, NoLibyaml())\n"
        "import yaml, json\n"
        "from lethe.policy import load\n"
        "assert not yaml.__with_libyaml__ and load.PolicyLoader is load._PythonLoader\n"
        f"text = open({str(demo)!r}).read()\n"
        "print(json.dumps(yaml.load(text, Loader=load.PolicyLoader), sort_keys=True,"
        " default=str))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    import json

    import yaml

    from lethe.policy import load
    expected = yaml.load(demo.read_text(), Loader=load.PolicyLoader)
    assert json.loads(done.stdout) == json.loads(json.dumps(expected, sort_keys=True,
                                                            default=str))


def test_relative_sqlite_paths_follow_the_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "lethe.yaml"
    path.parent.mkdir()
    path.write_text(BASE, encoding="utf-8")
    policy = load_policy(path)
    assert policy.stores["app"].url == f"sqlite:///{tmp_path / 'conf' / 'app.db'}"


def test_anonymize_null_means_the_null_method() -> None:
    policy = load(BASE, **{"datasets.users.fields": {"phone": {"anonymize": None}, "x": {}}})
    assert policy.datasets["users"].anonymized_fields == {"phone": "null"}  # type: ignore[attr-defined]


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite:///:memory:",
                                 "sqlite+pysqlite:///:memory:",
                                 "sqlite:///file::memory:?cache=shared",
                                 "sqlite:///file:state?mode=memory&uri=true"])
def test_an_in_memory_control_store_is_refused(url: str) -> None:
    err = error_of(control=url)
    assert str(err).startswith("control: an in-memory SQLite control store forgets holds")
    assert err.exit_code == 2


def test_a_control_store_on_disk_or_a_server_is_accepted() -> None:
    assert load(BASE, control="sqlite:////tmp/state.db").control == "sqlite:////tmp/state.db"
    assert load(BASE, control="postgresql://h/db").control == "postgresql://h/db"


def test_the_control_store_refuses_memory_when_opened_directly() -> None:
    from lethe.control.store import ControlStore
    from lethe.errors import StoreError

    with pytest.raises(StoreError, match=r"^control: an in-memory SQLite"):
        ControlStore("sqlite://")
