"""The snapshot writers of tests/fixtures/iceberg_writers.py against real pyiceberg tables.

Each helper must commit what it says (operation, files, sequence numbers), leave the table with
the rows a user expects, and leave metadata any reader accepts: the table reloads from the
catalog and pyiceberg can append to it afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.expressions import AlwaysTrue, And, EqualTo, GreaterThanOrEqual, In
from pyiceberg.io.pyarrow import ArrowScan, _read_deletes
from pyiceberg.manifest import DataFileContent, FileFormat, ManifestContent
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import FileScanTask, Table
from pyiceberg.table.snapshots import Operation
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import IntegerType, LongType, NestedField, StringType

from tests.fixtures.iceberg_writers import (
    DELETE_FILE_PATH_FIELD_ID,
    RowPredicate,
    compact,
    delete_equality,
    delete_positions,
    live_entries,
    write_deletion_vector,
)

SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=True),
    NestedField(2, "region", StringType(), required=False),
    NestedField(3, "score", IntegerType(), required=False),
    identifier_field_ids=[1],
)
BY_REGION = PartitionSpec(
    PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="region")
)
ARROW = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("region", pa.string()),
        pa.field("score", pa.int32()),
    ]
)
Row = dict[str, Any]


def people(ids: list[int], *, score_offset: int = 0) -> pa.Table:
    return pa.table(
        {
            "id": ids,
            "region": ["eu" if i % 2 else "us" for i in ids],
            "score": [i * 10 + score_offset for i in ids],
        },
        schema=ARROW,
    )


def rows_of(table: Table, snapshot_id: int | None = None) -> list[Row]:
    return sorted(table.scan(snapshot_id=snapshot_id).to_arrow().to_pylist(), key=lambda r: r["id"])


def data_paths(table: Table, branch: str = "main") -> set[str]:
    return {
        e.data_file.file_path
        for e in live_entries(table, branch)
        if e.data_file.content == DataFileContent.DATA
    }


def delete_entries(table: Table, content: DataFileContent) -> list[Any]:
    return [e for e in live_entries(table) if e.data_file.content == content]


def operation_of(table: Table, snapshot_id: int) -> Operation:
    snapshot = table.snapshot_by_id(snapshot_id)
    assert snapshot is not None
    assert snapshot.summary is not None
    return snapshot.summary.operation


def summary_of(table: Table, snapshot_id: int) -> dict[str, str]:
    snapshot = table.snapshot_by_id(snapshot_id)
    assert snapshot is not None
    assert snapshot.summary is not None
    return dict(snapshot.summary.additional_properties)


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    cat = load_catalog(
        "t", type="sql", uri=f"sqlite:///{tmp_path}/c.db", warehouse=f"file://{tmp_path}/wh"
    )
    cat.create_namespace("ns")
    return cat


SPECS = {"unpartitioned": PartitionSpec(), "by_region": BY_REGION}


def make_table(catalog: Catalog, spec: PartitionSpec) -> Table:
    """People 1..12 in three appends (three data files, six when partitioned by region)."""
    tbl = catalog.create_table("ns.people", schema=SCHEMA, partition_spec=spec)
    for ids in ([1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]):
        tbl.append(people(ids))
    return tbl


@pytest.fixture(params=list(SPECS))
def table(request: pytest.FixtureRequest, catalog: Catalog) -> Table:
    return make_table(catalog, SPECS[request.param])


def reload(catalog: Catalog) -> Table:
    return catalog.load_table("ns.people")


def delete_manifest_paths(table: Table) -> list[str]:
    snapshot = table.current_snapshot()
    assert snapshot is not None
    return [
        m.manifest_path
        for m in snapshot.manifests(table.io)
        if m.content == ManifestContent.DELETES
    ]


def avro_says_deletes(table: Table, manifest_path: str) -> bool:
    """The manifest's Avro file metadata holds content=deletes (avro strings: zigzag length)."""
    with table.io.new_input(manifest_path).open() as f:
        header = f.read(4096)
    return b"\x0econtent\x0edeletes" in header


# --------------------------------------------------------------------------------------------
# compact
# --------------------------------------------------------------------------------------------


