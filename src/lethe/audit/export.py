"""Export the audit log as JSON lines, and verify such a file offline.

The file carries the organization's public key, but a careful verifier pins the key it
already trusts (`--public-key`) rather than the one inside the file it is checking.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lethe.audit.chain import Checkpoint, Entry, Verdict, entry_body, verify_chain
from lethe.audit.events import AuditExported
from lethe.audit.log import AuditLog, timestamp
from lethe.crypto.signing import load_public
from lethe.errors import LetheError

FORMAT = "lethe-audit-export-v1"


def export_log(log: AuditLog, path: Path) -> dict[str, int]:
    entries = log.entries()
    marks = log.checkpoints()
    header = {"type": "header", "format": FORMAT, "organization": log.settings.organization,
              "exported_at": timestamp(), "public_key": log.public_key_pem()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        out.write(json.dumps(header) + "\n")
        for entry in entries:
            out.write(json.dumps({"type": "entry", **entry.as_dict()}, ensure_ascii=False)
                      + "\n")
        for mark in marks:
            out.write(json.dumps({"type": "checkpoint", **mark.as_dict()}) + "\n")
    log.append(AuditExported(len(entries), len(marks)))
    return {"entries": len(entries), "checkpoints": len(marks)}


def read_export(path: Path) -> tuple[dict[str, Any], list[Entry], list[Checkpoint]]:
    header: dict[str, Any] | None = None
    entries: list[Entry] = []
    marks: list[Checkpoint] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise LetheError(f"cannot read export: {exc.strerror}", path=str(path)) from None
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
            kind = record.pop("type")
            if kind == "header":
                header = record
            elif kind == "entry":
                entries.append(Entry(**record))
            elif kind == "checkpoint":
                marks.append(Checkpoint(**record))
            else:
                raise ValueError(kind)
        except (ValueError, TypeError, KeyError, AttributeError):
            raise LetheError("not a lethe audit export line", path=f"{path}:{number}") from None
    if header is None or header.get("format") != FORMAT:
        raise LetheError("not a lethe audit export (no header)", path=str(path))
    return header, entries, marks


def verify_export(path: Path, public_key_pem: str | None = None) -> Verdict:
    header, entries, marks = read_export(path)
    key = load_public(public_key_pem or str(header.get("public_key", "")))
    rows = ((e.seq, entry_body((e.at, e.actor, e.source, e.action, e.target, e.reason,
                                e.details)), e.prev_hash, e.hash) for e in entries)
    return verify_chain(rows, marks, organization=str(header.get("organization", "")),
                        public_key=key)
