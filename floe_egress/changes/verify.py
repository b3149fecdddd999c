"""What a destination should hold against what it holds (or its digest says it holds).

Both sides are relations of a key and a row hash (`HASH`, the digest's hash: see
changes/digest.py). `expected` reads them from a snapshot; `observed` hashes rows read
back from a destination, typed like the snapshot's; `differences` sets one against the
other in DuckDB:

- missing: the snapshot holds the key, the other side does not;
- extra: the other side holds a key the snapshot does not;
- differing: both hold it, with another hash, an unknown one (a digest entry whose
  values were never known, or a write that never confirmed), or more than once.

Keys the snapshot holds more than once, or as null, are invalid: no cycle sends or
deletes them, so they are neither expected nor counted on the other side.

What each sync mode promises, and so which of the three are differences, is in
`COUNTED`; `WHY_NOT_COUNTED` says why the others are not.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import duckdb
import pyarrow as pa
from pyiceberg.table import Table

from floe_egress.changes.digest import HASH, UNSURE, row_hashes
from floe_egress.changes.duck import cursor, q
from floe_egress.changes.keys import key_jsons
from floe_egress.changes.rowfilter import RowFilter
from floe_egress.changes.source import key_counts
from floe_egress.config.models import SyncMode

Category = Literal["missing", "extra", "differing"]
CATEGORIES: tuple[Category, ...] = ("missing", "extra", "differing")
SAMPLE = 5
"""Keys shown per category."""
REPAIR_OP: dict[Category, str] = {"missing": "insert", "differing": "update", "extra": "delete"}
"""The op that makes a destination right again for a key of each category."""

_ALL: frozenset[Category] = frozenset(CATEGORIES)
COUNTED: dict[str, dict[SyncMode, frozenset[Category]]] = {
    "digest": {
        "mirror": _ALL,
        # a delete is sent as an event and the digest forgets the key
        "append": _ALL,
        "upsert": frozenset({"missing", "differing"}),
        "insert": frozenset({"missing"}),
        "update": frozenset({"differing"}),
    },
    "destination": {
        "mirror": _ALL,
        "upsert": frozenset({"missing", "differing"}),
        "insert": frozenset({"missing"}),
        "update": frozenset({"differing"}),
    },
}
"""Which categories are differences, per side and sync mode. An append destination is
an event log: its table is not compared row by row (see daemon/verify.py)."""

WHY_NOT_COUNTED: dict[tuple[SyncMode, Category], str] = {
    ("upsert", "extra"): "upsert mode never deletes: keys the table no longer holds stay",
    ("insert", "extra"): "insert mode never deletes",
    ("insert", "differing"): "insert mode sends each key once and never updates it",
    ("update", "missing"): (
        "update mode only updates keys the destination already holds: keys it never "
        "updated are not compared"
    ),
    ("update", "extra"): "update mode never deletes",
}


@dataclass(frozen=True, slots=True)
class Expected:
    """What a destination should hold: the valid keys of a snapshot with their hashes."""

    entries: pa.Table
    """Key columns and `HASH`, one row per valid key."""
    invalid: pa.Table
    """Keys held by more than one row (a null key cannot match anything anyway)."""

    @property
    def invalid_keys(self) -> int:
        return int(self.invalid.num_rows)


def expected(
    table: Table,
    snapshot_id: int,
    key: Sequence[str],
    columns: Sequence[str],
    row_filter: RowFilter | None = None,
) -> Expected:
    """The snapshot's rows as key and hash over `columns` (the digest's own hash); of
    the rows `row_filter` matches (a destination's filter)."""
    keys = ", ".join(q(k) for k in key)
    con = cursor()
    try:
        key_counts(con, table, snapshot_id, key, columns, row_filter)
        entries = con.execute(
            f"SELECT {keys}, h AS {HASH} FROM counts WHERE n = 1 AND NOT is_null"
        ).to_arrow_table()
        invalid = con.execute(
            f"SELECT {keys} FROM counts WHERE n > 1 AND NOT is_null"
        ).to_arrow_table()
    finally:
        con.close()
    return Expected(entries, invalid)


def only_keys(expected: Expected, keys: pa.Table, key: Sequence[str]) -> Expected:
    """`expected` narrowed to the keys `keys` holds (update mode: the keys it sent)."""
    if not keys.num_rows:
        return Expected(expected.entries.slice(0, 0), expected.invalid)
    names = ", ".join(q(k) for k in key)
    con = cursor()
    try:
        con.register("e", expected.entries)
        con.register("k", keys.select(list(key)))
        narrowed = con.execute(
            f"SELECT * FROM e SEMI JOIN k USING ({names}) ORDER BY {names}"
        ).to_arrow_table()
    finally:
        con.close()
    return Expected(narrowed, expected.invalid)


def observed(batches: Iterable[pa.Table], key: Sequence[str], columns: Sequence[str]) -> pa.Table:
    """Key and hash of rows read back from a destination, typed like the snapshot's rows
    (so equal values hash equal)."""
    parts = [
        batch.select(list(key)).append_column(HASH, row_hashes(batch, columns))
        for batch in batches
        if batch.num_rows
    ]
    if not parts:
        return pa.table({})
    return pa.concat_tables(parts)


@dataclass(frozen=True, slots=True)
class Differences:
    """Keys of each category (key columns only), in key order."""

    key: tuple[str, ...]
    missing: pa.Table
    extra: pa.Table
    differing: pa.Table

    def of(self, category: Category) -> pa.Table:
        found: pa.Table = getattr(self, category)
        return found

    def count(self, category: Category) -> int:
        return int(self.of(category).num_rows)

    def sample(self, category: Category, n: int = SAMPLE) -> list[dict[str, object]]:
        """The first `n` keys as JSON values (dates as ISO text, and so on)."""
        rows = self.of(category).slice(0, n)
        return [json.loads(k) for k in key_jsons(rows, self.key)]

    def key_jsons(self, category: Category) -> list[str]:
        return key_jsons(self.of(category), self.key)


def differences(expected: Expected, actual: pa.Table, key: Sequence[str]) -> Differences:
    """`actual` (key columns, `HASH`, maybe `UNSURE`) against `expected`."""
    keys = ", ".join(q(k) for k in key)
    con = cursor()
    try:
        con.register("expected_rows", expected.entries)
        con.register("invalid", expected.invalid)
        _actual(con, actual, key)
        on = f"USING ({keys})"
        missing = con.execute(
            f"SELECT {keys} FROM expected_rows ANTI JOIN actual {on} ORDER BY {keys}"
        ).to_arrow_table()
        extra = con.execute(
            f"SELECT {keys} FROM actual ANTI JOIN expected_rows {on} "
            f"ANTI JOIN invalid {on} ORDER BY {keys}"
        ).to_arrow_table()
        differing = con.execute(
            f"SELECT {', '.join(f'e.{q(k)}' for k in key)} FROM expected_rows e "
            f"JOIN actual a {on} WHERE a.{UNSURE} OR a.{HASH} IS NULL "
            f"OR a.{HASH} <> e.{HASH} ORDER BY {keys}"
        ).to_arrow_table()
    finally:
        con.close()
    return Differences(tuple(key), missing, extra, differing)


def _actual(con: duckdb.DuckDBPyConnection, actual: pa.Table, key: Sequence[str]) -> None:
    """`actual` as a view of one row per key: a key held twice has no hash and is unsure."""
    keys = ", ".join(q(k) for k in key)
    if not actual.num_rows:
        con.execute(
            f"CREATE TEMP TABLE actual AS SELECT {keys}, NULL::UBIGINT AS {HASH}, "
            f"false AS {UNSURE} FROM expected_rows WHERE false"
        )
        return
    con.register("actual_rows", actual)
    unsure = f"bool_or({UNSURE})" if UNSURE in actual.column_names else "false"
    con.execute(
        f"CREATE TEMP VIEW actual AS SELECT {keys}, "
        f"CASE WHEN count(*) = 1 THEN min({HASH}) END AS {HASH}, "
        f"({unsure} OR count(*) > 1) AS {UNSURE} FROM actual_rows GROUP BY ALL"
    )


__all__ = [
    "CATEGORIES",
    "COUNTED",
    "REPAIR_OP",
    "SAMPLE",
    "WHY_NOT_COUNTED",
    "Category",
    "Differences",
    "Expected",
    "differences",
    "expected",
    "observed",
    "only_keys",
]
