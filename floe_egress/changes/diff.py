"""Net row changes between the rows of removed files (A) and added files (B).

Both sides are Arrow tables with the same schema (B's, by field id). Rows identical on
both sides are the carry-over of a copy-on-write rewrite and cancel out: they are
matched on key and a 64-bit hash of the whole row (a collision would need two
different versions of one key to hash alike: about 1 in 1.8e19 per changed row). What
is left is classified by key: only in B = insert, in both = update, only in A = delete.

DuckDB does the hashing and joins over the Arrow buffers; the rows themselves are taken
from the original Arrow tables so their types are kept exactly. When neither side
repeats a key (the normal case) one full outer join classifies everything; otherwise a
slower path pairs identical rows one to one.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from floe_egress.changes.duck import cursor

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


def _positions(con: duckdb.DuckDBPyConnection, sql: str, column: str = _IDX) -> np.ndarray:
    result = con.execute(sql).fetchnumpy()
    return np.asarray(result[column], dtype=np.int64)


class _Sql:
    """SQL fragments for one key and column list."""

    def __init__(self, key: tuple[str, ...], columns: list[str]) -> None:
        self.keys = ", ".join(_q(k) for k in key)
        self.all = ", ".join(_q(c) for c in columns)
        self.match = " AND ".join(f"x.{_q(k)} = y.{_q(k)}" for k in key)
        self.null = " OR ".join(f"{_q(k)} IS NULL" for k in key)
        self.x_null = " OR ".join(f"x.{_q(k)} IS NULL" for k in key)


def classify(a: pa.Table, b: pa.Table, key: tuple[str, ...]) -> Classified:
    """Classify the rows of `a` (removed) and `b` (added) into net changes by `key`."""
    sql = _Sql(key, list(b.column_names))
    con = cursor()
    try:
        con.register("a_raw", _with_index(a))
        con.register("b_raw", _with_index(b))
        for side in ("a", "b"):
            con.execute(
                f"CREATE TEMP VIEW {side} AS SELECT {_IDX}, {sql.keys}, hash({sql.all}) "
                f"AS {_HASH} FROM {side}_raw"
            )
        null_keys = np.zeros(0, dtype=np.int64)
        if b.num_rows and any(b.column(k).null_count for k in key):
            # Null-key rows carried over unchanged from A were reported when they arrived.
            null_keys = _positions(
                con,
                f"SELECT {_IDX} FROM b WHERE ({sql.null}) AND {_HASH} NOT IN "
                f"(SELECT {_HASH} FROM a WHERE {sql.null}) ORDER BY 1",
            )
        fast = _classify_unique(con, sql, null_keys)
        if fast is not None:
            return fast
        con.execute(
            f"CREATE TEMP TABLE b_dupes AS SELECT {sql.keys} FROM b "
            f"WHERE NOT ({sql.null}) GROUP BY ALL HAVING count(*) > 1"
        )
        return _classify_general(con, sql, null_keys)
    finally:
        con.close()


def _classify_unique(
    con: duckdb.DuckDBPyConnection, sql: _Sql, null_keys: np.ndarray
) -> Classified | None:
    """One aggregation by key over both sides: the keys whose row hash differs or that
    one side lacks, with their row positions. None when a key repeats on either side
    (then the general path pairs rows one by one)."""
    result = con.execute(
        f"""SELECT count(*) FILTER (WHERE side = 0) AS na,
                   count(*) FILTER (WHERE side = 1) AS nb,
                   coalesce(min({_IDX}) FILTER (WHERE side = 0), -1) AS ai,
                   coalesce(min({_IDX}) FILTER (WHERE side = 1), -1) AS bi
            FROM (
                SELECT 0 AS side, {_IDX}, {sql.keys}, {_HASH} FROM a WHERE NOT ({sql.null})
                UNION ALL
                SELECT 1 AS side, {_IDX}, {sql.keys}, {_HASH} FROM b WHERE NOT ({sql.null})
            )
            GROUP BY {sql.keys}
            HAVING count(*) > 2 OR count(*) FILTER (WHERE side = 0) > 1
                OR count(*) FILTER (WHERE side = 1) > 1
                OR min({_HASH}) FILTER (WHERE side = 0)
                   IS DISTINCT FROM min({_HASH}) FILTER (WHERE side = 1)"""
    ).fetchnumpy()
    na = np.asarray(result["na"], dtype=np.int64)
    nb = np.asarray(result["nb"], dtype=np.int64)
    if (na > 1).any() or (nb > 1).any():
        return None
    ai = np.asarray(result["ai"], dtype=np.int64)
    bi = np.asarray(result["bi"], dtype=np.int64)
    return Classified(
        inserts=np.sort(bi[(ai < 0) & (bi >= 0)]),
        updates=np.sort(bi[(ai >= 0) & (bi >= 0)]),
        deletes=np.sort(ai[(ai >= 0) & (bi < 0)]),
        null_keys=null_keys,
        duplicate_keys=np.zeros(0, dtype=np.int64),
    )


def _classify_general(
    con: duckdb.DuckDBPyConnection, sql: _Sql, null_keys: np.ndarray
) -> Classified:
    """Keys repeat: pair identical rows one to one, then classify what is left."""
    for side in ("a", "b"):
        con.execute(
            f"CREATE TEMP TABLE {side}_n AS SELECT *, row_number() OVER "
            f"(PARTITION BY {sql.keys}, {_HASH} ORDER BY {_IDX}) AS {_RN} FROM {side}"
        )
    key_match = sql.match.replace(" = ", " IS NOT DISTINCT FROM ")
    con.execute(
        f"""CREATE TEMP TABLE pairs AS SELECT x.{_IDX} AS ai, y.{_IDX} AS bi
            FROM a_n x JOIN b_n y ON {key_match} AND x.{_HASH} = y.{_HASH}
            AND x.{_RN} = y.{_RN}"""
    )
    con.execute(
        f"CREATE TEMP TABLE a_left AS SELECT * FROM a x ANTI JOIN pairs p ON x.{_IDX} = p.ai"
    )
    con.execute(
        f"CREATE TEMP TABLE b_left AS SELECT * FROM b x ANTI JOIN pairs p ON x.{_IDX} = p.bi"
    )
    dupes = _positions(
        con, f"SELECT x.{_IDX} FROM b_left x SEMI JOIN b_dupes y ON {sql.match} ORDER BY 1"
    )
    valid_b = (
        f"(SELECT * FROM b_left x WHERE NOT ({sql.x_null}) "
        f"AND NOT EXISTS (SELECT 1 FROM b_dupes y WHERE {sql.match}))"
    )
    updates = _positions(
        con, f"SELECT x.{_IDX} FROM {valid_b} x SEMI JOIN a_left y ON {sql.match} ORDER BY 1"
    )
    inserts = _positions(
        con, f"SELECT x.{_IDX} FROM {valid_b} x ANTI JOIN a_left y ON {sql.match} ORDER BY 1"
    )
    # A row only in A is a delete unless its key is still somewhere in B's changed files
    # (then it is the old side of an update, or A held a duplicate).
    deletes = _positions(
        con,
        f"SELECT x.{_IDX} FROM a_left x WHERE NOT ({sql.x_null}) "
        f"AND NOT EXISTS (SELECT 1 FROM b y WHERE {sql.match}) ORDER BY 1",
    )
    return Classified(
        inserts=inserts,
        updates=updates,
        deletes=deletes,
        null_keys=null_keys,
        duplicate_keys=dupes,
    )
