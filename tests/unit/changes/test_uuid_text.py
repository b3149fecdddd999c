"""UUIDs become their canonical text, exactly as Python's uuid module writes them."""

from __future__ import annotations

import uuid

import pyarrow as pa

from floe_egress.changes.source import uuids_as_text

VALUES = [uuid.uuid4() for _ in range(9)] + [None, uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)]


def _uuid_array(values: list[uuid.UUID | None]) -> pa.ExtensionArray:
    storage = pa.array([v.bytes if v else None for v in values], pa.binary(16))
    return pa.ExtensionArray.from_storage(pa.uuid(), storage)


def _text(values: list[uuid.UUID | None]) -> list[str | None]:
    return [str(v) if v else None for v in values]


def test_top_level_uuids_with_nulls_and_slices() -> None:
    table = pa.table({"id": _uuid_array(VALUES), "n": list(range(len(VALUES)))})
    out = uuids_as_text(table)
    assert out.schema.field("id").type == pa.string()
    assert out.column("id").to_pylist() == _text(VALUES)
    assert out.column("n").to_pylist() == list(range(len(VALUES)))
    for start in (1, 3, 9, 10):
        sliced = uuids_as_text(table.slice(start, 5))
        assert sliced.column("id").to_pylist() == _text(VALUES[start : start + 5])


def test_nested_uuids_and_record_batches() -> None:
    values = _uuid_array(VALUES[:4])
    nested = pa.StructArray.from_arrays([values, pa.array([1, 2, 3, 4])], names=["ref", "n"])
    batch = pa.RecordBatch.from_arrays([nested], names=["s"])
    out = uuids_as_text(batch)
    assert out.schema.field("s").type == pa.struct([("ref", pa.string()), ("n", pa.int64())])
    assert [r["ref"] for r in out.column("s").to_pylist()] == _text(VALUES[:4])


def test_tables_without_uuids_are_returned_as_they_are() -> None:
    table = pa.table({"id": [1, 2]})
    assert uuids_as_text(table) is table
