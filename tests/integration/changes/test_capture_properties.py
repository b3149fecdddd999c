"""Property: applying every change set, synced at random points, reproduces the table.

Run for an integer key (classified in numpy, files read by DuckDB) and a string key
(classified by a DuckDB aggregation); positional deletes send reads through pyiceberg's
ArrowScan, so every reading and classification path is exercised. A random step expires
every snapshot but the current one: the next sync cannot read its A and compares B with
the digest of what the mirror holds, with counts exactly the net change.

Each example also draws a destination filter over `v` (or none), and may change it
between syncs: the change sets then reproduce the rows that match, and a sync after a
change of filter compares the new subset with the digest (as the cycle does).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyiceberg.catalog import load_catalog
from pyiceberg.expressions import And, GreaterThanOrEqual, In, LessThan
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.types import LongType, NestedField, PrimitiveType, StringType

from floe_egress.changes import capture
from floe_egress.changes import digest as digests
from floe_egress.changes.ranges import SnapshotRange
from tests.fixtures.iceberg_writers import compact, delete_positions, live_entries
from tests.fixtures.tables import apply, table_state

KEY = ("id",)
COLUMNS = ("id", "v")

keys = st.integers(min_value=0, max_value=40)
values = st.one_of(st.none(), st.sampled_from(["a", "b", "c", "ä", ""]))
rows = st.dictionaries(keys, values, min_size=1, max_size=8)

operations = st.one_of(
    st.tuples(st.just("append"), rows),
    st.tuples(st.just("upsert"), rows),
    st.tuples(st.just("overwrite"), keys, keys, rows),
    st.tuples(st.just("delete"), keys, keys),
    st.tuples(st.just("delete_keys"), st.lists(keys, min_size=1, max_size=5)),
    st.tuples(st.just("rewrite")),
    st.tuples(st.just("delete_positions"), st.lists(keys, min_size=1, max_size=5)),
    st.tuples(st.just("compact")),
    st.tuples(st.just("expire")),
    st.tuples(st.just("refilter"), st.integers(min_value=0, max_value=6)),
    # Syncs are drawn often, so that most examples hold several diffs.
    st.tuples(st.just("sync")),
    st.tuples(st.just("sync")),
    st.tuples(st.just("sync")),
)


FILTERS: tuple[tuple[str | None, Any], ...] = (
    (None, lambda v: True),
    ("v = 'a'", lambda v: v == "a"),
    ("v in ('a', 'ä')", lambda v: v in ("a", "ä")),
    ("v is null", lambda v: v is None),
    ("v is not null and v <> 'b'", lambda v: v is not None and v != "b"),
    ("not (v = 'c')", lambda v: v is not None and v != "c"),
    ("v = '' or v like 'ä%'", lambda v: v is not None and (v == "" or v.startswith("ä"))),
)
"""A filter and what it means for a value of `v` (null matches no comparison)."""


class Keys:
    """Keys are drawn as integers; a string key stores them zero-padded, so that ranges
    keep their order."""

    def __init__(self, kind: str) -> None:
        self.string = kind == "string"
        self.arrow = pa.schema(
            [
                pa.field("id", pa.string() if self.string else pa.int64(), nullable=False),
                pa.field("v", pa.string()),
            ]
        )
        self.iceberg: PrimitiveType = StringType() if self.string else LongType()

    def of(self, n: int) -> Any:
        return f"k{n:03d}" if self.string else n

    def table(self, data: dict[int, str | None]) -> pa.Table:
        ids = [self.of(k) for k in data]
        return pa.table({"id": ids, "v": list(data.values())}, schema=self.arrow)

    def live(self, tbl: Table) -> set[int]:
        if tbl.current_snapshot() is None:
            return set()
        found = tbl.scan(selected_fields=("id",)).to_arrow().column("id").to_pylist()
        return {int(k[1:]) if self.string else k for k in found}

    def between(self, low: int, high: int) -> Any:
        return And(GreaterThanOrEqual("id", self.of(low)), LessThan("id", self.of(high)))


def _run(tbl: Table, op: tuple[Any, ...], k: Keys) -> None:
    kind = op[0]
    if kind == "append":
        # Keys stay unique: an append only brings keys the table does not have.
        fresh = {n: v for n, v in op[1].items() if n not in k.live(tbl)}
        if fresh:
            tbl.append(k.table(fresh))
    elif kind == "upsert":
        if tbl.current_snapshot() is None:
            tbl.append(k.table(op[1]))
        else:
            tbl.upsert(k.table(op[1]), join_cols=["id"])
    elif kind == "overwrite":
        low, high = sorted((op[1], op[2]))
        inside = {n: v for n, v in op[3].items() if low <= n < high}
        outside_live = k.live(tbl) - set(range(low, high))
        inside = {n: v for n, v in inside.items() if n not in outside_live}
        tbl.overwrite(
            k.table(inside) if inside else k.arrow.empty_table(),
            overwrite_filter=k.between(low, high),
        )
    elif kind == "delete":
        low, high = sorted((op[1], op[2]))
        tbl.delete(delete_filter=k.between(low, high))
    elif kind == "delete_keys":
        tbl.delete(delete_filter=In("id", [k.of(n) for n in op[1]]))
    elif kind == "rewrite" and tbl.current_snapshot() is not None:
        tbl.overwrite(tbl.scan().to_arrow())
    elif kind == "delete_positions" and set(op[1]) & k.live(tbl):
        # Merge-on-read: positional delete files, the data files untouched.
        doomed = {k.of(n) for n in op[1]}
        delete_positions(tbl, lambda row: row["id"] in doomed)
    elif kind == "compact" and tbl.current_snapshot() is not None and live_entries(tbl):
        compact(tbl)
    elif kind == "expire" and tbl.current_snapshot() is not None:
        current = tbl.current_snapshot().snapshot_id
        older = [s.snapshot_id for s in tbl.snapshots() if s.snapshot_id != current]
        if older:
            tbl.maintenance.expire_snapshots().by_ids(older).commit()


def digest_of(mirror: dict[Any, Any], k: Keys) -> pa.Table:
    """The effective digest of a destination holding `mirror` (keys and row hashes)."""
    rows = pa.Table.from_pylist(list(mirror.values()), schema=k.arrow)
    return digests.effective([(False, digests.entries(rows, KEY, COLUMNS))], KEY)


def net_change(before: dict[Any, Any], after: dict[Any, Any]) -> tuple[int, int, int]:
    inserted = len(after.keys() - before.keys())
    updated = sum(1 for key in after.keys() & before.keys() if after[key] != before[key])
    return inserted, updated, len(before.keys() - after.keys())


@pytest.mark.parametrize("key_type", ["long", "string"])
@pytest.mark.filterwarnings("ignore:Delete operation did not match any records:UserWarning")
@settings(
    # FLOE_PROPERTY_EXAMPLES=500 for a deeper local run.
    max_examples=int(os.environ.get("FLOE_PROPERTY_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    ops=st.lists(operations, min_size=1, max_size=14),
    first_filter=st.integers(min_value=0, max_value=len(FILTERS) - 1),
)
def test_change_sets_reproduce_the_table(
    key_type: str, ops: list[tuple[Any, ...]], first_filter: int
) -> None:
    k = Keys(key_type)
    with tempfile.TemporaryDirectory() as tmp:
        warehouse = Path(tmp) / "wh"
        warehouse.mkdir()
        catalog = load_catalog(
            "gold", type="sql", uri=f"sqlite:///{tmp}/c.db", warehouse=f"file://{warehouse}"
        )
        catalog.create_namespace("gold")
        schema = Schema(
            NestedField(1, "id", k.iceberg, required=True),
            NestedField(2, "v", StringType(), required=False),
            identifier_field_ids=[1],
        )
        tbl = catalog.create_table("gold.t", schema=schema, properties={"format-version": "2"})
        mirror: dict[Any, Any] = {}
        synced: int | None = None
        text, matches = FILTERS[first_filter]
        refiltered = False
        for op in [*ops, ("sync",)]:
            if op[0] == "refilter":
                refiltered = refiltered or FILTERS[op[1]][0] != text
                text, matches = FILTERS[op[1]]
                continue
            if op[0] != "sync":
                _run(tbl, op, k)
                continue
            tbl = tbl.catalog.load_table("gold.t")
            subset = {key: row for key, row in table_state(tbl, KEY).items() if matches(row["v"])}
            if synced is not None and (refiltered or tbl.snapshot_by_id(synced) is None):
                span = SnapshotRange.of(
                    tbl,
                    ref="main",
                    from_snapshot=synced,
                    key=KEY,
                    to_snapshot=None,
                    batch_rows=7,
                    row_filter=text,
                )
                cs = digests.compare(span, COLUMNS, digest_of(mirror, k), reason="expired")
                want = net_change(mirror, subset)
                assert (cs.counts.inserted, cs.counts.updated, cs.counts.deleted) == want
            else:
                cs = capture(tbl, from_snapshot=synced, key=KEY, row_filter=text)
            assert cs.counts.invalid == 0
            mirror = apply(mirror, cs)
            assert mirror == subset, f"after {ops} with filter {text!r}"
            synced = cs.to_snapshot
            refiltered = False