def test_compact_commits_replace_with_same_rows_and_new_files(
    table: Table, catalog: Catalog
) -> None:
    before_rows = rows_of(table)
    before_files = data_paths(table)
    parent = table.current_snapshot()
    assert parent is not None
    assert parent.sequence_number is not None

    snapshot_id = compact(table)

    snapshot = table.current_snapshot()
    assert snapshot is not None
    assert snapshot.snapshot_id == snapshot_id
    assert snapshot.parent_snapshot_id == parent.snapshot_id
    assert operation_of(table, snapshot_id) == Operation.REPLACE
    assert rows_of(table) == before_rows
    after_files = data_paths(table)
    assert after_files.isdisjoint(before_files)
    partitioned = not table.spec().is_unpartitioned()
    assert len(after_files) == (2 if partitioned else 1)
    summary = summary_of(table, snapshot_id)
    assert summary["total-records"] == "12"
    assert summary["deleted-data-files"] == str(len(before_files))
    assert summary["total-data-files"] == str(len(after_files))
    # The new file is newer than everything it replaced.
    assert {e.sequence_number for e in live_entries(table)} == {snapshot.sequence_number}
    assert snapshot.sequence_number == parent.sequence_number + 1

    reloaded = reload(catalog)
    assert rows_of(reloaded) == before_rows
    reloaded.append(people([13]))
    assert [r["id"] for r in rows_of(reloaded)] == list(range(1, 14))
    # The old snapshot still reads the old files.
    assert rows_of(reloaded, parent.snapshot_id) == before_rows


def test_compact_applies_and_removes_position_deletes(table: Table, catalog: Catalog) -> None:
    delete_positions(table, lambda r: r["id"] in {2, 7, 11})
    expected = rows_of(table)
    assert delete_entries(table, DataFileContent.POSITION_DELETES)

    snapshot_id = compact(table)

    assert operation_of(table, snapshot_id) == Operation.REPLACE
    assert rows_of(table) == expected
    assert delete_entries(table, DataFileContent.POSITION_DELETES) == []
    summary = summary_of(table, snapshot_id)
    assert summary["total-delete-files"] == "0"
    assert summary["total-position-deletes"] == "0"
    assert summary["total-records"] == "9"
    assert rows_of(reload(catalog)) == expected


def test_compact_on_branch_leaves_main_alone(table: Table) -> None:
    main = table.current_snapshot()
    assert main is not None
    table.manage_snapshots().create_branch(main.snapshot_id, "dev").commit()
    table.append(people([20, 21]), branch="dev")
    main_files = data_paths(table)

    snapshot_id = compact(table, branch="dev")

    dev = table.snapshot_by_name("dev")
    assert dev is not None
    assert dev.snapshot_id == snapshot_id
    assert operation_of(table, snapshot_id) == Operation.REPLACE
    assert table.current_snapshot() == main
    assert data_paths(table) == main_files
    assert [r["id"] for r in rows_of(table, snapshot_id)] == [*range(1, 13), 20, 21]


def test_compact_refuses_equality_deletes(table: Table) -> None:
    delete_equality(table, pa.table({"id": [3], "region": ["eu"]}), ["id", "region"])
    with pytest.raises(ValueError, match="equality deletes"):
        compact(table)


# --------------------------------------------------------------------------------------------
# delete_positions
# --------------------------------------------------------------------------------------------

PREDICATES: list[tuple[str, RowPredicate, Callable[[Row], bool]]] = [
    ("callable", lambda r: r["id"] % 3 == 0, lambda r: r["id"] % 3 == 0),
    ("expression", GreaterThanOrEqual("id", 10), lambda r: r["id"] >= 10),
    ("in", In("id", {1, 6, 12}), lambda r: r["id"] in {1, 6, 12}),
    (
        "and",
        And(EqualTo("region", "eu"), GreaterThanOrEqual("score", 50)),
        lambda r: r["region"] == "eu" and r["score"] >= 50,
    ),
    ("string", "region = 'us' and id < 5", lambda r: r["region"] == "us" and r["id"] < 5),
]


