"""Reading a destination table back for `verify`: each database gives back the rows as
they were before they were sent, under their table names and types, so they hash as the
table's rows do."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from floe_egress.changes.digest import row_hashes
from floe_egress.changes.model import OP_COLUMN
from floe_egress.sinks.base import ReadBackSink
from tests.integration.sinks_db.conftest import Db, SinkFactory, changes, send
from tests.integration.sinks_db.test_mapping_types import NULL_ROW, TYPED, TYPED_ROW

pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")

SCHEMA = TYPED.append(pa.field("score", pa.float32())).append(
    pa.field("local_at", pa.timestamp("us"))
)
ROWS = [
    {**TYPED_ROW, "score": 0.1, "local_at": dt.datetime(2026, 1, 2, 3, 4, 5, 678901)},
    {**NULL_ROW, "score": None, "local_at": None},
    {**TYPED_ROW, "id": 3, "score": -1.5, "name": "", "blob": b""},
]
MAPPING = {name: f"dst_{name}" if name != "id" else "external_id" for name in SCHEMA.names}
NESTED = {"tags", "address"}


async def read_all(sink: ReadBackSink, schema: pa.Schema) -> tuple[pa.Table, int]:
    parts: list[pa.Table] = []
    read = await sink.read_back(schema, parts.append)
    table = pa.concat_tables(parts) if parts else schema.empty_table()
    return table.sort_by("id"), read


async def test_rows_read_back_equal_and_hash_as_the_rows_sent(
    db: Db, make_sink: SinkFactory
) -> None:
    sink = make_sink(db, "mirror", mapping=MAPPING)
    sent = changes(ROWS, SCHEMA)
    await send(sink, sent, 1)
    assert isinstance(sink, ReadBackSink)
    not_compared = sink.unreadable(SCHEMA)
    flat = pa.schema([f for f in SCHEMA if f.name not in not_compared])

    back, read = await read_all(sink, flat)

    assert set(not_compared) == NESTED
    assert read == 3
    expected = sent.drop_columns([OP_COLUMN, *NESTED]).sort_by("id")
    assert back.schema == flat.remove_metadata()
    assert back.to_pylist() == expected.to_pylist()
    columns = flat.names
    assert row_hashes(back, columns).equals(row_hashes(expected.cast(flat), columns))


async def test_a_table_that_is_not_there_reads_as_empty(db: Db, make_sink: SinkFactory) -> None:
    sink = make_sink(db, "upsert")
    schema = pa.schema([pa.field("id", pa.int64()), pa.field("name", pa.string())])

    back, read = await read_all(sink, schema)

    assert (read, back.num_rows) == (0, 0)
