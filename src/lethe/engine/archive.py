"""The `archive` action: rows become compressed JSON-lines chunks in an object store,
verified before the rows are deleted; `restore` brings them back. The chunk format
itself is `lethe.stores.archive_format`.

Per batch, inside the batch's database transaction: the rows are read (locked on
PostgreSQL), written as `CHUNK.jsonl.gz`, a manifest (`CHUNK.manifest.json`: row count,
SHA-256, the keys) is written, the chunk is read back and checked against both, and
only then are the rows deleted. After the transaction commits, `CHUNK.done` marks the
chunk as the rows' only copy. A run killed in between leaves a manifest without its
mark; the next run settles it first (`settle`): if none of its rows is in the table any
more the deletion committed and the mark is written, otherwise the transaction rolled
back, the chunk is an orphan and is removed. So nothing is lost (rows go only after
their chunk verified) and nothing is archived twice (an orphan never survives its rows
being archived again).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from lethe.errors import LetheError, StoreError, UsageError
from lethe.policy.settings import ArchiveStorage
from lethe.runtime import Runtime
from lethe.stores.archive_format import (
    FORMAT,
    ROOT,
    chunk_lines,
    comparable_line,
    decode_rows,
    encode_rows,
    plain_value,
    row_line,
)
from lethe.stores.base import Archive, In
from lethe.stores.objects import ObjectStore

Listing = tuple[list[str], set[str]]  # ArchiveSink.chunk_ids(): manifests, marked done


class ArchivePending(LetheError):
    """Archived chunks of `dataset` cannot be read yet (being restored from a cold class,
    or left unsettled by an interrupted archive run): the work waits for a later run."""

    def __init__(self, message: str, *, path: str, dataset: str) -> None:
        super().__init__(message, path=path)
        self.dataset = dataset


@dataclass
class ArchiveSink:
    """Where one dataset's archive chunks go; remembers the chunks of the open batch."""

    rt: Runtime
    dataset: str
    store: ObjectStore
    pending: list[tuple[str, int, str]] = field(default_factory=list)  # chunk, rows, sha256
    chunks: int = 0

    @property
    def prefix(self) -> str:
        return f"{ROOT}/{self.dataset}/"

    @property
    def settings(self) -> ArchiveStorage | None:
        """The store's archive settings (class, encryption, restore), if any."""
        spec = self.rt.policy.stores.get(self.store.name)
        return None if spec is None else spec.archive

    @property
    def _s3(self) -> Any:
        """The store as S3 (archive settings are refused on any other kind of store)."""
        return self.store

    def thaw(self, chunks: Iterable[str]) -> int:
        """Make these chunks readable: a chunk in a cold class that is neither readable
        nor being restored is asked to be (audited); how many are not readable yet."""
        settings = self.settings
        if settings is None or not settings.cold:
            return 0
        from lethe.audit.events import ArchiveRestoreRequested

        waiting = 0
        for chunk in chunks:
            _class, state = self._s3.thawed(chunk + ".jsonl.gz")
            if state == "frozen":
                self._s3.request_restore(chunk + ".jsonl.gz", settings.restore_tier,
                                         settings.restore_days)
                self.rt.audit.append(ArchiveRestoreRequested(
                    self.dataset, chunk, settings.restore_tier, settings.restore_days))
            waiting += state != "readable"
        return waiting

    def pending_error(self, waiting: int) -> ArchivePending:
        settings = self.settings
        assert settings is not None
        return ArchivePending(
            f"{waiting} archive chunk{'' if waiting == 1 else 's'} of {self.dataset} "
            f"{'is' if waiting == 1 else 'are'} being restored from "
            f"{settings.storage_class} ({settings.restore_tier} retrieval): run again once "
            "S3 has restored them", path=f"stores.{self.store.name}", dataset=self.dataset)

    def write(self, columns: tuple[str, ...], rows: list[tuple[Any, ...]],
              replaces: str | None = None, partition: str | None = None) -> None:
        """Store the rows, then prove the store has them; raises (and so deletes
        nothing) if it does not. `replaces`: the chunk this one supersedes; `partition`:
        the PostgreSQL partition whose drop deletes these rows (settling looks there)."""
        ds = self.rt.policy.datasets[self.dataset]
        key = self.rt.catalog.key_of(self.dataset)
        data = encode_rows(columns, rows)
        digest = hashlib.sha256(data).hexdigest()
        chunk = f"{self.prefix}{self.rt.clock.now():%Y%m%dT%H%M%S}-{digest[:20]}"
        position = columns.index(key)
        manifest: dict[str, Any] = {"format": FORMAT, "dataset": self.dataset, "table": ds.table,
                    "key": key, "columns": list(columns), "rows": len(rows),
                    "sha256": digest, "keys": [plain_value(r[position]) for r in rows],
                    "archived_at": self.rt.clock.now().isoformat()}
        # the columns an erasure finds its rows by, per row: which chunks hold whose rows
        # is known from the manifest, without reading (or restoring) a chunk
        links = {c for c in (*ds.belongs_to.values(), ds.workspace) if c and c != key}
        manifest["links"] = {c: [plain_value(r[columns.index(c)]) for r in rows]
                             for c in sorted(links) if c in columns}
        if replaces is not None:
            manifest["replaces"] = replaces
        if partition is not None:
            manifest["partition"] = partition
        # the manifest first: a chunk is never stored without the note that finds it
        self.store.put(chunk + ".manifest.json", json.dumps(manifest).encode("utf-8"))
        self.store.put(chunk + ".jsonl.gz", data)
        back = self.store.get(chunk + ".jsonl.gz")
        if hashlib.sha256(back).hexdigest() != digest or len(decode_rows(back)) != len(rows):
            raise StoreError("an archive chunk did not read back intact; nothing deleted",
                             path=f"datasets.{self.dataset}")
        self.pending.append((chunk, len(rows), digest))

    def effect(self) -> Archive:
        return Archive(self.write)

    def committed(self) -> None:
        """The batch's transaction committed: its chunks are now the rows' only copy."""
        settings = self.settings
        for chunk, rows, digest in self.pending:
            self.store.put(chunk + ".done", b"")
            if settings is not None and settings.cold:
                # only now to its cold class: a chunk not marked done stays readable, so
                # settling a killed or rolled-back batch can always read it (killed
                # between the mark and the move, it stays in STANDARD: kept, not lost)
                assert settings.storage_class is not None
                self._s3.transition(chunk + ".jsonl.gz", settings.storage_class)
            from lethe.audit.events import ArchiveWritten  # (loaded when one is written)

            self.rt.audit.append(ArchiveWritten(self.dataset, chunk, rows, digest))
            self.chunks += 1
        self.pending.clear()

    def abandon(self) -> None:
        """The batch's transaction rolled back: remove the chunks it wrote (any whose
        rows are still in the table, one that failed its read-back included)."""
        self.pending.clear()
        self.settle()

    def _manifest(self, chunk: str) -> dict[str, Any]:
        try:
            manifest: dict[str, Any] = json.loads(self.store.get(chunk + ".manifest.json"))
        except ValueError:
            raise LetheError("an archive manifest is not JSON",
                             path=f"{chunk}.manifest.json") from None
        return manifest

    def chunk_ids(self) -> Listing:
        """(every chunk with a manifest, those marked done)."""
        manifests, done = [], set()
        for page in self.store.pages(self.prefix):
            for item in page:
                if item.key.endswith(".manifest.json"):
                    manifests.append(item.key[:-len(".manifest.json")])
                elif item.key.endswith(".done"):
                    done.add(item.key[:-len(".done")])
        return sorted(manifests), done

    def settle(self) -> tuple[int, int]:
        """Finish what a killed run left: (chunks marked done, orphan chunks removed)."""
        marked = removed = 0
        ds = self.rt.policy.datasets[self.dataset]
        for chunk, manifest in self.unmarked_chunks():
            keys = tuple(manifest["keys"])
            # Waits for a batch still writing this chunk (its rows are locked) to end, so
            # an archive in flight elsewhere is never mistaken for an orphan.
            # A partition's chunk: its rows are looked for in that partition only (keys
            # need not be unique across partitions), and a dropped partition has none.
            store, where = self.rt.catalog.store_of(self.dataset), In(str(manifest["key"]), keys)
            partition = manifest.get("partition")
            if not keys:
                present = False
            elif isinstance(partition, str):
                present = bool(store.count_in_partition_settled(ds.table or "", partition,
                                                                where))
            else:
                present = self._rolled_back(chunk, manifest, where)
            if present:  # the deletion rolled back: the rows will be archived again
                self.store.delete([chunk + ".jsonl.gz", chunk + ".manifest.json"])
                removed += 1
            else:
                self.pending.append((chunk, int(manifest["rows"]), str(manifest["sha256"])))
                self.committed()
                marked += 1
        return marked, removed

    def _rolled_back(self, chunk: str, manifest: Mapping[str, Any], where: In) -> bool:
        """Did the batch that wrote this row-batch chunk roll back (or die before its
        delete)? Reading the rows settled comes first: it waits for a batch still
        holding them (a batch locks its rows before it writes the manifest), so a chunk
        still being written is never taken for an orphan. Then, a batch deletes all its
        rows or none: rolled back, its rows are still in the table, identical, but for
        what the application changed since; committed, none are, but for rows the
        application wrote again. So: more than half of them there means it rolled back.
        (Deleting a committed chunk loses its rows; keeping a rolled-back one only
        archives them twice, so the doubt goes to keeping.) Rows are compared whole,
        not by key: keys need not be unique (a partitioned table's `id`), and a row
        that only shares a key would make a committed chunk look like an orphan."""
        columns = [str(c) for c in manifest["columns"]]
        table = self.rt.policy.datasets[self.dataset].table or ""
        rows = self.rt.catalog.store_of(self.dataset).select_settled(table, columns, where)
        data = chunk + ".jsonl.gz"
        if not any(item.key == data for page in self.store.pages(data) for item in page):
            return True  # its batch ended without storing it: nothing was deleted for it
        archived = {comparable_line(line) for line in chunk_lines(self.store.get(data))}
        there = archived & {comparable_line(row_line(columns, row)) for row in rows}
        return 2 * len(there) > len(archived)

    def retire_replaced(self) -> int:
        """Delete chunks a done chunk replaces (an erasure killed between writing the
        replacement and deleting the original leaves both). Reads every manifest, so it
        runs where every chunk is read anyway: before erasing and before restoring."""
        retired = 0
        manifests, done = self.chunk_ids()
        for chunk in manifests:
            old = self._manifest(chunk).get("replaces") if chunk in done else None
            if isinstance(old, str) and old in manifests:
                self.store.delete([old + ext for ext in (".jsonl.gz", ".manifest.json",
                                                          ".done")])
                retired += 1
        return retired

    def erase(self, column: str, owners: Mapping[str, str],
              held: Callable[[Mapping[str, Any]], bool] = lambda _row: False, *,
              dry: bool = False, settled: bool = False) -> dict[str, int]:
        """Take out of every archived chunk the rows whose `column` (as text) is a key of
        `owners`; returns the rows taken per owner. The rows that stay go to a new chunk,
        verified and marked done, naming the one it replaces, before the old one is
        deleted: killed in between, both exist and `retire_replaced` finishes it.
        A chunk an archive run wrote and did not mark (killed after its batch, or
        still writing it) may be those rows' only copy: until the dataset's next archive
        run settles it, the erasure waits (`ArchivePending`) rather than certify rows
        erased that such a chunk still holds. (Settling here could race with an archive
        run or another erasure writing a chunk; only archive runs settle.)
        `dry`: change nothing, count what would be taken (a plan; unsettled chunks are
        not counted); with `settled`, a dry count waits for them too (an erasure's
        baselines: counted before its first row goes, they must count every row).

        A manifest that names each row's `column` says which chunks hold owners' rows:
        only those are read. In a cold storage class they are restored first: raises
        `ArchivePending` (having asked S3 for them) until they are readable; a dry count
        reads the manifests only."""
        if not dry:
            self.retire_replaced()
        listing = self.chunk_ids()  # once: for what waits, and for what is read
        if not dry or settled:
            unsettled = self.unsettled(column, owners, listing)
            if unsettled:
                raise ArchivePending(
                    f"{unsettled} archive chunk{'' if unsettled == 1 else 's'} of "
                    f"{self.dataset} that an interrupted archive run left unsettled may "
                    "hold these rows: the dataset's next archive run settles them "
                    f"(`lethe run --dataset {self.dataset}`); run again after it",
                    path=f"stores.{self.store.name}", dataset=self.dataset)
        taken: dict[str, int] = {}
        hit: list[tuple[str, dict[str, Any]]] = []
        done = list(self.done_chunks(listing))
        replaced = {m.get("replaces") for _, m in done}  # (dry: not retired; not twice)
        for chunk, manifest in done:
            if chunk in replaced:
                continue
            named = _named(manifest, column)
            if named is not None:
                rows = [r for r in named if str(r.get(column)) in owners]
                if not rows:
                    continue
                if dry and self.settings is not None and self.settings.cold:
                    for row in rows:  # counted from the manifest: no retrieval for a plan
                        if not held(row):
                            mark = owners[str(row.get(column))]
                            taken[mark] = taken.get(mark, 0) + 1
                    continue
            hit.append((chunk, manifest))
        waiting = 0 if dry else self.thaw(chunk for chunk, _ in hit)
        if waiting:
            raise self.pending_error(waiting)
        for chunk, manifest in hit:
            hits: list[dict[str, Any]] = []
            keep: list[dict[str, Any]] = []
            for row in decode_rows(self.store.get(chunk + ".jsonl.gz")):
                taking = str(row.get(column)) in owners and not held(row)
                (hits if taking else keep).append(row)
            if not hits:
                continue
            if not dry:
                self._take(chunk, manifest, keep)
            for row in hits:
                mark = owners[str(row.get(column))]
                taken[mark] = taken.get(mark, 0) + 1
        return taken

    def unmarked_chunks(self, listing: Listing | None = None
                        ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Chunks an archive run wrote without marking them done (from `listing`, a
        `chunk_ids()` already read, if given). An erasure's replacement it did not mark
        is not one of them: that erasure is still writing it, or died, and its original
        (or the chunk a later erasure made of it) holds the rows. Marked, it would bring
        back rows erased since; removed while still being written, the erasure would lose
        its kept rows. So nothing settles it, and nothing waits for it."""
        manifests, done = listing or self.chunk_ids()
        for chunk in manifests:
            if chunk not in done:
                manifest = self._manifest(chunk)
                if not manifest.get("replaces"):
                    yield chunk, manifest

    def unsettled(self, column: str | None = None, owners: Mapping[str, str] = {},
                  listing: Listing | None = None) -> int:
        """Unmarked chunks (all of them, or with `column`, those that may hold `owners`'
        rows: by the manifest's links; a manifest that does not name `column`: any)."""
        unsettled = 0
        for _chunk, manifest in self.unmarked_chunks(listing):
            named = None if column is None else _named(manifest, column)
            if column is None or named is None \
                    or any(str(r.get(column)) in owners for r in named):
                unsettled += 1
        return unsettled

    def _take(self, chunk: str, manifest: Mapping[str, Any], keep: list[dict[str, Any]]
              ) -> None:
        """Replace a chunk by one holding only `keep` (none: just delete it)."""
        if keep:
            columns = tuple(str(c) for c in manifest["columns"])
            self.write(columns, [tuple(r.get(c) for c in columns) for r in keep],
                       replaces=chunk)
            self.committed()
        self.store.delete([chunk + ext for ext in (".jsonl.gz", ".manifest.json", ".done")])

    def done_chunks(self, listing: Listing | None = None
                    ) -> Iterator[tuple[str, dict[str, Any]]]:
        manifests, done = listing or self.chunk_ids()
        for chunk in manifests:
            if chunk in done:
                yield chunk, self._manifest(chunk)


def _named(manifest: Mapping[str, Any], column: str) -> list[dict[str, Any]] | None:
    """Each archived row's `column` (and the other link columns) as the manifest names
    them; None when it does not (a chunk written before manifests named them)."""
    links = manifest.get("links") or {}
    key = str(manifest.get("key"))
    if column != key and column not in links:
        return None
    named: dict[str, list[Any]] = {c: list(v) for c, v in links.items()}
    named[key] = list(manifest.get("keys") or [])
    count = len(named[key])
    return [{c: values[i] for c, values in named.items()} for i in range(count)]


def archive_sink(rt: Runtime, dataset: str, rule: int) -> ArchiveSink:
    target = rt.policy.datasets[dataset].retention[rule].to
    if target is None:
        raise LetheError("action archive needs `to:`", path=f"datasets.{dataset}")
    return ArchiveSink(rt, dataset, rt.catalog.object_store(target))


@dataclass(frozen=True)
class Restored:
    dataset: str
    chunks: int
    restored: int
    present: int  # rows already in the table (not overwritten)
    pending: int = 0  # chunks in a cold class being restored: run again for their rows
    # chunks an interrupted archive run left unsettled (not read: the next archive run
    # settles them, then a restore reads them)
    unsettled: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "chunks": self.chunks, "restored": self.restored,
                "present": self.present, "pending": self.pending,
                "unsettled": self.unsettled}


def archived_chunks(rt: Runtime, dataset: str) -> list[dict[str, Any]]:
    """Every done chunk of the dataset's archives: where, how many rows, when, its
    storage class and whether it can be read (`readable`, `restoring`, `frozen`)."""
    if dataset not in rt.policy.datasets:
        raise UsageError(f"unknown dataset {dataset!r}", path="dataset")
    ds = rt.policy.datasets[dataset]
    found = []
    for target in sorted(ds.archive_targets):
        sink = ArchiveSink(rt, dataset, rt.catalog.object_store(target))
        for chunk, manifest in sink.done_chunks():
            thawed = getattr(sink.store, "thawed", None)
            storage_class, state = ("STANDARD", "readable") if thawed is None \
                else thawed(chunk + ".jsonl.gz")
            found.append({"store": target, "chunk": chunk, "rows": manifest.get("rows"),
                          "archived_at": manifest.get("archived_at"),
                          "storage_class": storage_class, "state": state})
    return found


def restore(rt: Runtime, dataset: str) -> Restored:
    """Put a dataset's archived rows back; rows whose key is in the table are left as
    they are. Every chunk is checked against its manifest first. Chunks in a cold class
    are asked to be restored (once) and counted `pending` until S3 has: a later run
    restores their rows (the others' are back already, and stay as they are)."""
    if dataset not in rt.policy.datasets:
        raise UsageError(f"unknown dataset {dataset!r}", path="dataset")
    ds = rt.policy.datasets[dataset]
    rules = [i for i, r in enumerate(ds.retention) if r.action == "archive"]
    if not rules:
        raise LetheError("the dataset has no archive rule", path=f"datasets.{dataset}")
    rt.prepare()
    chunks = restored = present = pending = unsettled = 0
    targets = dict.fromkeys(ds.retention[i].to for i in rules)
    store = rt.catalog.row_store(ds.store)
    for target in targets:
        assert target is not None
        sink = ArchiveSink(rt, dataset, rt.catalog.object_store(target))
        sink.retire_replaced()  # never restore rows an erasure took out of a chunk
        listing = sink.chunk_ids()
        unsettled += sink.unsettled(listing=listing)
        for chunk, manifest in sink.done_chunks(listing):
            if sink.thaw([chunk]):
                pending += 1
                continue
            data = sink.store.get(chunk + ".jsonl.gz")
            if hashlib.sha256(data).hexdigest() != manifest["sha256"]:
                raise LetheError("an archive chunk does not match its manifest",
                                 path=f"{chunk}.jsonl.gz")
            rows = decode_rows(data)
            done, kept = store.insert_missing(ds.table or "", str(manifest["key"]), rows)
            chunks, restored, present = chunks + 1, restored + done, present + kept
    return Restored(dataset, chunks, restored, present, pending, unsettled)