@pytest.mark.parametrize(
    ("predicate", "expected_deleted"),
    [pytest.param(p, e, id=name) for name, p, e in PREDICATES],
)
def test_delete_positions_removes_matching_rows_only(
    table: Table,
    catalog: Catalog,
    predicate: RowPredicate,
    expected_deleted: Callable[[Row], bool],
) -> None:
    before = rows_of(table)
    deleted = [r for r in before if expected_deleted(r)]
    kept = [r for r in before if not expected_deleted(r)]
    before_files = data_paths(table)
    parent = table.current_snapshot()
    assert parent is not None
    assert parent.sequence_number is not None

    snapshot_id = delete_positions(table, predicate)

    assert operation_of(table, snapshot_id) == Operation.DELETE
    assert rows_of(table) == kept
    assert rows_of(table, parent.snapshot_id) == before
    # Merge-on-read: data files untouched, one delete file per data file that lost rows.
    assert data_paths(table) == before_files
    entries = delete_entries(table, DataFileContent.POSITION_DELETES)
    referenced = set()
    for entry in entries:
        f = entry.data_file
        assert f.file_format == FileFormat.PARQUET
        assert entry.sequence_number == parent.sequence_number + 1
        assert entry.snapshot_id == snapshot_id
        # Full file_path bounds: the file references exactly one data file.
        lower = f.lower_bounds[DELETE_FILE_PATH_FIELD_ID]
        assert lower == f.upper_bounds[DELETE_FILE_PATH_FIELD_ID]
        referenced.add(lower.decode())
    assert referenced <= before_files
    assert len(referenced) == len(entries)
    assert sum(e.data_file.record_count for e in entries) == len(deleted)
    summary = summary_of(table, snapshot_id)
    assert summary["added-position-deletes"] == str(len(deleted))
    assert summary["total-records"] == "12"  # data files' rows; deletes are counted apart
    assert summary["total-position-deletes"] == str(len(deleted))
    paths = delete_manifest_paths(table)
    assert len(paths) == 1
    assert avro_says_deletes(table, paths[0])

    # The deletes do not apply to data appended afterwards, even with the same ids.
    reloaded = reload(catalog)
    assert rows_of(reloaded) == kept
    again = people([r["id"] for r in deleted], score_offset=1)
    reloaded.append(again)
    assert rows_of(reloaded) == sorted(kept + again.to_pylist(), key=lambda r: r["id"])


def test_delete_positions_twice_does_not_delete_twice(table: Table) -> None:
    first = delete_positions(table, In("id", {2, 3}))
    second = delete_positions(table, In("id", {3, 4, 5}))

    assert [r["id"] for r in rows_of(table)] == [1, *range(6, 13)]
    assert summary_of(table, first)["added-position-deletes"] == "2"
    assert summary_of(table, second)["added-position-deletes"] == "2"  # 3 was already gone
    assert summary_of(table, second)["total-position-deletes"] == "4"


def test_delete_positions_after_schema_change(table: Table, catalog: Catalog) -> None:
    with table.update_schema() as update:
        update.rename_column("score", "points")
    table = reload(catalog)

    delete_positions(table, GreaterThanOrEqual("points", 100))

    assert [(r["id"], r["points"]) for r in rows_of(table)] == [(i, i * 10) for i in range(1, 10)]


def test_delete_positions_without_match_raises(table: Table) -> None:
    snapshot = table.current_snapshot()
    with pytest.raises(ValueError, match="no live row"):
        delete_positions(table, EqualTo("id", 99))
    assert table.current_snapshot() == snapshot


# --------------------------------------------------------------------------------------------
# delete_equality
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "keys", "fields"),
    [
        pytest.param("unpartitioned", pa.table({"id": [2, 5]}), ["id"], id="unpartitioned-id"),
        pytest.param(
            "unpartitioned",
            pa.table({"region": ["us", "eu"], "id": [2, 5]}),
            ["id", "region"],
            id="unpartitioned-id-region",
        ),
        pytest.param(
            "by_region",
            pa.table({"region": ["us", "eu"], "id": [2, 5]}),
            ["id", "region"],
            id="by_region-id-region",
        ),
    ],
)
def test_delete_equality_commits_a_file_pyiceberg_refuses(
    catalog: Catalog, spec: str, keys: pa.Table, fields: list[str]
) -> None:
    table = make_table(catalog, SPECS[spec])
    partitioned = spec == "by_region"
    parent = table.current_snapshot()
    assert parent is not None
    assert parent.sequence_number is not None
    before = rows_of(table)

    snapshot_id = delete_equality(table, keys, fields)

    assert operation_of(table, snapshot_id) == Operation.DELETE
    entries = delete_entries(table, DataFileContent.EQUALITY_DELETES)
    assert len(entries) == (2 if partitioned else 1)
    field_ids = sorted(table.schema().find_field(n).field_id for n in fields)
    for entry in entries:
        assert sorted(entry.data_file.equality_ids or []) == field_ids
        assert entry.sequence_number == parent.sequence_number + 1
    assert sum(e.data_file.record_count for e in entries) == 2
    summary = summary_of(table, snapshot_id)
    assert summary["added-equality-deletes"] == "2"
    assert summary["total-equality-deletes"] == "2"
    assert all(avro_says_deletes(table, p) for p in delete_manifest_paths(table))

    with pytest.raises(ValueError, match="does not yet support equality deletes"):
        table.scan().to_arrow()
    reloaded = reload(catalog)
    with pytest.raises(ValueError, match="does not yet support equality deletes"):
        reloaded.scan().to_arrow()
    # The metadata stays writable, and the snapshot before the delete stays readable.
    reloaded.append(people([13]))
    assert rows_of(reloaded, parent.snapshot_id) == before


