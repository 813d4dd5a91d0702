"""The audit log: read entries, verify the chain, export, prune, and write in a
caller's name.

A workspace sees only its part of the log: entries its keys wrote and entries about
its requests, holds and the workspace itself. That view is built here, so every edge
that confines a reader to a workspace confines it the same way.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path

from lethe.audit.chain import Entry, Verdict
from lethe.audit.events import AuditEvent
from lethe.audit.export import export_log, verify_export
from lethe.audit.log import timestamp
from lethe.commands.holds import list_holds
from lethe.commands.keys import workspace_actors
from lethe.commands.requests import list_requests
from lethe.crypto.signing import load_public
from lethe.runtime import Runtime, witness_of


def workspace_view(rt: Runtime, workspace: str) -> tuple[list[str], list[str]]:
    """(actors, targets) whose entries a workspace may read."""
    targets = [f"workspace:{workspace}"]
    targets += [f"request:{r.id}" for r in list_requests(rt, workspace=workspace)]
    targets += [f"hold:{h.id}" for h in list_holds(rt, include_released=True,
                                                    workspace=workspace)]
    return workspace_actors(rt, workspace), targets


def entries(rt: Runtime, *, since: datetime | None = None, until: datetime | None = None,
            after: int | None = None, action: str | None = None, target: str | None = None,
            limit: int | None = None, workspace: str | None = None) -> list[Entry]:
    """Entries in sequence order, filtered; with a `workspace`, only that workspace's
    view of the log."""
    return rt.audit.entries(
        since=timestamp(since) if since is not None else None,
        until=timestamp(until) if until is not None else None,
        after=after, action=action, target=target, limit=limit,
        visible=None if workspace is None else workspace_view(rt, workspace))


def verify_chain(rt: Runtime, public_key_pem: str | None = None,
                 witness: str | None = None) -> Verdict:
    """Check every link and checkpoint of the stored log, against the given PEM public
    key or else the organization's own, and against the latest checkpoint of `witness`
    (a URL; default: the policy's `audit.witness`, unless it is `stdout`)."""
    return rt.audit.verify(load_public(public_key_pem) if public_key_pem else None,
                           witness_of(rt.policy, witness) if witness else None)


def verify_file(path: Path, public_key_pem: str | None = None) -> Verdict:
    """Check an exported log offline (no runtime: the file carries what is needed)."""
    return verify_export(path, public_key_pem)


def export_to(rt: Runtime, path: Path) -> dict[str, int]:
    """Write entries, checkpoints and the public key as JSON lines; the counts written."""
    return export_log(rt.audit, path)


def prune(rt: Runtime) -> int:
    """Drop entries older than the policy's audit retention (none when it keeps them
    forever); what remains still verifies. The number of entries removed."""
    cutoff = rt.policy.audit.retention.before(rt.clock.now())
    return rt.audit.prune(cutoff) if cutoff is not None else 0


def acting_as(rt: Runtime, actor: str, source: str) -> Runtime:
    """The same runtime whose audit log writes in `actor`'s name from `source` (an API
    key and its client's address)."""
    return replace(rt, audit=rt.audit.acting_as(actor, source))


def record(rt: Runtime, event: AuditEvent) -> None:
    """Append one event in `rt`'s actor's name."""
    rt.audit.append(event)


__all__ = ["Entry", "Verdict", "acting_as", "entries", "export_to", "prune", "record",
           "verify_chain", "verify_file", "workspace_view"]
