"""Change capture against real pyiceberg tables, one test per operation pyiceberg writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.catalog import Catalog
from pyiceberg.expressions import EqualTo, GreaterThanOrEqual, In, LessThan
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.types import IntegerType, LongType, NestedField, StringType

from floe_egress.changes import capture
from floe_egress.errors import SourceError
from tests.fixtures.tables import apply, change_rows, people, table_state

KEY = ("id",)


@pytest.fixture
def table(any_catalog: Catalog) -> Table:
    schema = Schema(
        NestedField(1, "id", LongType(), required=True),
        NestedField(2, "email", StringType(), required=False),
        NestedField(3, "score", IntegerType(), required=False),
        identifier_field_ids=[1],
    )
    tbl = any_catalog.create_table("gold.people", schema=schema)
    tbl.append(people(list(range(1, 11))))
    return tbl


def sync_point(tbl: Table) -> tuple[int, dict[Any, Any]]:
    snapshot = tbl.current_snapshot()
    assert snapshot is not None
    return snapshot.snapshot_id, table_state(tbl, KEY)


def ops_of(change_set: Any) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {"insert": [], "update": [], "delete": []}
    for row in change_rows(change_set):
        out[row["_floe_op"]].append(row["id"])
    return {op: sorted(ids) for op, ids in out.items()}


def test_first_sync_is_a_full_plan_with_every_row(table: Table) -> None:
    cs = capture(table, from_snapshot=None, key=KEY)
    assert cs.plan == "full"
    assert cs.counts.inserted == 10
    assert apply({}, cs) == table_state(table, KEY)


def test_same_snapshot_is_a_noop(table: Table) -> None:
    a, _ = sync_point(table)
    cs = capture(table, from_snapshot=a, key=KEY)
    assert cs.plan == "noop"
    assert cs.is_noop
    assert change_rows(cs) == []


def test_append_reads_only_the_added_rows(table: Table) -> None:
    a, before = sync_point(table)
    table.append(people([11, 12]))
    cs = capture(table, from_snapshot=a, key=KEY)
    assert cs.plan == "append"
    assert ops_of(cs) == {"insert": [11, 12], "update": [], "delete": []}
    assert apply(before, cs) == table_state(table, KEY)


def test_overwrite_with_a_filter(table: Table) -> None:
    a, before = sync_point(table)
    table.overwrite(people([2, 3, 20], suffix="-new"), overwrite_filter=LessThan("id", 4))
    cs = capture(table, from_snapshot=a, key=KEY)
    assert cs.plan == "diff"
    assert ops_of(cs) == {"insert": [20], "update": [2, 3], "delete": [1]}
    assert apply(before, cs) == table_state(table, KEY)


def test_delete_with_a_filter(table: Table) -> None:
    a, before = sync_point(table)
    table.delete(delete_filter=GreaterThanOrEqual("id", 8))
    cs = capture(table, from_snapshot=a, key=KEY)
    assert ops_of(cs) == {"insert": [], "update": [], "delete": [8, 9, 10]}
    deleted = [r for r in change_rows(cs) if r["_floe_op"] == "delete"]
    assert deleted[0]["email"] == "u8@example.com", "a delete carries the old row"
    assert apply(before, cs) == table_state(table, KEY)


def test_upsert_spanning_three_snapshots_is_one_update_and_one_insert(table: Table) -> None:
    a, before = sync_point(table)
    n_before = len(table.snapshots())
    table.upsert(people([5, 42], suffix="-v2"), join_cols=["id"])
    assert len(table.snapshots()) - n_before >= 2
    cs = capture(table, from_snapshot=a, key=KEY)
    assert ops_of(cs) == {"insert": [42], "update": [5], "delete": []}
    assert cs.counts.updated == 1 and cs.counts.inserted == 1 and cs.counts.deleted == 0
    assert apply(before, cs) == table_state(table, KEY)


def test_rewrite_of_identical_rows_gives_no_change(table: Table) -> None:
    a, _ = sync_point(table)
    table.overwrite(table.scan().to_arrow())
    cs = capture(table, from_snapshot=a, key=KEY)
    assert cs.plan == "diff"
    assert cs.counts.total == 0
    assert change_rows(cs) == []


def test_insert_then_delete_inside_the_range_is_nothing(table: Table) -> None:
    a, _ = sync_point(table)
    table.append(people([99]))
    table.delete(delete_filter=EqualTo("id", 99))
    cs = capture(table, from_snapshot=a, key=KEY)
    assert cs.counts.total == 0


def test_update_then_revert_inside_the_range_is_nothing(table: Table) -> None:
    a, _ = sync_point(table)
    table.upsert(people([3], suffix="-tmp"), join_cols=["id"])
    table.upsert(people([3]), join_cols=["id"])
    cs = capture(table, from_snapshot=a, key=KEY)
    assert cs.counts.total == 0


def test_added_column_is_projected_and_old_rows_get_null(table: Table) -> None:
    a, before = sync_point(table)
    with table.update_schema() as update:
        update.add_column("plan", StringType())
    rows = people([4, 30]).append_column(
        pa.field("plan", pa.string()), pa.array(["pro", "free"], pa.string())
    )
    # pyiceberg 0.12's upsert cannot compare rows across an added column; overwrite can.
    table.overwrite(rows, overwrite_filter=In("id", [4, 30]))
    cs = capture(table, from_snapshot=a, key=KEY)
    assert "plan" in cs.schema.names
    assert ops_of(cs) == {"insert": [30], "update": [4], "delete": []}
    expected = table_state(table, KEY)
    before_projected = {k: {**r, "plan": None} for k, r in before.items()}
    assert apply(before_projected, cs) == expected


def test_renamed_column_is_matched_by_field_id(table: Table) -> None:
    a, before = sync_point(table)
    with table.update_schema() as update:
        update.rename_column("email", "mail")
    cs_rename_only = capture(table, from_snapshot=a, key=KEY)
    assert cs_rename_only.counts.total == 0
    table.delete(delete_filter=EqualTo("id", 2))
    cs = capture(table, from_snapshot=a, key=KEY)
    assert "mail" in cs.schema.names and "email" not in cs.schema.names
    deleted = [r for r in change_rows(cs) if r["_floe_op"] == "delete"]
    assert deleted == [{"id": 2, "mail": "u2@example.com", "score": 20, "_floe_op": "delete"}]
    renamed_before = {
        k: {"id": r["id"], "mail": r["email"], "score": r["score"]} for k, r in before.items()
    }
    assert apply(renamed_before, cs) == table_state(table, KEY)


def test_dropped_column_is_not_sent_and_not_a_change(table: Table) -> None:
    a, _ = sync_point(table)
    with table.update_schema() as update:
        update.delete_column("score")
    table.overwrite(table.scan().to_arrow())
    cs = capture(table, from_snapshot=a, key=KEY)
    assert "score" not in cs.schema.names
    assert cs.counts.total == 0


def test_widened_column_is_read_with_the_new_type(table: Table) -> None:
    a, before = sync_point(table)
    with table.update_schema() as update:
        update.update_column("score", field_type=LongType())
    table.delete(delete_filter=EqualTo("id", 1))
    cs = capture(table, from_snapshot=a, key=KEY)
    assert cs.schema.field("score").type == pa.int64()
    assert ops_of(cs)["delete"] == [1]
    assert apply(before, cs) == table_state(table, KEY)


def test_branch_is_followed(table: Table) -> None:
    a, before = sync_point(table)
    table.manage_snapshots().create_branch(a, "staging").commit()
    table.append(people([50]), branch="staging")
    table.append(people([60]))
    cs = capture(table, ref="staging", from_snapshot=a, key=KEY)
    assert ops_of(cs) == {"insert": [50], "update": [], "delete": []}
    assert apply(before, cs) == table_state(table, KEY, ref="staging")


def test_tag_is_followed(table: Table) -> None:
    a, _ = sync_point(table)
    table.append(people([70]))
    b = table.current_snapshot()
    assert b is not None
    table.manage_snapshots().create_tag(b.snapshot_id, "release").commit()
    table.append(people([71]))
    cs = capture(table, ref="release", from_snapshot=a, key=KEY)
    assert ops_of(cs)["insert"] == [70]
    assert cs.to_snapshot == b.snapshot_id


def test_unknown_ref_names_the_table_and_known_refs(table: Table) -> None:
    with pytest.raises(
        SourceError, match=r"gold\.people has no branch or tag 'nope' \(refs: main\)"
    ):
        capture(table, ref="nope", from_snapshot=None, key=KEY)


def test_rollback_reverses_the_changes(table: Table) -> None:
    old, old_state = sync_point(table)
    table.upsert(people([1, 77], suffix="-x"), join_cols=["id"])
    table.delete(delete_filter=EqualTo("id", 2))
    a, after_state = sync_point(table)
    table.manage_snapshots().rollback_to_snapshot(old).commit()
    cs = capture(table, from_snapshot=a, key=KEY)
    assert cs.plan == "diff"
    assert ops_of(cs) == {"insert": [2], "update": [1], "delete": [77]}
    assert apply(after_state, cs) == old_state


def test_expired_a_falls_back_to_a_full_plan_with_a_reason(table: Table) -> None:
    a, _ = sync_point(table)
    table.append(people([88]))
    table.maintenance.expire_snapshots().by_id(a).commit()
    cs = capture(table, from_snapshot=a, key=KEY)
    assert cs.plan == "full"
    assert str(a) in cs.reason and "expired" in cs.reason
    assert apply({}, cs) == table_state(table, KEY)


def test_null_and_duplicate_keys_are_counted_and_never_emitted(any_catalog: Catalog) -> None:
    schema = Schema(
        NestedField(1, "id", LongType(), required=False),
        NestedField(2, "email", StringType(), required=False),
    )
    tbl = any_catalog.create_table("gold.dirty", schema=schema)
    tbl.append(pa.table({"id": pa.array([1, 2], pa.int64()), "email": ["a", "b"]}))
    a = tbl.current_snapshot()
    assert a is not None
    tbl.append(
        pa.table(
            {"id": pa.array([3, None, 4, 4], pa.int64()), "email": ["c", "null-key", "d1", "d2"]}
        )
    )
    cs = capture(tbl, from_snapshot=a.snapshot_id, key=KEY)
    assert ops_of(cs) == {"insert": [3], "update": [], "delete": []}
    assert cs.counts.invalid == 3
    # one entry per invalid key, with the number of rows that hold it
    reasons = [(r.reason, r.key, r.rows) for r in cs.invalid_sample]
    assert reasons == [("null_key", {"id": None}, 1), ("duplicate_key", {"id": 4}, 2)]
    full = capture(tbl, from_snapshot=None, key=KEY)
    assert sorted(r["id"] for r in change_rows(full)) == [1, 2, 3]
    assert full.counts.invalid == 3 and full.counts.inserted == 3
    assert [(r.reason, r.key, r.rows) for r in full.invalid_sample] == reasons


def test_table_without_snapshot_is_a_noop(any_catalog: Catalog) -> None:
    tbl = any_catalog.create_table("gold.empty", schema=people([]).schema)
    cs = capture(tbl, from_snapshot=None, key=KEY)
    assert cs.plan == "noop"


def test_replace_only_range_reads_no_data_file(table: Table, tmp_path: Path) -> None:
    from tests.fixtures.iceberg_writers import compact

    a, _ = sync_point(table)
    compact(table)
    compact(table)
    for data_file in tmp_path.rglob("*.parquet"):
        data_file.unlink()
    cs = capture(table, from_snapshot=a, key=KEY)
    assert cs.plan == "replace"
    assert cs.counts.total == 0


def test_positional_deletes_are_applied(table: Table) -> None:
    from tests.fixtures.iceberg_writers import delete_positions

    a, before = sync_point(table)
    delete_positions(table, lambda row: row["id"] in (3, 4))
    cs = capture(table, from_snapshot=a, key=KEY)
    assert cs.plan == "diff"
    assert ops_of(cs) == {"insert": [], "update": [], "delete": [3, 4]}
    assert apply(before, cs) == table_state(table, KEY)


def test_positional_deletes_then_copy_on_write_update(table: Table) -> None:
    from tests.fixtures.iceberg_writers import delete_positions

    delete_positions(table, lambda row: row["id"] == 9)
    a, before = sync_point(table)
    table.overwrite(people([2], suffix="-v2"), overwrite_filter=EqualTo("id", 2))
    cs = capture(table, from_snapshot=a, key=KEY)
    assert ops_of(cs) == {"insert": [], "update": [2], "delete": []}
    assert apply(before, cs) == table_state(table, KEY)


def test_compaction_of_positional_deletes_changes_nothing(table: Table) -> None:
    from tests.fixtures.iceberg_writers import compact, delete_positions

    delete_positions(table, lambda row: row["id"] == 5)
    a, _ = sync_point(table)
    compact(table)
    cs = capture(table, from_snapshot=a, key=KEY)
    assert cs.plan == "replace" and cs.counts.total == 0


def test_equality_deletes_fail_with_the_table_name_and_reason(table: Table) -> None:
    from floe_egress.errors import UnsupportedSourceError
    from tests.fixtures.iceberg_writers import delete_equality

    a, _ = sync_point(table)
    delete_equality(table, pa.table({"id": pa.array([7], pa.int64())}), ["id"])
    with pytest.raises(
        UnsupportedSourceError, match=r"table gold\.people has equality delete files"
    ):
        capture(table, from_snapshot=a, key=KEY)
    with pytest.raises(UnsupportedSourceError, match=r"pyiceberg 0\.12 cannot apply them"):
        capture(table, from_snapshot=None, key=KEY)


def test_compaction_between_changes_is_read_like_any_rewrite(table: Table) -> None:
    from tests.fixtures.iceberg_writers import compact

    a, before = sync_point(table)
    table.append(people([31]))
    compact(table)
    table.delete(delete_filter=EqualTo("id", 1))
    cs = capture(table, from_snapshot=a, key=KEY)
    assert ops_of(cs) == {"insert": [31], "update": [], "delete": [1]}
    assert apply(before, cs) == table_state(table, KEY)


def test_identity_partitioned_table_reads_columns_from_the_files(any_catalog: Catalog) -> None:
    """Iceberg writes `region=eu/` directories; the column's value comes from the file.

    A reader that took hive-style directories for columns would read `score=30` as a
    string of the path, or miss rows whose partition value differs from the directory.
    """
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import IdentityTransform

    schema = Schema(
        NestedField(1, "id", LongType(), required=True),
        NestedField(2, "region", StringType(), required=False),
        NestedField(3, "score", IntegerType(), required=False),
        identifier_field_ids=[1],
    )
    spec = PartitionSpec(
        PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="region"),
        PartitionField(source_id=3, field_id=1001, transform=IdentityTransform(), name="score"),
    )
    tbl = any_catalog.create_table("gold.regional", schema=schema, partition_spec=spec)
    arrow_schema = pa.schema(
        [
            pa.field("id", pa.int64(), nullable=False),
            pa.field("region", pa.string()),
            pa.field("score", pa.int32()),
        ]
    )

    def rows(ids: list[int], region: str, score: int) -> pa.Table:
        return pa.table(
            {"id": ids, "region": [region] * len(ids), "score": [score] * len(ids)},
            schema=arrow_schema,
        )

    tbl.append(pa.concat_tables([rows([1, 2, 3], "eu", 1), rows([4, 5], "us", 2)]))
    a, before = sync_point(tbl)
    assert any("region=" in task.file.file_path for task in tbl.scan().plan_files())

    tbl.overwrite(rows([2], "eu", 7), overwrite_filter=EqualTo("id", 2))
    tbl.delete(delete_filter=EqualTo("id", 4))
    tbl.append(rows([6], "us", 2))
    cs = capture(tbl, from_snapshot=a, key=KEY)
    assert ops_of(cs) == {"insert": [6], "update": [2], "delete": [4]}
    by_id = {row["id"]: row for row in change_rows(cs)}
    assert by_id[2]["score"] == 7 and by_id[2]["region"] == "eu"
    assert by_id[4]["region"] == "us" and by_id[4]["score"] == 2
    assert apply(before, cs) == table_state(tbl, KEY)


def test_deletion_vectors_are_applied_by_the_reader(table: Table, tmp_path: Path) -> None:
    """pyiceberg 0.12 cannot commit a format-v3 table, so a deletion vector cannot reach a
    snapshot here; what can be shown is that the diff's reader applies one to its file,
    exactly as a positional delete file (both are POSITION_DELETES to the planner)."""
    from pyiceberg.manifest import DataFileContent
    from pyiceberg.table import FileScanTask

    from floe_egress.changes.reading import RowReader
    from tests.fixtures.iceberg_writers import live_entries, write_deletion_vector

    data_file = next(
        e.data_file for e in live_entries(table) if e.data_file.content == DataFileContent.DATA
    )
    dv = write_deletion_vector(table.io, f"file://{tmp_path}/dv.puffin", data_file, [0, 4])
    reader = RowReader(table, table.schema())
    whole = reader.read(FileScanTask(data_file)).column("id").to_pylist()
    kept = reader.read(FileScanTask(data_file, delete_files={dv})).column("id").to_pylist()
    assert kept == [k for i, k in enumerate(whole) if i not in (0, 4)]
    assert reader.native_compacts([[FileScanTask(data_file, delete_files={dv})]], KEY) is None


def test_deletes_without_old_rows_carry_only_the_key(table: Table) -> None:
    a, before = sync_point(table)
    table.delete(delete_filter=GreaterThanOrEqual("id", 9))
    table.overwrite(people([2], suffix="-v2"), overwrite_filter=EqualTo("id", 2))
    cs = capture(table, from_snapshot=a, key=KEY, old_rows=False)
    rows = {r["id"]: r for r in change_rows(cs)}
    assert rows[9] == {"id": 9, "email": None, "score": None, "_floe_op": "delete"}
    assert rows[2]["email"] == "u2-v2@example.com", "inserts and updates keep their rows"
    assert apply(before, cs) == table_state(table, KEY)
