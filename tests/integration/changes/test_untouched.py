"""Which unchanged files the diff reads to learn whether they hold a changed key too."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pyiceberg.catalog import Catalog
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.types import LongType, NestedField, StringType

from floe_egress.changes import capture
from floe_egress.changes.diff import ROWS
from floe_egress.changes.files import diff_files
from floe_egress.changes.untouched import UntouchedKeys

KEY = ("id",)


def rows(ids: list[int], tag: str = "v0") -> pa.Table:
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "email": pa.array([f"u{i}.{tag}" for i in ids], pa.string()),
        }
    )


@pytest.fixture
def table(any_catalog: Catalog) -> Table:
    """Five files: ids 0-99, 100-199, ..., 400-499."""
    schema = Schema(
        NestedField(1, "id", LongType(), required=False),
        NestedField(2, "email", StringType(), required=False),
    )
    tbl = any_catalog.create_table("gold.spread", schema=schema)
    for start in range(0, 500, 100):
        tbl.append(rows(list(range(start, start + 100))))
    return tbl


def untouched_for(tbl: Table, a: int) -> UntouchedKeys:
    b = tbl.current_snapshot()
    assert b is not None
    before = tbl.snapshot_by_id(a)
    assert before is not None
    files = diff_files(tbl, before, b, "gold.spread")
    return UntouchedKeys(tbl, b, files.b_manifests, files.added, KEY, tbl.schema())


def test_only_files_whose_bounds_hold_a_changed_key_are_read(table: Table) -> None:
    a = table.current_snapshot()
    assert a is not None
    table.append(rows([5, 450], "new"))  # keys at both ends of the table
    untouched = untouched_for(table, a.snapshot_id)
    keys = pa.table({"id": pa.array([5, 450], pa.int64())})
    # the range 5..450 spans every file; the values themselves lie in two of them
    read = sorted(t.file.record_count for t in untouched._candidates(keys))
    assert read == [100, 100]
    found = untouched(keys).to_pylist()
    assert found == [{"id": 5, ROWS: 1}, {"id": 450, ROWS: 1}]


def test_a_key_between_two_others_is_still_found_in_its_file(table: Table) -> None:
    a = table.current_snapshot()
    assert a is not None
    table.append(rows([5, 250, 450], "dup"))
    cs = capture(table, from_snapshot=a.snapshot_id, key=KEY)
    # each key is now held by two rows: invalid, reported, never sent
    assert cs.counts.invalid == 6
    assert sorted((r.key["id"], r.rows) for r in cs.invalid_sample) == [(5, 2), (250, 2), (450, 2)]


def test_string_keys_are_pruned_by_value_too(any_catalog: Catalog) -> None:
    schema = Schema(NestedField(1, "code", StringType(), required=False))
    tbl = any_catalog.create_table("gold.codes", schema=schema)
    for letter in "abcde":
        tbl.append(pa.table({"code": pa.array([f"{letter}{i:03}" for i in range(50)])}))
    a = tbl.current_snapshot()
    assert a is not None
    tbl.append(pa.table({"code": pa.array(["a001", "e049"])}))
    b = tbl.current_snapshot()
    assert b is not None
    files = diff_files(tbl, a, b, "gold.codes")
    untouched = UntouchedKeys(tbl, b, files.b_manifests, files.added, ("code",), tbl.schema())
    keys = pa.table({"code": pa.array(["a001", "e049"])})
    assert len(untouched._candidates(keys)) == 2
    assert untouched(keys).column(ROWS).to_pylist() == [1, 1]
