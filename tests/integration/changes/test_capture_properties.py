"""Property: applying every change set, synced at random points, reproduces the table."""

from __future__ import annotations

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
from pyiceberg.types import LongType, NestedField, StringType

from floe_egress.changes import capture
from tests.fixtures.tables import apply, table_state

KEY = ("id",)
ARROW = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("v", pa.string())])

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
    st.tuples(st.just("sync")),
)


def _arrow(data: dict[int, str | None]) -> pa.Table:
    return pa.table({"id": list(data), "v": list(data.values())}, schema=ARROW)


def _live_keys(tbl: Table) -> set[int]:
    if tbl.current_snapshot() is None:
        return set()
    return set(tbl.scan(selected_fields=("id",)).to_arrow().column("id").to_pylist())


def _run(tbl: Table, op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind == "append":
        # Keys stay unique: an append only brings keys the table does not have.
        fresh = {k: v for k, v in op[1].items() if k not in _live_keys(tbl)}
        if fresh:
            tbl.append(_arrow(fresh))
    elif kind == "upsert":
        if tbl.current_snapshot() is None:
            tbl.append(_arrow(op[1]))
        else:
            tbl.upsert(_arrow(op[1]), join_cols=["id"])
    elif kind == "overwrite":
        low, high = sorted((op[1], op[2]))
        inside = {k: v for k, v in op[3].items() if low <= k < high}
        outside_live = _live_keys(tbl) - set(range(low, high))
        inside = {k: v for k, v in inside.items() if k not in outside_live}
        tbl.overwrite(
            _arrow(inside) if inside else ARROW.empty_table(),
            overwrite_filter=And(GreaterThanOrEqual("id", low), LessThan("id", high)),
        )
    elif kind == "delete":
        low, high = sorted((op[1], op[2]))
        tbl.delete(delete_filter=And(GreaterThanOrEqual("id", low), LessThan("id", high)))
    elif kind == "delete_keys":
        tbl.delete(delete_filter=In("id", op[1]))
    elif kind == "rewrite" and tbl.current_snapshot() is not None:
        tbl.overwrite(tbl.scan().to_arrow())


@pytest.mark.filterwarnings("ignore:Delete operation did not match any records:UserWarning")
@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(operations, min_size=1, max_size=10))
def test_change_sets_reproduce_the_table(ops: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        warehouse = Path(tmp) / "wh"
        warehouse.mkdir()
        catalog = load_catalog(
            "gold", type="sql", uri=f"sqlite:///{tmp}/c.db", warehouse=f"file://{warehouse}"
        )
        catalog.create_namespace("gold")
        schema = Schema(
            NestedField(1, "id", LongType(), required=True),
            NestedField(2, "v", StringType(), required=False),
            identifier_field_ids=[1],
        )
        tbl = catalog.create_table("gold.t", schema=schema)
        mirror: dict[Any, Any] = {}
        synced: int | None = None
        for op in [*ops, ("sync",)]:
            if op[0] != "sync":
                _run(tbl, op)
                continue
            cs = capture(tbl, from_snapshot=synced, key=KEY)
            assert cs.counts.invalid == 0
            mirror = apply(mirror, cs)
            assert mirror == table_state(tbl, KEY), f"after {ops}"
            synced = cs.to_snapshot
