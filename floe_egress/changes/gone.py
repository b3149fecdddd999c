"""Keys a destination was sent that a snapshot no longer has (deletes for a full resync
in mirror mode).

The snapshot's keys and the sent keys meet in DuckDB, which spills to disk rather than
hold a table's worth of keys in Python; only the keys that are gone come back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import duckdb
import pyarrow as pa
from pyiceberg.table import Table

from floe_egress.changes.duck import cursor
from floe_egress.changes.keys import delete_rows, key_jsons, parse_key_json


def gone_deletes(
    table: Table,
    snapshot_id: int | None,
    key: tuple[str, ...],
    schema: pa.Schema,
    *,
    sent: Iterable[Sequence[str]],
    spare: Iterable[str] = (),
) -> pa.Table:
    """Delete rows with `schema` for the keys in `sent` (batches of key_json) that
    snapshot `snapshot_id` does not hold (None: no snapshot, every sent key is gone),
    but for the keys in `spare`; in key_json order."""
    con = cursor()
    try:
        con.execute("CREATE TEMP TABLE live (k VARCHAR)")
        con.execute("CREATE TEMP TABLE sent (k VARCHAR)")
        if snapshot_id is not None:
            scan = table.scan(snapshot_id=snapshot_id, selected_fields=key)
            for batch in scan.to_arrow_batch_reader():
                _insert_keys(con, "live", key_jsons(batch, key))
        _insert_keys(con, "live", list(spare))
        for keys in sent:
            _insert_keys(con, "sent", keys)
        rows = con.execute("SELECT k FROM sent ANTI JOIN live USING (k) ORDER BY k").fetchall()
    finally:
        con.close()
    if not rows:
        return schema.empty_table()
    return delete_rows([parse_key_json(r[0]) for r in rows], key, schema)


def _insert_keys(con: duckdb.DuckDBPyConnection, table: str, keys: Sequence[str]) -> None:
    if keys:
        con.register("batch_keys", pa.table({"k": pa.array(keys, pa.string())}))
        con.execute(f"INSERT INTO {table} SELECT k FROM batch_keys")
        con.unregister("batch_keys")
