"""Net row changes between the rows of removed files (A) and added files (B).

Both sides are Arrow tables with the same schema (B's, by field id). Rows identical on
both sides are the carry-over of a copy-on-write rewrite and cancel out (matched on key
and row hash, then confirmed column by column, so a hash collision can never hide an
update). What is left is classified by key: only in B = insert, in both = update, only
in A = delete. DuckDB does the joins over the Arrow buffers; the rows themselves are
taken from the original Arrow tables so their types are kept exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

_IDX = "__floe_i"
_HASH = "__floe_h"
_RN = "__floe_rn"


@dataclass(frozen=True, slots=True)
class Classified:
    """Row positions: inserts/updates/invalid index B, deletes index A."""

    inserts: np.ndarray
    updates: np.ndarray
    deletes: np.ndarray
    null_keys: np.ndarray
    duplicate_keys: np.ndarray


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _with_index(table: pa.Table) -> pa.Table:
    return table.append_column(_IDX, pa.array(np.arange(table.num_rows, dtype=np.int64)))


def _positions(con: duckdb.DuckDBPyConnection, sql: str) -> np.ndarray:
    result = con.execute(sql).fetchnumpy()
    return np.asarray(result[_IDX], dtype=np.int64)


def classify(a: pa.Table, b: pa.Table, key: tuple[str, ...]) -> Classified:
    """Classify the rows of `a` (removed) and `b` (added) into net changes by `key`."""
    columns = list(b.column_names)
    all_cols = ", ".join(_q(c) for c in columns)
    key_cols = ", ".join(_q(k) for k in key)
    key_match = " AND ".join(f"x.{_q(k)} IS NOT DISTINCT FROM y.{_q(k)}" for k in key)
    row_match = " AND ".join(f"x.{_q(c)} IS NOT DISTINCT FROM y.{_q(c)}" for c in columns)
    key_null = " OR ".join(f"{_q(k)} IS NULL" for k in key)

    con = duckdb.connect()
    try:
        con.register("a_raw", _with_index(a))
        con.register("b_raw", _with_index(b))
        numbered = (
            f"SELECT *, hash({all_cols}) AS {_HASH}, "
            f"row_number() OVER (PARTITION BY {key_cols}, hash({all_cols})) AS {_RN} "
        )
        con.execute(f"CREATE TEMP TABLE a AS {numbered} FROM a_raw")
        con.execute(f"CREATE TEMP TABLE b AS {numbered} FROM b_raw")
        # Carry-over pairs: same key, same hash, same occurrence number, and every
        # column equal.
        con.execute(
            f"""CREATE TEMP TABLE pairs AS
                SELECT x.{_IDX} AS ai, y.{_IDX} AS bi FROM a x JOIN b y
                ON {key_match} AND x.{_HASH} = y.{_HASH} AND x.{_RN} = y.{_RN}
                AND {row_match}"""
        )
        con.execute(
            f"CREATE TEMP TABLE a_left AS SELECT * FROM a x "
            f"ANTI JOIN pairs p ON x.{_IDX} = p.ai"
        )
        con.execute(
            f"CREATE TEMP TABLE b_left AS SELECT * FROM b x "
            f"ANTI JOIN pairs p ON x.{_IDX} = p.bi"
        )
        con.execute(
            f"CREATE TEMP TABLE b_dupes AS SELECT {key_cols} FROM b "
            f"WHERE NOT ({key_null}) GROUP BY {key_cols} HAVING count(*) > 1"
        )
        null_keys = _positions(con, f"SELECT {_IDX} FROM b_left WHERE {key_null} ORDER BY 1")
        dupes = _positions(
            con,
            f"SELECT x.{_IDX} FROM b_left x SEMI JOIN b_dupes y ON {key_match} ORDER BY 1",
        )
        valid_b = (
            f"(SELECT * FROM b_left x WHERE NOT ({_prefixed(key, 'x')}) "
            f"AND NOT EXISTS (SELECT 1 FROM b_dupes y WHERE {key_match}))"
        )
        updates = _positions(
            con,
            f"SELECT x.{_IDX} FROM {valid_b} x SEMI JOIN a_left y ON {key_match} ORDER BY 1",
        )
        inserts = _positions(
            con,
            f"SELECT x.{_IDX} FROM {valid_b} x ANTI JOIN a_left y ON {key_match} ORDER BY 1",
        )
        # A row only in A is a delete unless its key is still somewhere in B's changed
        # files (then it is the old side of an update, or A held a duplicate).
        deletes = _positions(
            con,
            f"SELECT x.{_IDX} FROM a_left x WHERE NOT ({_prefixed(key, 'x')}) "
            f"AND NOT EXISTS (SELECT 1 FROM b y WHERE {key_match}) ORDER BY 1",
        )
    finally:
        con.close()
    return Classified(
        inserts=inserts, updates=updates, deletes=deletes, null_keys=null_keys,
        duplicate_keys=dupes,
    )


def _prefixed(key: tuple[str, ...], alias: str) -> str:
    return " OR ".join(f"{alias}.{_q(k)} IS NULL" for k in key)
