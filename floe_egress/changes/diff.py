"""Net row changes between the rows of removed files (A) and added files (B).

Each side comes as a compact table: per row its key columns and a 64-bit hash of the
whole row, computed by DuckDB over B's column types (see reading.py). Rows identical on
both sides are the carry-over of a copy-on-write rewrite and cancel out: they are
matched on key and row hash (a collision would need two different versions of one key
to hash alike: about 1 in 1.8e19 per changed row). What is left is classified by key:
only in B = insert, in both = update, only in A = delete. The result is row positions;
the rows themselves are read afterwards, only for the positions that changed.

When neither side repeats a key (the normal case) one pass classifies everything: with
numpy when the key is one integer-like column (sort and binary search), otherwise one
DuckDB aggregation. When a key repeats, a slower DuckDB path pairs identical rows one
to one.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from floe_egress.changes.duck import cursor
from floe_egress.changes.reading import Compact, q

_IDX = "__floe_i"
_HASH = "__floe_h"
_RN = "__floe_rn"
_EMPTY = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class Classified:
    """Row positions: inserts/updates/invalid index B, deletes index A."""

    inserts: np.ndarray
    updates: np.ndarray
    deletes: np.ndarray
    null_keys: np.ndarray
    duplicate_keys: np.ndarray


class _Sql:
    """SQL fragments for one key."""

    def __init__(self, key: tuple[str, ...]) -> None:
        self.keys = ", ".join(q(k) for k in key)
        self.match = " AND ".join(f"x.{q(k)} = y.{q(k)}" for k in key)
        self.null = " OR ".join(f"{q(k)} IS NULL" for k in key)
        self.x_null = " OR ".join(f"x.{q(k)} IS NULL" for k in key)


def _null_mask(keys: pa.Table) -> np.ndarray:
    mask = np.zeros(keys.num_rows, dtype=bool)
    for column in keys.columns:
        if column.null_count:
            mask |= np.asarray(pc.is_null(column).to_numpy(zero_copy_only=False), dtype=bool)
    return mask


def _integer_view(column: pa.ChunkedArray) -> np.ndarray | None:
    """The key column as int64 with the same equality, or None for other types."""
    t = column.type
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if pa.types.is_date32(t) or pa.types.is_time32(t):
        array = array.view(pa.int32())
    elif pa.types.is_date64(t) or pa.types.is_timestamp(t) or pa.types.is_time64(t):
        array = array.view(pa.int64())
    elif not pa.types.is_integer(t) or t == pa.uint64():
        return None
    if array.null_count:
        array = pc.fill_null(array, 0)
    values = np.asarray(array.to_numpy(zero_copy_only=False))
    return values if values.dtype == np.int64 else values.astype(np.int64)


def classify(a: Compact, b: Compact, key: tuple[str, ...]) -> Classified:
    """Classify the rows of `a` (removed) and `b` (added) into net changes by `key`.

    `a.hashes` may be empty only when `a` has no row (then nothing can cancel)."""
    a_null = _null_mask(a.keys)
    b_null = _null_mask(b.keys)
    null_keys = _EMPTY
    if b_null.any():
        b_null_rows = np.flatnonzero(b_null)
        # Null-key rows carried over unchanged from A were reported when they arrived.
        if a.num_rows:
            carried = np.isin(b.hashes[b_null_rows], a.hashes[a_null])
            null_keys = b_null_rows[~carried]
        else:
            null_keys = b_null_rows
    if len(key) == 1:
        a_keys = _integer_view(a.keys.column(0))
        b_keys = _integer_view(b.keys.column(0))
        if a_keys is not None and b_keys is not None:
            fast = _classify_integers(a_keys, a.hashes, a_null, b_keys, b.hashes, b_null)
            if fast is not None:
                inserts, updates, deletes = fast
                return Classified(inserts, updates, deletes, null_keys, _EMPTY)
    con = cursor()
    try:
        for name, side in (("a", a), ("b", b)):
            con.register(name, _sql_table(side))
        sql = _Sql(key)
        fast_sql = _classify_unique(con, sql, null_keys)
        if fast_sql is not None:
            return fast_sql
        con.execute(
            f"CREATE TEMP TABLE b_dupes AS SELECT {sql.keys} FROM b "
            f"WHERE NOT ({sql.null}) GROUP BY ALL HAVING count(*) > 1"
        )
        return _classify_general(con, sql, null_keys)
    finally:
        con.close()


def _sql_table(side: Compact) -> pa.Table:
    n = side.num_rows
    hashes = side.hashes if len(side.hashes) == n else np.zeros(n, dtype=np.int64)
    return side.keys.append_column(_HASH, pa.array(hashes, pa.int64())).append_column(
        _IDX, pa.array(np.arange(n, dtype=np.int64))
    )


def _classify_integers(
    a_keys: np.ndarray,
    a_hashes: np.ndarray,
    a_null: np.ndarray,
    b_keys: np.ndarray,
    b_hashes: np.ndarray,
    b_null: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(inserts, updates, deletes) for unique integer keys; None when a key repeats."""
    a_rows = np.flatnonzero(~a_null) if a_null.any() else None
    b_rows = np.flatnonzero(~b_null) if b_null.any() else None
    ka = a_keys if a_rows is None else a_keys[a_rows]
    kb = b_keys if b_rows is None else b_keys[b_rows]
    matched = _match_dense(ka, kb) if len(ka) and len(kb) else None
    if matched is None:
        matched = _match_sorted(ka, kb)
    if matched is None:
        return None
    b_hit, a_hit = matched  # B rows (within kb) found in A, and their rows in A (within ka)
    b_found = np.zeros(len(kb), dtype=bool)
    b_found[b_hit] = True
    inserts = np.flatnonzero(~b_found)
    if len(a_hit):
        ha = a_hashes if a_rows is None else a_hashes[a_rows]
        hb = b_hashes if b_rows is None else b_hashes[b_rows]
        updates = np.sort(b_hit[ha[a_hit] != hb[b_hit]])
    else:
        updates = _EMPTY
    gone = np.ones(len(ka), dtype=bool)
    gone[a_hit] = False
    deletes = np.flatnonzero(gone)
    if b_rows is not None:
        inserts, updates = b_rows[inserts], b_rows[updates]
    if a_rows is not None:
        deletes = a_rows[deletes]
    return inserts, updates, deletes


