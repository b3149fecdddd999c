"""The full plan's first pass (null and repeated keys) by one sort, against DuckDB's."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from pyiceberg.catalog import Catalog

from floe_egress.changes import full


def keys_table(catalog: Catalog, key_type: pa.DataType, values: list[object]) -> object:
    data = pa.table({"k": pa.array(values, key_type), "v": list(range(len(values)))})
    table = catalog.create_table("gold.keys", schema=data.schema)
    half = len(values) // 2
    table.append(data.slice(0, half))  # two files: a key repeated across them too
    table.append(data.slice(half))
    return table


CASES = {
    "int64": (pa.int64(), [5, 1, None, 3, 5, 2, None, 3, 3, 9]),
    "int32": (pa.int32(), [7, -1, 7, None, 0, 2**31 - 1, 2**31 - 1]),
    "date": (pa.date32(), [dt.date(2026, 1, d) for d in (1, 2, 2, 3)] + [None]),
    "timestamp": (
        pa.timestamp("us", tz="UTC"),
        [dt.datetime(2026, 1, 1, s, tzinfo=dt.UTC) for s in (1, 1, 2)] + [None, None],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_sort_finds_what_duckdb_counts(sqlite_catalog: Catalog, case: str) -> None:
    key_type, values = CASES[case]
    table = keys_table(sqlite_catalog, key_type, values)
    snapshot = table.current_snapshot()  # type: ignore[attr-defined]
    reader = table.scan(snapshot_id=snapshot.snapshot_id, selected_fields=("k",))  # type: ignore[attr-defined]
    by_sort = full._integer_key_profile(reader.to_arrow_batch_reader(), "k")
    by_duckdb = full._duckdb_key_profile(
        table.scan(
            snapshot_id=snapshot.snapshot_id, selected_fields=("k",)
        ).to_arrow_batch_reader(),  # type: ignore[attr-defined]
        ("k",),
    )
    assert by_sort[0] == by_duckdb[0] == len(values)
    for mine, theirs in zip(by_sort[1:], by_duckdb[1:], strict=True):
        assert mine.to_pylist() == theirs.to_pylist()
        # the table's own type (DuckDB names UTC "Etc/UTC")
        assert mine.schema.field("k").type == key_type
        assert mine.schema.field("n").type == theirs.schema.field("n").type
    expected_dupes = sorted({v for v in values if v is not None and values.count(v) > 1})  # type: ignore[type-var]
    assert by_sort[2].column("k").to_pylist() == expected_dupes
