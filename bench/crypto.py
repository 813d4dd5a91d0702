"""Crypto benchmark: lethe's encrypted fields vs raw AES-GCM, 1 KB values.

Measured in this one run, in one process, on 1,024-character ASCII values:

1. The baseline: `cryptography`'s AESGCM, one cached `AESGCM(key)`; `encrypt(os.urandom(12),
   data, aad)` and `decrypt(nonce, ciphertext, aad)` on bytes, with the same associated data
   lethe uses.
2. lethe, warm: `FieldCipher.encrypt_field` / `decrypt_field` cycling through `--subjects`
   subjects whose data keys already exist and are cached (one encrypt each beforehand).
   Encrypt cycles the subjects; decrypt cycles one token per subject.
3. lethe, cold: the first encrypt for each of `--new-subjects` new subjects (data key
   generation, KEK wrap, insert into the control store, read back and unwrap).

The control store is SQLite in a temporary directory, the KEK a local key file. Every timed
loop runs `--trials` times, interleaved; the best trial counts.
Run: `python bench/crypto.py [--ops N]`.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import time
from collections.abc import Callable
from itertools import cycle, islice
from pathlib import Path
from typing import Any

from common import write_result
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from lethe.control.store import ControlStore
from lethe.crypto.fields import FieldCipher
from lethe.crypto.kek import LocalKeyFile
from lethe.crypto.keys import SubjectKeys

DATASET, COLUMN = "notes", "body"
AAD = f"lethe-field\x1f{DATASET}.{COLUMN}".encode()  # what lethe binds a value to
VALUE_CHARS = 1024
TARGET = 0.5


def make_value() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789.,"
    return "".join(alphabet[(i * 7 + i // 13) % len(alphabet)] for i in range(VALUE_CHARS))


def timed(loop: Callable[[], int]) -> dict[str, Any]:
    started = time.perf_counter()
    ops = loop()
    elapsed = time.perf_counter() - started
    return {"ops": ops, "seconds": elapsed, "ops_per_s": ops / elapsed}


def best(trials: list[dict[str, Any]]) -> dict[str, Any]:
    top = max(trials, key=lambda t: t["ops_per_s"])
    return {**top, "trials_ops_per_s": [t["ops_per_s"] for t in trials]}


def raw_encrypt(aes: AESGCM, data: bytes, ops: int) -> Callable[[], int]:
    def loop() -> int:
        urandom, encrypt = os.urandom, aes.encrypt
        for _ in range(ops):
            encrypt(urandom(12), data, AAD)
        return ops
    return loop


def raw_decrypt(aes: AESGCM, pool: list[tuple[bytes, bytes]], ops: int) -> Callable[[], int]:
    def loop() -> int:
        decrypt = aes.decrypt
        for nonce, ciphertext in islice(cycle(pool), ops):
            decrypt(nonce, ciphertext, AAD)
        return ops
    return loop


def lethe_encrypt(cipher: FieldCipher, subjects: list[int], value: str,
                  ops: int) -> Callable[[], int]:
    def loop() -> int:
        encrypt = cipher.encrypt_field
        for subject in islice(cycle(subjects), ops):
            encrypt("user", subject, value, dataset=DATASET, column=COLUMN)
        return ops
    return loop


def lethe_decrypt(cipher: FieldCipher, tokens: list[str], ops: int) -> Callable[[], int]:
    def loop() -> int:
        decrypt = cipher.decrypt_field
        for token in islice(cycle(tokens), ops):
            decrypt(token, dataset=DATASET, column=COLUMN)
        return ops
    return loop


def lethe_encrypt_bytes(cipher: FieldCipher, subjects: list[int], value: bytes,
                        ops: int) -> Callable[[], int]:
    def loop() -> int:
        encrypt = cipher.encrypt_bytes
        for subject in islice(cycle(subjects), ops):
            encrypt("user", subject, value, dataset=DATASET, column=COLUMN)
        return ops
    return loop


def lethe_decrypt_bytes(cipher: FieldCipher, sealed: list[bytes],
                        ops: int) -> Callable[[], int]:
    def loop() -> int:
        decrypt = cipher.decrypt_bytes
        for blob in islice(cycle(sealed), ops):
            decrypt(blob, dataset=DATASET, column=COLUMN)
        return ops
    return loop


def lethe_cold(cipher: FieldCipher, subjects: range, value: str) -> Callable[[], int]:
    def loop() -> int:
        for subject in subjects:
            cipher.encrypt_field("user", subject, value, dataset=DATASET, column=COLUMN)
        return len(subjects)
    return loop


def profile(loop: Callable[[], int], top: int) -> list[dict[str, Any]]:
    """Every function by own time over one run of `loop`, with per-call microseconds."""
    profiler = cProfile.Profile()
    profiler.enable()
    ops = loop()
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    rows = []
    for (filename, line, name), (_cc, calls, own, cumulative, _callers) in stats.items():
        where = filename.split("/lethe/", 1)[1] if "/lethe/" in filename else \
            "/".join(filename.split("/")[-2:])
        rows.append({"function": f"{where}:{line}({name})" if line else name,
                     "calls_per_op": calls / ops, "own_us_per_op": own / ops * 1e6,
                     "cumulative_us_per_op": cumulative / ops * 1e6})
    rows.sort(key=lambda r: r["own_us_per_op"], reverse=True)
    return rows[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ops", type=int, default=100_000)
    parser.add_argument("--subjects", type=int, default=1_000)
    parser.add_argument("--new-subjects", type=int, default=2_000)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--profile", type=int, default=20_000,
                        help="operations to profile per lethe loop when below target; 0: none")
    args = parser.parse_args()

    value = make_value()
    data = value.encode("ascii")
    assert len(data) == VALUE_CHARS
    aes = AESGCM(AESGCM.generate_key(bit_length=256))
    pool = []
    for _ in range(args.subjects):
        nonce = os.urandom(12)
        pool.append((nonce, aes.encrypt(nonce, data, AAD)))
    raw: dict[str, list[dict[str, Any]]] = {"encrypt": [], "decrypt": []}
    lethe: dict[str, list[dict[str, Any]]] = {"encrypt": [], "decrypt": [], "cold": [],
                                              "encrypt_bytes": [], "decrypt_bytes": []}
    profiles: dict[str, list[dict[str, Any]]] = {}

    with tempfile.TemporaryDirectory() as tmp:
        control = ControlStore(f"sqlite:///{tmp}/state.db")
        try:
            cipher = FieldCipher(SubjectKeys(control.engine, LocalKeyFile(Path(tmp) / "kek.json")))
            subjects = list(range(1, args.subjects + 1))
            tokens = [cipher.encrypt_field("user", s, value, dataset=DATASET, column=COLUMN)
                      for s in subjects]  # creates and caches every subject's key
            assert cipher.decrypt_field(tokens[-1], dataset=DATASET, column=COLUMN) == value
            sealed = [cipher.encrypt_bytes("user", s, data, dataset=DATASET, column=COLUMN)
                      for s in subjects]
            loops = {"raw encrypt": (raw["encrypt"], raw_encrypt(aes, data, args.ops)),
                     "lethe encrypt": (lethe["encrypt"],
                                       lethe_encrypt(cipher, subjects, value, args.ops)),
                     "raw decrypt": (raw["decrypt"], raw_decrypt(aes, pool, args.ops)),
                     "lethe decrypt": (lethe["decrypt"], lethe_decrypt(cipher, tokens, args.ops)),
                     "lethe encrypt bytes": (lethe["encrypt_bytes"], lethe_encrypt_bytes(
                         cipher, subjects, data, args.ops)),
                     "lethe decrypt bytes": (lethe["decrypt_bytes"], lethe_decrypt_bytes(
                         cipher, sealed, args.ops))}
            next_subject = 10_000_000
            for trial in range(args.trials):  # interleaved, so drift hits both alike
                figures = []
                for name, (results, loop) in loops.items():
                    results.append(timed(loop))
                    figures.append(f"{name} {results[-1]['ops_per_s']:,.0f}/s")
                new = range(next_subject, next_subject + args.new_subjects)
                next_subject += args.new_subjects
                lethe["cold"].append(timed(lethe_cold(cipher, new, value)))
                figures.append(f"cold keys {lethe['cold'][-1]['ops_per_s']:,.0f}/s")
                print(f"trial {trial + 1}: " + ", ".join(figures), flush=True)

            summary = {k: best(v) for k, v in raw.items()}, {k: best(v) for k, v in lethe.items()}
            ratios = {op: summary[1][op]["ops_per_s"] / summary[0][op]["ops_per_s"]
                      for op in ("encrypt", "decrypt")}
            ratios.update({f"{op}_bytes": summary[1][f"{op}_bytes"]["ops_per_s"]
                           / summary[0][op]["ops_per_s"] for op in ("encrypt", "decrypt")})
            if args.profile and min(ratios.values()) < TARGET:
                profiles = {
                    "encrypt": profile(lethe_encrypt(cipher, subjects, value, args.profile), 12),
                    "decrypt": profile(lethe_decrypt(cipher, tokens, args.profile), 12)}
        finally:
            control.engine.dispose()

    raw_best, lethe_best = summary
    print(f"1 KB values; {args.ops:,} operations per loop; best of {args.trials} trials; "
          f"{args.subjects:,} warm subjects")
    for op in ("encrypt", "decrypt", "encrypt_bytes", "decrypt_bytes"):
        base = op.removesuffix("_bytes")
        met = "met" if ratios[op] >= TARGET else "NOT met"
        print(f"{op}: raw AESGCM {raw_best[base]['ops_per_s']:>10,.0f} ops/s "
              f"({raw_best[base]['seconds'] / args.ops * 1e6:.2f} us/op)   "
              f"lethe {lethe_best[op]['ops_per_s']:>10,.0f} ops/s "
              f"({lethe_best[op]['seconds'] / args.ops * 1e6:.2f} us/op)   "
              f"lethe / raw = {ratios[op]:.2f}x (target >= {TARGET}x: {met})")
    cold = lethe_best["cold"]
    print(f"cold key creation (first encrypt for a new subject): {cold['ops_per_s']:,.0f} keys/s "
          f"({cold['seconds'] / cold['ops'] * 1e3:.3f} ms/key, over {cold['ops']:,} subjects)")
    for op, rows in profiles.items():
        print(f"\nlethe {op} profile, top by own time ({args.profile:,} ops; "
              "cProfile inflates absolute times):")
        for row in rows:
            print(f"  {row['own_us_per_op']:7.2f} us own  {row['cumulative_us_per_op']:7.2f} us "
                  f"cum  {row['calls_per_op']:4.1f} calls/op  {row['function']}")
    path = write_result("crypto", {
        "value_bytes": VALUE_CHARS, "ops": args.ops, "subjects": args.subjects,
        "new_subjects": args.new_subjects, "trials": args.trials,
        "raw_aesgcm": raw_best, "lethe": lethe_best,
        "ratios": {f"{op}_vs_raw": ratio for op, ratio in ratios.items()},
        "targets": {"encrypt_vs_raw": TARGET, "decrypt_vs_raw": TARGET},
        "met": {op: ratios[op] >= TARGET for op in ratios},
        **({"profile": profiles} if profiles else {})})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
