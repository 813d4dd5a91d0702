"""Hostile and broken policy files (issue 17, item 6).

Every one is a one-line error naming where, exit 2, never a traceback or a hang:
the named cases through the CLI, then a seeded fuzzer (1,000 mutated policies, in
process) that allows only a loaded policy or a `PolicyError`. A hang is caught by an
alarm, not by timing anything.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from lethe.cli.app import main
from lethe.errors import PolicyError
from lethe.policy.load import MAX_DATASETS, load_policy
from tests.fixtures import POLICY, build_app

FUZZ_CASES = 1_000
SEED = 17_006

BOMB = ("x: &a [l,l,l,l,l,l,l,l,l]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
        "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
        "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
        "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
        "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n")


def base_text() -> str:
    policy = yaml.safe_load(yaml.safe_dump(POLICY))
    policy["stores"]["app"]["url"] = "sqlite:///app.db"
    return yaml.safe_dump(policy, sort_keys=False)


def with_keep(keep: Any) -> str:
    policy = yaml.safe_load(base_text())
    policy["datasets"]["sessions"]["retention"][0]["keep"] = keep
    return yaml.safe_dump(policy, sort_keys=False, allow_unicode=True)


def many_datasets(count: int) -> str:
    policy = yaml.safe_load(base_text())
    for i in range(count):
        policy["datasets"][f"d{i}"] = {"store": "app", "table": f"t{i}", "class": "operational"}
    return yaml.safe_dump(policy, sort_keys=False)


HOSTILE: dict[str, bytes] = {
    "latin-1": base_text().replace("Test Co", "Caf\u00e9").encode("latin-1"),
    "utf-16": base_text().encode("utf-16"),
    "nul": base_text().replace("Test Co", "Test\x00Co").encode(),
    "alias bomb under an unknown key": (base_text() + "extra:\n" + "".join(
        "  " + line + "\n" for line in BOMB.splitlines())).encode(),
    "deep lists": ("lethe: 1\nx: " + "[" * 3000 + "]" * 3000 + "\n").encode(),
    "deep mappings": "".join(" " * i + f"k{i}:\n" for i in range(1500)).encode(),
    "30 MB": (base_text() + "notes: '" + "a" * 30_000_000 + "'\n").encode(),
    "too many datasets": many_datasets(MAX_DATASETS + 1).encode(),
    "arabic-indic digits": with_keep("\u0663\u0660d").encode(),
    "full-width digit": with_keep("\uff11d").encode(),
    "space inside a duration": with_keep("30 d").encode(),
    "space around a duration": with_keep(" 30d").encode(),
    "a number as text": base_text().replace("lethe: 1", "lethe: 1\naudit: {checkpoint_every: "
                                            "'5'}").encode(),
}


def lethe(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from lethe.cli.app import main; main()",
                           *args], cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_policy_is_a_one_line_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / "lethe.yaml"
    path.write_bytes(HOSTILE[name])
    for command in ("check", "plan"):
        proc = lethe(tmp_path, command, "--policy", str(path))
        assert proc.returncode == 2, (command, proc.stdout[-500:], proc.stderr[-500:])
        assert "Traceback" not in proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and len(lines[0]) < 400, lines[:3]
        where = lines[0].removeprefix("lethe: error: ").split(": ", 1)[0]
        assert where and where != lines[0], lines[0]  # it names the file or a policy path


def test_the_unmutated_base_policy_loads(tmp_path: Path) -> None:
    path = tmp_path / "lethe.yaml"
    path.write_text(base_text())
    assert "sessions" in load_policy(path).datasets


class Hang(Exception):
    pass


@contextmanager
def alarm(seconds: int) -> Iterator[None]:
    def ring(_signum: int, _frame: Any) -> None:
        raise Hang

    previous = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


FRAGMENTS = [BOMB, "k: " + "[" * 200, "\t", "\ufeff", "${NO_SUCH_VARIABLE_17}", "*x", "&a ",
             "!!python/object:os.system ls", "\u0663\u0660d", "30 d", "1e999", "-1d", "0d",
             "99999999999999999999d", "? [a, b]\n: c", "<<: *a", "key: {", "- - - -",
             "\x00", "\x85", "\u2028", "forever ", "12mo\n", "'", '"', "%TAG ! x", "---\n",
             "...\n", "datasets: 7", "store: [", "retention: {}", "when: {a: {b: c}}"]


def mutate(rng: random.Random, text: str) -> bytes:
    data = bytearray(text.encode())
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        at = rng.randrange(len(data) + 1)
        if choice < 0.25:  # a random byte somewhere
            data[at:at] = bytes([rng.randrange(256)])
        elif choice < 0.5:  # a hostile fragment somewhere
            data[at:at] = rng.choice(FRAGMENTS).encode("utf-8", "surrogatepass")
        elif choice < 0.65:  # a slice cut out
            end = min(len(data), at + rng.randint(1, 80))
            del data[at:end]
        elif choice < 0.8:  # a line duplicated (duplicate keys, odd indentation)
            lines = bytes(data).split(b"\n")
            i = rng.randrange(len(lines))
            lines.insert(i, lines[i])
            data = bytearray(b"\n".join(lines))
        elif choice < 0.9:  # truncated
            del data[at:]
        else:  # another encoding
            return bytes(data).decode("utf-8", "replace").encode(
                rng.choice(["utf-16", "utf-32", "latin-1"]), "replace")
    return bytes(data)


def _command(argv: list[str]) -> int:
    """`lethe ARGV` in this process; its exit code. With LETHE_DEBUG set, an internal
    error is raised, not turned into a line."""
    try:
        main(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


@pytest.mark.slow
def test_fuzzed_policies_load_or_fail_cleanly(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Every mutation loads or is a PolicyError; those that load go through `check` and
    `plan` against the real (empty) app schema: exit 0, 1 or 2, never an internal error."""
    monkeypatch.setenv("LETHE_DEBUG", "1")
    monkeypatch.chdir(tmp_path)
    build_app(f"sqlite:///{tmp_path / 'app.db'}").dispose()
    rng = random.Random(SEED)
    base = base_text()
    path = tmp_path / "lethe.yaml"
    outcomes = {"loaded": 0, "refused": 0}
    for case in range(FUZZ_CASES):
        path.write_bytes(mutate(rng, base))
        try:
            with alarm(20):
                load_policy(path)
                outcomes["loaded"] += 1
                for command in ("check", "plan"):
                    code = _command([command, "--policy", str(path)])
                    assert code in (0, 1, 2), (case, command, code)
        except PolicyError as exc:
            assert "\n" not in str(exc), (case, str(exc)[:300])
            outcomes["refused"] += 1
        except Hang:
            pytest.fail(f"fuzz case {case} (seed {SEED}) hung")
        except AssertionError:
            raise
        except Exception as exc:  # any other exception is the bug
            pytest.fail(f"fuzz case {case} (seed {SEED}): {type(exc).__name__}: {exc}")
    assert outcomes["refused"] > 0 and outcomes["loaded"] > 0, outcomes
