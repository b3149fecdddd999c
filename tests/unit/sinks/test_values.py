"""Finding the rows that hold a value a destination refuses, at any depth of a column."""

from __future__ import annotations

import datetime as dt
import math

import pyarrow as pa
import pytest

from floe_egress.sinks.values import Rule, beyond_python, not_finite, nul_bytes, screen

NUL = Rule(nul_bytes, "holds a NUL")
NAN_NESTED = Rule(not_finite, "is not finite", nested_only=True)
YEARS = Rule(beyond_python, "is out of range")


def test_each_refused_value_names_its_row_and_its_path() -> None:
    table = pa.table(
        {
            "id": [1, 2, 3, 4, 5],
            "note": ["a", "b\x00", None, "d", "e"],
            "attrs": pa.array(
                [{"x": [1.0]}, {"x": [2.0]}, None, {"x": [3.0, math.nan]}, {"x": None}],
                pa.struct([("x", pa.list_(pa.float64()))]),
            ),
            "props": pa.array(
                [[("k", "v")], [], None, [], [("k\x00", "v")]], pa.map_(pa.string(), pa.string())
            ),
        }
    )
    assert screen(table, [NUL, NAN_NESTED], {"note": "notes"}) == {
        1: "column notes: holds a NUL",
        3: "column attrs.x[]: is not finite",
        4: "column props{key}: holds a NUL",
    }


def test_rows_are_counted_across_chunks_and_slices() -> None:
    chunk = pa.array([["ok"], ["no\x00"], ["ok", "no\x00"]], pa.list_(pa.string()))
    column = pa.chunked_array([chunk.slice(1), chunk, chunk.slice(0, 1)])
    table = pa.table({"tags": column})
    assert sorted(screen(table, [NUL])) == [0, 1, 3, 4]


def test_nested_only_rules_leave_top_level_values_alone() -> None:
    table = pa.table({"ratio": [math.nan, 1.0], "more": pa.array([[1.0], [math.inf]])})
    assert screen(table, [NAN_NESTED]) == {1: "column more[]: is not finite"}


@pytest.mark.parametrize(
    ("arrow_type", "raw", "refused"),
    [
        (pa.timestamp("us"), 253_402_300_799_999_999, False),  # 9999-12-31T23:59:59.999999
        (pa.timestamp("us"), 253_402_300_800_000_000, True),  # 10000-01-01
        (pa.timestamp("us", tz="UTC"), -62_135_596_800_000_000, False),  # 0001-01-01
        (pa.timestamp("us", tz="UTC"), -62_135_596_800_000_001, True),
        (pa.timestamp("ms"), 253_402_300_800_000, True),
        (pa.timestamp("s"), 253_402_300_799, False),
        (pa.date32(), 2_932_896, False),  # 9999-12-31
        (pa.date32(), 2_932_897, True),
        (pa.date64(), 2_932_897 * 86_400_000, True),
    ],
)
def test_dates_and_timestamps_python_cannot_hold(
    arrow_type: pa.DataType, raw: int, refused: bool
) -> None:
    storage = pa.int32() if arrow_type == pa.date32() else pa.int64()
    values = pa.array([raw], storage).cast(arrow_type)
    table = pa.table({"at": pa.array([{"v": values[0]}], pa.struct([("v", arrow_type)]))})
    assert (0 in screen(table, [YEARS])) is refused
    if not refused:
        assert isinstance(values[0].as_py(), dt.date)
