"""Net row changes between the rows of removed files (A) and added files (B).

Each side comes as a compact table: per row its key columns and a 64-bit hash of the
whole row, computed by DuckDB over B's column types (see reading.py). Rows identical on
both sides are the carry-over of a copy-on-write rewrite and cancel out: they are
matched on key and row hash (a collision would need two different versions of one key
to hash alike: about 1 in 1.8e19 per changed row). What is left is classified by key:
only in B = insert, in both = update, only in A = delete. The result is row positions;
the rows themselves are read afterwards, only for the positions that changed.

A key is valid in a snapshot when exactly one row holds it. The files that did not
change (live in both A and B) may hold a changed key too: `untouched` counts them, so a
key appended a second time, or a duplicate that is resolved, is classified by how many
rows hold it in the whole of A and of B:

- B holds it more than once: invalid, never sent (the destination keeps what it has);
- B holds it once: update when A held it once, else insert (also when A held it more
  than once: the key is valid again, and is sent as a full resync would send it); its
  row may sit in an unchanged file (`revived`);
- B does not hold it: delete.

When neither side repeats a key and the unchanged files hold none of the changed keys
(the normal case) one pass classifies everything: with numpy when the key is one
integer-like column (integers.py), otherwise one DuckDB aggregation. Else a
slower DuckDB path pairs identical rows one to one and counts rows per key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from floe_egress.changes.duck import cursor, q
from floe_egress.changes.integers import classify_integers, integer_view
from floe_egress.changes.reading import Compact

_IDX = "__floe_i"
_HASH = "__floe_h"
_RN = "__floe_rn"
_EMPTY = np.zeros(0, dtype=np.int64)
_COUNTS = pa.array([], pa.int64())


ROWS = "rows"
"""The count column of `Untouched` results and of `Classified.duplicates`."""
Untouched = Callable[[pa.Table], pa.Table]
"""Distinct keys (key columns) -> those the unchanged files of B hold, with how many
rows hold each (key columns + ROWS)."""


@dataclass(frozen=True, slots=True)
class Classified:
    """Row positions: inserts/updates/null keys index B, deletes index A."""

    inserts: np.ndarray
    updates: np.ndarray
    deletes: np.ndarray
    null_keys: np.ndarray
    """B rows with a null key that A's removed files did not hold as they are."""
    duplicates: pa.Table
    """Changed keys that B holds more than once (key columns + ROWS: how many rows)."""
    revived: pa.Table
    """Keys valid again whose one row in B sits in an unchanged file (key columns): inserts."""

    @property
    def invalid_rows(self) -> int:
        counts = self.duplicates.column(ROWS)
        return len(self.null_keys) + (int(pc.sum(counts).as_py() or 0) if len(counts) else 0)


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


def classify(
    a: Compact, b: Compact, key: tuple[str, ...], untouched: Untouched | None = None
) -> Classified:
    """Classify the rows of `a` (removed) and `b` (added) into net changes by `key`;
    `untouched` counts the changed keys in B's unchanged files (None: they hold none).

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
    unique = _classify_unique_keys(a, b, key, a_null, b_null)
    known = None
    if unique is not None:
        inserts, updates, deletes = unique
        changed = pa.concat_tables(
            [b.keys.take(pa.array(np.concatenate([inserts, updates]))), a.keys.take(deletes)]
        )
        known = untouched(changed) if untouched is not None and changed.num_rows else None
        if known is None or not known.num_rows:
            none = _no_keys(a.keys)
            return Classified(
                inserts, updates, deletes, null_keys, none.append_column(ROWS, _COUNTS), none
            )
    return _classify_by_counts(a, b, key, null_keys, untouched, known)


def _classify_unique_keys(
    a: Compact, b: Compact, key: tuple[str, ...], a_null: np.ndarray, b_null: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(inserts, updates, deletes) when no key repeats on either side; else None."""
    if len(key) == 1:
        a_keys = integer_view(a.keys.column(0))
        b_keys = integer_view(b.keys.column(0))
        if a_keys is not None and b_keys is not None:
            return classify_integers(a_keys, a.hashes, a_null, b_keys, b.hashes, b_null)
    con = cursor()
    try:
        for name, side in (("a", a), ("b", b)):
            con.register(name, _sql_table(side))
        return _classify_unique(con, _Sql(key))
    finally:
        con.close()


def _no_keys(keys: pa.Table) -> pa.Table:
    return keys.schema.empty_table()