def test_delete_equality_on_partitioned_table_needs_partition_columns(catalog: Catalog) -> None:
    table = make_table(catalog, BY_REGION)
    snapshot = table.current_snapshot()
    with pytest.raises(ValueError, match="partition source columns"):
        delete_equality(table, pa.table({"id": [2]}), ["id"])
    assert table.current_snapshot() == snapshot


# --------------------------------------------------------------------------------------------
# concurrency and branches
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "write",
    [
        pytest.param(compact, id="compact"),
        pytest.param(lambda t: delete_positions(t, EqualTo("id", 1)), id="delete_positions"),
        pytest.param(
            lambda t: delete_equality(t, pa.table({"id": [1]}), ["id"]), id="delete_equality"
        ),
    ],
)
def test_commit_from_stale_table_fails(catalog: Catalog, write: Callable[[Table], int]) -> None:
    table = make_table(catalog, PartitionSpec())
    stale = reload(catalog)
    table.append(people([13]))

    with pytest.raises(CommitFailedException):
        write(stale)
    assert [r["id"] for r in rows_of(reload(catalog))] == list(range(1, 14))


def test_delete_positions_on_branch_leaves_main_alone(table: Table) -> None:
    main = table.current_snapshot()
    assert main is not None
    table.manage_snapshots().create_branch(main.snapshot_id, "dev").commit()

    snapshot_id = delete_positions(table, In("id", {4, 5}), branch="dev")

    dev = table.snapshot_by_name("dev")
    assert dev is not None
    assert dev.snapshot_id == snapshot_id
    assert table.current_snapshot() == main
    assert [r["id"] for r in rows_of(table)] == list(range(1, 13))
    assert [r["id"] for r in rows_of(table, snapshot_id)] == [1, 2, 3, *range(6, 13)]


# --------------------------------------------------------------------------------------------
# deletion vectors: pyiceberg 0.12 reads them but cannot commit a v3 table
# --------------------------------------------------------------------------------------------


def test_pyiceberg_cannot_create_v3_tables(catalog: Catalog) -> None:
    with pytest.raises(NotImplementedError, match="Writing V3 is not yet supported"):
        catalog.create_table("ns.v3", schema=SCHEMA, properties={"format-version": "3"})


@pytest.mark.parametrize(
    "positions",
    [[0], [1, 3], [0, 1, 2, 3], [3, 2**32 + 7, 2**33]],
    ids=["one", "two", "all", "beyond-32-bits"],
)
def test_deletion_vector_read_back_by_pyiceberg(
    table: Table, tmp_path: Path, positions: list[int]
) -> None:
    data_file = next(
        e.data_file for e in live_entries(table) if e.data_file.content == DataFileContent.DATA
    )
    dv = write_deletion_vector(table.io, f"file://{tmp_path}/dv.puffin", data_file, positions)

    assert dv.file_format == FileFormat.PUFFIN
    assert dv.record_count == len(positions)
    read = _read_deletes(table.io, dv)
    assert list(read) == [data_file.file_path]
    assert read[data_file.file_path].to_pylist() == positions

    in_file = [p for p in positions if p < data_file.record_count]
    scan = ArrowScan(table.metadata, table.io, table.schema(), row_filter=AlwaysTrue())
    full = scan.to_table([FileScanTask(data_file)]).to_pylist()
    with_dv = scan.to_table([FileScanTask(data_file, delete_files={dv})]).to_pylist()
    assert with_dv == [r for i, r in enumerate(full) if i not in in_file]
