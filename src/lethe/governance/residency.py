"""Residency: each workspace's data stays in its region, unless a transfer says otherwise.

A workspace's region is the one set through the API (`lethe_workspaces`), else the
one declared in the policy's `residency:` dataset, else `residency.default`. For every
SQL dataset with a `workspace:` column, one GROUP BY on that column counts each
workspace's rows; a workspace whose region differs from the store's is reported,
unless an active transfer authorises that dataset in that region. Findings carry
workspace ids, names and counts, never row values.

Object and Redis datasets are not checked per workspace: their keys carry no
workspace column, so which workspace an object or key belongs to is unknown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from urllib.parse import urlsplit

from lethe.audit.events import TransferRecorded, TransferRevoked
from lethe.audit.log import AuditLog
from lethe.catalog import Catalog, Finding
from lethe.clock import Clock, parse_instant
from lethe.control.transfers import Transfer, Transfers
from lethe.control.workspaces import WorkspaceRegions
from lethe.defaults import ORG  # organization-level rows: no workspace, so no region
from lethe.errors import SchemaMismatch, StoreError, UsageError
from lethe.policy.conditions import governed_by
from lethe.policy.model import Policy
from lethe.stores.base import TRUE

_SHOWN = 5  # workspace ids named in a summary finding


@dataclass(frozen=True)
class Homes:
    """Each workspace's region and where it came from."""

    regions: Mapping[str, str]
    default: str | None
    findings: tuple[Finding, ...] = ()

    def of(self, workspace: str) -> str | None:
        return self.regions.get(workspace, self.default)


def declared_regions(catalog: Catalog) -> tuple[dict[str, str], list[Finding]]:
    """Workspace id -> region from the policy's `residency:` dataset (checked columns)."""
    residency = catalog.policy.residency
    if residency is None:
        return {}, []
    name = residency.dataset
    try:
        info = catalog.table_of(name)
        id_column = residency.id or catalog.key_of(name)
    except SchemaMismatch:
        return {}, []  # reported as a schema finding of the dataset
    missing = [(path, column) for path, column in (("residency.id", id_column),
                                                   ("residency.region", residency.region))
               if column not in info.columns]
    if missing:
        return {}, [Finding("error", "missing-column", path,
                            f"column {column!r} does not exist in table {info.name!r}")
                    for path, column in missing]
    rows = catalog.store_of(name).select(info.name, [id_column, residency.region], TRUE)
    return {str(ws): str(region).strip() for ws, region in rows
            if ws is not None and region is not None and str(region).strip()}, []


def workspace_homes(catalog: Catalog, preferences: WorkspaceRegions | None) -> Homes:
    """Declared regions overlaid by API preferences (a cleared preference falls back)."""
    residency = catalog.policy.residency
    regions, findings = declared_regions(catalog)
    if preferences is not None:
        regions.update({ws: p.region for ws, p in preferences.all().items() if p.region})
    known = set(catalog.policy.regions)
    for ws, region in sorted(regions.items()):
        if known and region not in known:
            findings.append(Finding("warning", "residency-region", "residency",
                                    f"workspace {ws!r} has region {region!r}, which is not "
                                    "in `regions`"))
    return Homes(regions, residency.default if residency else None, tuple(findings))


def residency_findings(catalog: Catalog, preferences: WorkspaceRegions | None,
                       transfers: Sequence[Transfer], now: datetime) -> list[Finding]:
    """Workspaces' rows held in a store outside their region, one finding per workspace
    and dataset; authorised transfers active at `now` are exempt."""
    policy = catalog.policy
    if policy.residency is None:
        return []
    homes = workspace_homes(catalog, preferences)
    allowed = {(t.workspace, t.dataset, t.to_region) for t in transfers if t.active(now)}
    reader = Replicas(catalog)
    findings = list(homes.findings) + object_replica_findings(catalog, reader)
    findings += transfer_findings(catalog, homes, [t for t in transfers if t.active(now)],
                                  reader)
    for name in catalog.sql_datasets():
        ds = policy.datasets[name]
        store_region = policy.stores[ds.store].region
        if not ds.workspace:
            continue
        try:
            if ds.workspace not in catalog.table_of(name).columns:
                continue  # reported as a missing column
        except SchemaMismatch:
            continue
        findings += archive_findings(catalog, name, homes, allowed, reader)
        if store_region is None:
            continue  # the store's own rows: not checked (its archives are, above)
        counts = catalog.store_of(name).count_by(ds.table or "", ds.workspace, TRUE)
        unknown: dict[str, int] = {}
        for value, rows in sorted(counts.items(), key=lambda item: str(item[0])):
            workspace = str(value)
            if workspace in ("", ORG):
                continue  # org-level rows; empty ones are a workspace leak
            home = homes.of(workspace)
            if home is None:
                unknown[workspace] = rows
            elif home != store_region and (workspace, name, store_region) not in allowed:
                findings.append(Finding(
                    "error", "residency", f"datasets.{name}.store",
                    f"workspace {workspace!r}: {rows} rows of {name} are in store "
                    f"{ds.store!r} (region {store_region!r}), outside the workspace's "
                    f"region {home!r}"))
        if unknown:
            shown = ", ".join(repr(w) for w in list(unknown)[:_SHOWN])
            more = f" and {len(unknown) - _SHOWN} more" if len(unknown) > _SHOWN else ""
            findings.append(Finding(
                "warning", "residency-unknown", f"datasets.{name}.workspace",
                f"{sum(unknown.values())} rows belong to {len(unknown)} workspaces with no "
                f"known region ({shown}{more})"))
    return list(dict.fromkeys(findings))  # a store both archives and objects: one each


