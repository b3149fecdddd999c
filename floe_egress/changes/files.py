"""Which data files changed between two snapshots, read from metadata only.

A manifest file is immutable, so a manifest listed by both snapshots contributes the
same data files to both: only the manifests listed by one side are opened. Positional
delete files can apply to data files of any manifest, so when either snapshot carries
delete manifests both sides are planned whole (pyiceberg's planner matches deletes to
data files) and files are compared together with the deletes that apply to them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pyiceberg.manifest import DataFileContent, ManifestContent, ManifestFile
from pyiceberg.table import FileScanTask, Table
from pyiceberg.table.snapshots import Snapshot

from floe_egress.errors import UnsupportedSourceError


@dataclass(frozen=True, slots=True)
class FileDiff:
    """Data files live in A but not in B (`removed`) and live in B but not in A (`added`)."""

    removed: tuple[FileScanTask, ...]
    added: tuple[FileScanTask, ...]
    untouched: int
    """Number of data files live in both snapshots (never read)."""
    b_manifests: tuple[ManifestFile, ...] = ()
    """B's manifests (data and deletes), as read for the diff."""


def _task_identity(task: FileScanTask) -> tuple[str, frozenset[str]]:
    return task.file.file_path, frozenset(d.file_path for d in task.delete_files)


def _equality_delete_error(table_name: str) -> UnsupportedSourceError:
    return UnsupportedSourceError(
        f"table {table_name} has equality delete files (written by e.g. Flink upserts or "
        "Spark merge-on-read with equality deletes); pyiceberg 0.12 cannot apply them, so "
        "its rows cannot be read exactly. Rewrite the table's data files (Spark "
        "rewrite_data_files / rewrite_position_delete_files) or switch the writer to "
        "copy-on-write, then run the sync again."
    )


def _has_delete_manifests(manifests: Iterable[ManifestFile]) -> bool:
    return any(m.content == ManifestContent.DELETES for m in manifests)


def _live_tasks_of(table: Table, manifests: Iterable[ManifestFile]) -> list[FileScanTask]:
    tasks: list[FileScanTask] = []
    for manifest in manifests:
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            if entry.data_file.content == DataFileContent.DATA:
                tasks.append(FileScanTask(entry.data_file))
    return tasks


def planned_tasks(table: Table, snapshot: Snapshot, table_name: str) -> list[FileScanTask]:
    try:
        return list(table.scan(snapshot_id=snapshot.snapshot_id).plan_files())
    except ValueError as exc:
        if "equality deletes" in str(exc):
            raise _equality_delete_error(table_name) from None
        raise


def _check_no_equality_deletes(table: Table, manifests: Iterable[ManifestFile], name: str) -> None:
    for manifest in manifests:
        if manifest.content != ManifestContent.DELETES:
            continue
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            if entry.data_file.content == DataFileContent.EQUALITY_DELETES:
                raise _equality_delete_error(name)


def check_readable(table: Table, snapshot: Snapshot, table_name: str) -> None:
    """Raise UnsupportedSourceError when `snapshot` holds equality delete files."""
    _check_no_equality_deletes(table, snapshot.manifests(table.io), table_name)


def diff_files(table: Table, a: Snapshot, b: Snapshot, table_name: str) -> FileDiff:
    """The data files that differ between snapshots `a` and `b` (in either direction)."""
    a_manifests = a.manifests(table.io)
    b_manifests = b.manifests(table.io)
    _check_no_equality_deletes(table, b_manifests, table_name)

    if _has_delete_manifests(a_manifests) or _has_delete_manifests(b_manifests):
        _check_no_equality_deletes(table, a_manifests, table_name)
        a_tasks = planned_tasks(table, a, table_name)
        b_tasks = planned_tasks(table, b, table_name)
    else:
        a_paths = {m.manifest_path for m in a_manifests}
        b_paths = {m.manifest_path for m in b_manifests}
        shared = a_paths & b_paths
        a_tasks = _live_tasks_of(table, (m for m in a_manifests if m.manifest_path not in shared))
        b_tasks = _live_tasks_of(table, (m for m in b_manifests if m.manifest_path not in shared))
        untouched_shared = sum(
            m.existing_files_count + m.added_files_count
            for m in a_manifests
            if m.manifest_path in shared
            and m.existing_files_count is not None
            and m.added_files_count is not None
        )
        return _subtract(a_tasks, b_tasks, untouched_shared, b_manifests)
    return _subtract(a_tasks, b_tasks, 0, b_manifests)


def _subtract(
    a_tasks: list[FileScanTask],
    b_tasks: list[FileScanTask],
    untouched: int,
    b_manifests: list[ManifestFile],
) -> FileDiff:
    a_ids = {_task_identity(t) for t in a_tasks}
    b_ids = {_task_identity(t) for t in b_tasks}
    removed = tuple(t for t in a_tasks if _task_identity(t) not in b_ids)
    added = tuple(t for t in b_tasks if _task_identity(t) not in a_ids)
    both = len(a_ids & b_ids)
    return FileDiff(removed, added, untouched + both, tuple(b_manifests))
