"""Read lethe.yaml: YAML, `${VAR}` expansion, validation, and errors that name a path."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from lethe.errors import PolicyError
from lethe.policy.encrypted import anonymized_in_clear
from lethe.policy.graph import find_cycle
from lethe.policy.model import Policy

# Limits on a policy file (docs/policy.md): a hostile or broken file is a one-line error
# in well under a second, never a hang, a memory blow-up or a traceback.
MAX_POLICY_BYTES = 1_000_000
MAX_ALIASES = 100  # `*name` references
MAX_NODES = 200_000  # values once aliases are expanded: 500 bytes of aliases can make 10^9
MAX_DEPTH = 64  # nesting of mappings and lists (a real policy needs about 8)
MAX_DATASETS = 5_000


class _Limits(yaml.composer.Composer):
    """Aliases, nesting and the size the document would expand to are bounded while it
    is composed, before anything is built from it. (With YAML 1.2 booleans, below: only
    true/false; in YAML 1.1 `country: NO` would be False.)"""

    check_event: Any  # the parser's, beside this class in a loader
    peek_event: Any

    def __init__(self) -> None:
        yaml.composer.Composer.__init__(self)
        self._aliases = 0
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(node) -> values under it, aliases expanded
        self._open: list[str] = []  # anchors of the collections being composed

    def _refuse(self, problem: str) -> None:
        mark = self.peek_event().start_mark
        raise yaml.composer.ComposerError(None, None, problem, mark)

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                self._refuse(f"more than {MAX_ALIASES} aliases")
            if event.anchor in self._open:  # `x: &a [*a]`: a value that contains itself
                self._refuse(f"alias *{event.anchor} is inside the value it names")
        opens = isinstance(event, yaml.CollectionStartEvent) and event.anchor is not None
        if opens:
            self._open.append(event.anchor)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                self._refuse(f"nested deeper than {MAX_DEPTH} levels")
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if opens:
                self._open.pop()
        if id(node) not in self._sizes:
            children: list[Any] = []
            if isinstance(node, yaml.SequenceNode):
                children = list(node.value)
            elif isinstance(node, yaml.MappingNode):
                children = [part for pair in node.value for part in pair]
            self._sizes[id(node)] = 1 + sum(self._sizes.get(id(c), 1) for c in children)
        if self._sizes[id(node)] > MAX_NODES:
            self._refuse(f"more than {MAX_NODES:,} values once its aliases are expanded")
        return node


class _PythonLoader(_Limits, yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser,
                    yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """PyYAML's own parser: used where PyYAML was built without libyaml."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        _Limits.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)


def _libyaml_loader() -> Any:
    """libyaml scans and parses, in a tenth of the pure-Python scanner's time (~2 ms
    instead of ~15 ms for the demo's policy, on every command); composing stays in
    Python (_Limits), where the limits are checked. None where PyYAML was built
    without libyaml."""
    try:
        from yaml.cyaml import CParser  # type: ignore[attr-defined]
    except ImportError:
        return None

    class LibyamlLoader(_Limits, CParser, yaml.constructor.SafeConstructor,
                        yaml.resolver.Resolver):
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            _Limits.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)

    return LibyamlLoader


_LibyamlLoader = _libyaml_loader()

for _loader in (_PythonLoader, _LibyamlLoader):
    if _loader is None:
        continue
    _loader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    _loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
        list("tTfF"))

PolicyLoader: Any = _LibyamlLoader or _PythonLoader

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


_TYPE_TAGS = {"str", "int", "float", "bool", "none", "list", "dict", "literal",
              "keep:duration", "keep:from"}


def format_location(loc: tuple[int | str, ...]) -> str:
    """`datasets.sessions.retention[1].keep`, without pydantic's union-member tags."""
    text = ""
    for part in loc:
        if isinstance(part, str) and (part in _TYPE_TAGS or "[" in part):
            continue
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _expand(node: Any, path: str) -> Any:
    if isinstance(node, str):
        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise PolicyError(f"environment variable {name} is not set", path=path)
            return os.environ[name]
        return _VAR.sub(substitute, node)
    if isinstance(node, dict):
        return {k: _expand(v, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v, f"{path}[{i}]") for i, v in enumerate(node)]
    return node