def _match_dense(ka: np.ndarray, kb: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Matching keys through a table indexed by key, when the keys span a range at most
    twice the number of rows (ids); None otherwise, or when a key repeats."""
    low = min(int(ka.min()), int(kb.min()))
    span = max(int(ka.max()), int(kb.max())) - low + 1
    if span > 2 * (len(ka) + len(kb)) or max(len(ka), len(kb)) >= 2**31:
        return None
    row_of = np.full(span, -1, dtype=np.int32)  # key - low -> its row in A
    row_of[ka - low] = np.arange(len(ka), dtype=np.int32)
    if np.count_nonzero(row_of >= 0) != len(ka):
        return None  # a key of A repeats
    rb = kb - low
    seen = np.zeros(span, dtype=bool)
    seen[rb] = True
    if np.count_nonzero(seen) != len(kb):
        return None  # a key of B repeats
    del seen
    in_a = row_of[rb]
    del row_of, rb
    b_hit = np.flatnonzero(in_a >= 0)
    return b_hit, in_a[b_hit]


def _match_sorted(ka: np.ndarray, kb: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Matching keys by sorting both sides (stable sorts: data files are often sorted
    already) and a binary search in key order; None when a key repeats."""
    a_order = np.argsort(ka, kind="stable")
    a_sorted = ka[a_order]
    if _repeats(a_sorted):
        return None
    b_order = np.argsort(kb, kind="stable")
    b_sorted = kb[b_order]
    if _repeats(b_sorted):
        return None
    if not len(a_sorted):
        return _EMPTY, _EMPTY
    found = np.searchsorted(a_sorted, b_sorted)
    np.minimum(found, len(a_sorted) - 1, out=found)
    hit = a_sorted[found] == b_sorted
    return b_order[hit], a_order[found[hit]]


def _repeats(sorted_keys: np.ndarray) -> bool:
    return bool(len(sorted_keys) > 1 and (sorted_keys[1:] == sorted_keys[:-1]).any())


def _positions(con: duckdb.DuckDBPyConnection, sql: str, column: str = _IDX) -> np.ndarray:
    result = con.execute(sql).fetchnumpy()
    return np.asarray(result[column], dtype=np.int64)


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
        duplicate_keys=_EMPTY,
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