def archive_findings(catalog: Catalog, name: str, homes: Homes,
                     allowed: set[tuple[str, str, str]], reader: Replicas) -> list[Finding]:
    """A workspace's rows an `archive` rule moves to a store outside its region, or to a
    store whose bucket replicates them to a region outside it (the rows the rule governs
    now: they go there once old enough); an authorised transfer of the dataset to that
    region covers them."""
    policy = catalog.policy
    ds = policy.datasets[name]
    findings: list[Finding] = []
    for index, rule in enumerate(ds.retention):
        if rule.action != "archive" or rule.to is None or ds.workspace is None:
            continue
        target = policy.stores[rule.to].region
        path = f"datasets.{name}.retention[{index}].to"
        places = [] if target is None else [(f"store {rule.to!r} (region {target!r})", target)]
        found, problems = reader.of(rule.to)
        findings += problems
        for bucket, store, region in found:
            if region is None:
                findings.append(_undeclared(rule.to, bucket))
            else:
                places.append((f"store {rule.to!r}, replicated to bucket {bucket!r} (store "
                               f"{store!r}, region {region!r})", region))
        counts = catalog.store_of(name).count_by(ds.table or "", ds.workspace,
                                                 governed_by(ds, index, policy))
        for value, rows in sorted(counts.items(), key=lambda item: str(item[0])):
            workspace = str(value)
            home = homes.of(workspace)
            if workspace in ("", ORG) or home is None:
                continue
            for where, region in places:
                if region == home or (workspace, name, region) in allowed:
                    continue
                findings.append(Finding(
                    "error", "residency", path,
                    f"workspace {workspace!r}: {rows} rows of {name} are archived to {where} "
                    f"once old enough, outside the workspace's region {home!r}"))
    return findings


def transfer_findings(catalog: Catalog, homes: Homes, active: Sequence[Transfer],
                      reader: Replicas) -> list[Finding]:
    """Transfers whose destination authorises nothing (warnings): the workspace's own
    region, or a region none of the dataset's data goes to — its store, its archives
    and their replicas — so the authorisation on record is not what happens."""
    policy = catalog.policy
    places: dict[str, set[str]] = {}
    findings: list[Finding] = []
    for transfer in active:
        name = transfer.dataset
        if name not in policy.datasets:
            continue
        if name not in places:
            ds = policy.datasets[name]
            regions = {policy.stores[ds.store].region}
            for target in sorted(ds.archive_targets):
                regions.add(policy.stores[target].region)
                regions.update(region for _b, _s, region in reader.of(target)[0])
            places[name] = {r for r in regions if r is not None}
        where = f"transfer {transfer.id} (workspace {transfer.workspace!r}, {name})"
        if transfer.to_region == homes.of(transfer.workspace):
            findings.append(Finding("warning", "residency-transfer", f"datasets.{name}",
                                    f"{where} authorises the workspace's own region "
                                    f"{transfer.to_region!r}: nothing to authorise"))
        elif transfer.to_region not in places[name]:
            findings.append(Finding("warning", "residency-transfer", f"datasets.{name}",
                                    f"{where} authorises region {transfer.to_region!r}, "
                                    f"where no data of {name} goes (its store, archives and "
                                    "their replicas)"))
    return findings


def object_replica_findings(catalog: Catalog, reader: Replicas) -> list[Finding]:
    """Object datasets' stores whose bucket replicates to another region: their objects
    belong to no known workspace, so the copy is reported for the store (a warning), and
    a destination no store declares as an error (its region is unknown)."""
    policy = catalog.policy
    findings: list[Finding] = []
    for store in sorted({policy.datasets[n].store for n in catalog.object_datasets()}):
        region = policy.stores[store].region
        if region is None:
            continue
        found, problems = reader.of(store)
        findings += problems
        for bucket, declared, elsewhere in found:
            if elsewhere is None:
                findings.append(_undeclared(store, bucket))
            elif elsewhere != region:
                findings.append(Finding(
                    "warning", "residency-replica", f"stores.{store}",
                    f"objects of store {store!r} (region {region!r}) are replicated to "
                    f"bucket {bucket!r} (store {declared!r}, region {elsewhere!r})"))
    return findings