def _resolve_relative(url: str, base: Path) -> str:
    """Relative sqlite and file URLs are relative to the policy file, not the shell's cwd."""
    for prefix in ("sqlite:///", "file://"):
        if url.startswith(prefix):
            rest = url[len(prefix):]
            if rest and not rest.startswith("/") and not rest.startswith(":memory:"):
                return f"{prefix}{(base / rest).resolve()}"
    return url


def parse_policy(data: Any, *, base: Path | None = None, source: str = "policy") -> Policy:
    if not isinstance(data, dict):
        raise PolicyError("the policy must be a YAML mapping", path=source)
    datasets = data.get("datasets")
    if isinstance(datasets, dict) and len(datasets) > MAX_DATASETS:
        raise PolicyError(f"more than {MAX_DATASETS:,} datasets", path="datasets")
    data = _expand(data, "")
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "missing":
            message = "required field is missing"
        elif first["type"] == "extra_forbidden":
            message = "unknown field"
        path = format_location(first["loc"])
        if not path and ": " in message:  # cross-reference errors carry their own path
            path, message = message.split(": ", 1)
        raise PolicyError(message, path=path or source) from None
    cycle = find_cycle(policy.datasets)
    if cycle:
        raise PolicyError("belongs_to cycle: " + " -> ".join(cycle), path="datasets")
    anonymized_in_clear(policy)
    if base is not None:
        stores = {name: store.model_copy(update={"url": _resolve_relative(store.url, base)})
                  for name, store in policy.stores.items()}
        key = Path(policy.audit.key)
        witness = policy.audit.witness
        if witness and witness not in ("stdout", "-") and not witness.startswith("s3://"):
            witness = _resolve_relative(
                witness if witness.startswith("file://") else f"file://{witness}", base)
        audit = policy.audit.model_copy(update={
            "key": str(key if key.is_absolute() else (base / key).resolve()),
            "witness": witness})
        kek = Path(policy.encryption.kek_file)
        encryption = policy.encryption.model_copy(update={
            "kek_file": str(kek if kek.is_absolute() else (base / kek).resolve())})
        policy = policy.model_copy(update={"stores": stores, "audit": audit,
                                           "encryption": encryption,
                                           "control": _resolve_relative(policy.control, base)})
    return policy


def load_policy(path: str | Path) -> Policy:
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_POLICY_BYTES + 1)
    except FileNotFoundError:
        raise PolicyError("policy file not found (create one with `lethe init`)",
                          path=str(path)) from None
    except OSError as exc:
        raise PolicyError(f"cannot read policy file: {exc.strerror}", path=str(path)) from None
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError(f"policy file is larger than {MAX_POLICY_BYTES:,} bytes",
                          path=str(path))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"policy file is not UTF-8 text (byte {exc.start})",
                          path=str(path)) from None
    if "\x00" in text:
        raise PolicyError("policy file holds a NUL character", path=str(path))
    try:
        data = yaml.load(text, Loader=PolicyLoader)
    except RecursionError:
        raise PolicyError(f"invalid YAML: nested deeper than {MAX_DEPTH} levels",
                          path=str(path)) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        at = exc.position  # libyaml counts bytes of the UTF-8 text; PyYAML characters
        if PolicyLoader is _LibyamlLoader:
            at = len(text.encode("utf-8")[:at].decode("utf-8", "ignore"))
        before = text[:at]
        where = f"{path}:{before.count(chr(10)) + 1}:{at - before.rfind(chr(10))}"
        raise PolicyError(f"invalid YAML: character #x{exc.character:04x} is not allowed",
                          path=where) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise PolicyError(f"invalid YAML: {problem}", path=where) from None
    return parse_policy(data, base=path.resolve().parent, source=str(path))