def _sql_table(side: Compact) -> pa.Table:
    n = side.num_rows
    hashes = side.hashes if len(side.hashes) == n else np.zeros(n, dtype=np.int64)
    return side.keys.append_column(_HASH, pa.array(hashes, pa.int64())).append_column(
        _IDX, pa.array(np.arange(n, dtype=np.int64))
    )


def _classify_unique(
    con: duckdb.DuckDBPyConnection, sql: _Sql
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
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
    return (
        np.sort(bi[(ai < 0) & (bi >= 0)]),
        np.sort(bi[(ai >= 0) & (bi >= 0)]),
        np.sort(ai[(ai >= 0) & (bi < 0)]),
    )


def _classify_by_counts(
    a: Compact,
    b: Compact,
    key: tuple[str, ...],
    null_keys: np.ndarray,
    untouched: Untouched | None,
    known: pa.Table | None,
) -> Classified:
    """Pair identical rows one to one, then classify every key with an unpaired row by
    how many rows hold it in A and in B (changed files plus `untouched` ones)."""
    sql = _Sql(key)
    con = cursor()
    try:
        for name, side in (("a", a), ("b", b)):
            con.register(name, _sql_table(side))
            con.execute(
                f"CREATE TEMP TABLE {name}_n AS SELECT *, row_number() OVER "
                f"(PARTITION BY {sql.keys}, {_HASH} ORDER BY {_IDX}) AS {_RN} FROM {name}"
            )
        key_match = sql.match.replace(" = ", " IS NOT DISTINCT FROM ")
        con.execute(
            f"""CREATE TEMP TABLE pairs AS SELECT x.{_IDX} AS ai, y.{_IDX} AS bi
                FROM a_n x JOIN b_n y ON {key_match} AND x.{_HASH} = y.{_HASH}
                AND x.{_RN} = y.{_RN}"""
        )
        x_keys = ", ".join(f"x.{q(k)}" for k in key)
        con.execute(
            f"""CREATE TEMP TABLE k AS SELECT DISTINCT * FROM (
                SELECT {x_keys} FROM a x ANTI JOIN pairs p ON x.{_IDX} = p.ai
                WHERE NOT ({sql.x_null})
                UNION ALL
                SELECT {x_keys} FROM b x ANTI JOIN pairs p ON x.{_IDX} = p.bi
                WHERE NOT ({sql.x_null}))"""
        )
        if known is None:
            changed = con.execute("SELECT * FROM k").to_arrow_table()
            found = untouched(changed) if untouched is not None and changed.num_rows else None
            known = found if found is not None else _no_keys(a.keys).append_column(ROWS, _COUNTS)
        con.register("u", known)
        per_key = con.execute(
            f"""WITH ac AS (SELECT {sql.keys}, count(*) AS na, min({_IDX}) AS ai FROM a
                            WHERE NOT ({sql.null}) GROUP BY ALL),
                     bc AS (SELECT {sql.keys}, count(*) AS nb, min({_IDX}) AS bi FROM b
                            WHERE NOT ({sql.null}) GROUP BY ALL)
                SELECT k.*, coalesce(na, 0) AS na, coalesce(nb, 0) AS nb,
                       coalesce(u.{ROWS}, 0) AS nu, coalesce(ai, -1) AS ai,
                       coalesce(bi, -1) AS bi
                FROM k LEFT JOIN ac USING ({sql.keys}) LEFT JOIN bc USING ({sql.keys})
                LEFT JOIN u USING ({sql.keys})
                ORDER BY {sql.keys}"""
        ).to_arrow_table()
    finally:
        con.close()
    na, nb, nu, ai, bi = (
        np.asarray(per_key.column(c).to_numpy(), dtype=np.int64)
        for c in ("na", "nb", "nu", "ai", "bi")
    )
    in_a, in_b = na + nu, nb + nu
    keys = per_key.select(list(key)).cast(a.keys.schema)
    duplicated = in_b >= 2
    return Classified(
        inserts=np.sort(bi[(in_b == 1) & (nb == 1) & (in_a != 1)]),
        updates=np.sort(bi[(in_b == 1) & (nb == 1) & (in_a == 1)]),
        deletes=np.sort(ai[in_b == 0]),
        null_keys=null_keys,
        duplicates=keys.filter(pa.array(duplicated)).append_column(
            ROWS, pa.array(in_b[duplicated], pa.int64())
        ),
        revived=keys.filter(pa.array((in_b == 1) & (nb == 0))),
    )