def _undeclared(store: str, bucket: str) -> Finding:
    return Finding("error", "residency-replica", f"stores.{store}",
                   f"the bucket of store {store!r} replicates to bucket {bucket!r}, which no "
                   "store of the policy declares: its region, and so whether the data may be "
                   "there, is unknown (declare it as a store with its region)")


class Replicas:
    """Where each store's bucket replicates to, read once per check: every archive rule,
    transfer and object store asks, and each is a GetBucketReplication per bucket."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._buckets: dict[str, list[str] | StoreError | None] = {}
        self._declared = {urlsplit(s.url).netloc: (n, s.region)
                          for n, s in catalog.policy.stores.items() if s.url.startswith("s3://")}

    def _read(self, store: str) -> list[str] | StoreError | None:
        """The store's replica buckets; the error reading them; None: it cannot say."""
        if store not in self._buckets:
            read = getattr(self.catalog.object_store(store), "replica_buckets", None)
            try:
                self._buckets[store] = None if read is None else read()
            except StoreError as exc:
                self._buckets[store] = exc
        return self._buckets[store]

    def of(self, store: str) -> tuple[list[tuple[str, str | None, str | None]], list[Finding]]:
        """(bucket, the store that declares it, its region) for each bucket the store's
        bucket replicates to, following replicas of replicas (none for a store that
        cannot say: a directory); and a warning for each bucket whose rules could not be
        read."""
        found: list[tuple[str, str | None, str | None]] = []
        problems: list[Finding] = []
        todo, seen = [store], {store}
        while todo:
            current = todo.pop(0)
            buckets = self._read(current)
            if isinstance(buckets, StoreError):
                problems.append(Finding("warning", "residency-replica", f"stores.{current}",
                                        f"the replication of store {current!r} could not be "
                                        f"read ({buckets.message}): its replicas are not "
                                        "checked"))
                continue
            for bucket in buckets or ():
                name, region = self._declared.get(bucket, (None, None))
                found.append((bucket, name, region))
                if name is not None and name not in seen:
                    seen.add(name)
                    todo.append(name)
        return found, problems


def parse_until(text: str | None, now: datetime) -> datetime | None:
    """`--until`: a date means through that whole day (UTC); an instant is exact."""
    if text is None:
        return None
    try:
        day = datetime.strptime(text.strip(), "%Y-%m-%d").date()
    except ValueError:
        until = parse_instant(text, "--until")
    else:
        until = datetime.combine(day + timedelta(days=1), time(), UTC)
    if until <= now:
        raise UsageError(f"{text!r} is not in the future", path="--until")
    return until


def record_transfer(transfers: Transfers, audit: AuditLog, clock: Clock, policy: Policy, *,
                    workspace: str, dataset: str, to_region: str, reason: str,
                    until: str | None = None) -> Transfer:
    """Authorise a workspace's dataset in another region, audited."""
    if not workspace.strip() or workspace == ORG:
        raise UsageError("a transfer names one workspace", path="--workspace")
    ds = policy.datasets.get(dataset)
    if ds is None:
        raise UsageError(f"unknown dataset {dataset!r}", path="--dataset")
    if not ds.workspace:
        raise UsageError(f"dataset {dataset!r} has no `workspace:` column, so its residency "
                         "is not checked per workspace", path="--dataset")
    if policy.regions and to_region not in policy.regions:
        raise UsageError(f"region {to_region!r} is not in the policy's `regions`",
                         path="--to-region")
    if not reason.strip():
        raise UsageError("a transfer needs a reason (agreement, ticket)", path="--reason")
    now = clock.now()
    transfer = transfers.record(workspace, dataset, to_region, reason, parse_until(until, now),
                                now, audit.actor)
    audit.append(TransferRecorded(transfer.id, workspace, dataset, to_region,
                                  transfer.until.isoformat() if transfer.until else None,
                                  reason))
    return transfer


def revoke_transfer(transfers: Transfers, audit: AuditLog, clock: Clock,
                    transfer_id: int) -> Transfer:
    """Withdraw an authorisation, audited; `check` reports the data again."""
    transfer = transfers.revoke(transfer_id, clock.now(), audit.actor)
    audit.append(TransferRevoked(transfer.id, transfer.workspace, transfer.dataset,
                                 transfer.to_region))
    return transfer
