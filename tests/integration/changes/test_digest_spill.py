"""The bounded-memory path of the digest (changes/digest_spill*.py), forced on small
tables: it must give exactly the change sets, effective digests and compactions the
fast path gives (inserts, updates, deletes, unsure, unknown, reserved-only and gone
keys, invalid keys, composite and string keys), whether DuckDB reads B's files itself
or Arrow reads them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.catalog import Catalog
from pyiceberg.expressions import In
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.types import LongType, NestedField, StringType

from floe_egress.changes import digest as digests
from floe_egress.changes import digest_spill
from floe_egress.changes.digest_spill import SPILL_ROWS, Spilled
from floe_egress.changes.model import ChangeSet
from floe_egress.changes.ranges import SnapshotRange
from floe_egress.daemon.digest import as_entries, load, load_for_compare
from floe_egress.errors import DigestDamagedError
from floe_egress.state import Checkpoint, CycleCommit, DigestUpdate, RunRecord, open_store
from floe_egress.state import digest as state_digest
from tests.fixtures.tables import change_rows

Segments = list[tuple[bool, pa.Table]]


@pytest.fixture(params=["fold-all", "fold-around-largest"], autouse=True)
def fold(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both folds of the spilled path: everything grouped, or the largest held segment
    kept but for the keys the others name (normally from 100,000 entries)."""
    if request.param == "fold-all":
        monkeypatch.setattr(digest_spill, "AROUND_ROWS", 10**12)
    else:
        monkeypatch.setattr(digest_spill, "AROUND_ROWS", 0)
    return str(request.param)


def _table(catalog: Catalog, name: str, *, arrow_read: bool, nullable: bool = False) -> Table:
    # A column named like what read_parquet adds makes the comparison read B with Arrow.
    extra = "filename" if arrow_read else "note"
    schema = Schema(
        NestedField(1, "id", LongType(), required=not nullable),
        NestedField(2, "name", StringType(), required=False),
        NestedField(3, extra, StringType(), required=False),
    )
    return catalog.create_table(f"gold.{name}", schema=schema)


def _rows(tbl: Table, data: dict[int | None, str | None] | list[tuple[Any, Any]]) -> pa.Table:
    items = list(data.items()) if isinstance(data, dict) else data
    schema = tbl.schema().as_arrow()
    names = schema.names
    return pa.table(
        {
            names[0]: [k for k, _ in items],
            names[1]: [v for _, v in items],
            names[2]: ["x"] * len(items),
        },
        schema,
    )


def _span(tbl: Table, key: tuple[str, ...]) -> SnapshotRange:
    return SnapshotRange.of(
        tbl, ref="main", from_snapshot=None, key=key, to_snapshot=None, batch_rows=3
    )


def _spilled(segments: Segments, key: Sequence[str]) -> Spilled:
    spilled = Spilled(key)
    for i, (reserved, entries) in enumerate(segments):
        spilled.add_segment(reserved, digests.encode(entries), label=f"segment {i}")
    spilled.fold()
    return spilled


def _outcome(cs: ChangeSet) -> tuple[Any, ...]:
    rows = sorted(
        (tuple(sorted((k, str(v)) for k, v in r.items())) for r in change_rows(cs)),
    )
    sample = sorted((i.reason, str(i.key), i.rows) for i in cs.invalid_sample)
    return (cs.plan, cs.counts, sample, rows)


def _both(
    tbl: Table,
    segments: Segments,
    key: tuple[str, ...],
    columns: Sequence[str],
    *,
    everything: bool = False,
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(fast path, spilled path) outcomes of comparing B with `segments`."""
    effective = digests.effective(segments, key)
    fast = digests.compare(_span(tbl, key), columns, effective, reason="r", everything=everything)
    spilled = _spilled(segments, key)
    assert spilled.to_arrow().to_pylist() == effective.to_pylist()
    slow = digests.compare(_span(tbl, key), columns, spilled, reason="r", everything=everything)
    by_b = digests.compare(
        _span(tbl, key), columns, effective, reason="r", everything=everything, spill_rows=0
    )
    assert _outcome(by_b) == _outcome(slow), "an Arrow digest spilled because B is large"
    return _outcome(fast), _outcome(slow)


@pytest.mark.parametrize("arrow_read", [False, True], ids=["duckdb-reads", "arrow-reads"])
@pytest.mark.parametrize("everything", [False, True], ids=["digest", "everything"])
def test_the_spilled_path_sends_what_the_fast_path_sends(
    sqlite_catalog: Catalog, arrow_read: bool, everything: bool
) -> None:
    tbl = _table(sqlite_catalog, "items", arrow_read=arrow_read)
    for start in (1, 6, 11):
        tbl.append(_rows(tbl, {i: f"n{i}" for i in range(start, start + 5)}))
    held_rows = _rows(tbl, {i: f"n{i}" for i in range(1, 16)} | {30: "gone long ago"})
    tbl.delete(delete_filter=In("id", [3, 4, 7]))
    tbl.append(_rows(tbl, {20: "new", 21: "newer"}))
    tbl.upsert(_rows(tbl, {5: "changed"}), join_cols=["id"])
    key, columns = ("id",), ("id", "name")
    segments: Segments = [
        (False, digests.entries(held_rows, key, columns)),
        (False, digests.entries(_rows(tbl, {6: "changed behind"}), key, columns)),
        (False, digests.gone_entries(_rows(tbl, {8: None}), key)),  # B has it: an insert
        (False, digests.unknown_entries(_rows(tbl, {9: None}), key)),
        (True, digests.entries(_rows(tbl, {10: "n10", 20: "new", 40: "r"}), key, columns)),
    ]

    fast, slow = _both(tbl, segments, key, columns, everything=everything)

    assert slow == fast
    counts = fast[1]
    if not everything:
        # 20 reserved only (insert), 21 (insert), 8 gone (insert); 5, 6 differ, 9 unknown,
        # 10 unsure (updates); 3, 4, 7, 30 and 40 (reserved only) are deleted.
        assert (counts.inserted, counts.updated, counts.deleted) == (3, 4, 5)


@pytest.mark.parametrize("arrow_read", [False, True], ids=["duckdb-reads", "arrow-reads"])
def test_null_and_repeated_keys_are_invalid_alike(
    sqlite_catalog: Catalog, arrow_read: bool
) -> None:
    tbl = _table(sqlite_catalog, "messy", arrow_read=arrow_read, nullable=True)
    tbl.append(_rows(tbl, [(1, "a"), (2, "b"), (2, "b2"), (None, "x"), (None, "y"), (6, "f")]))
    key, columns = ("id",), ("id", "name")
    segments: Segments = [
        (False, digests.entries(_rows(tbl, {2: "b", 5: "e", 6: "f"}), key, columns))
    ]

    fast, slow = _both(tbl, segments, key, columns)

    assert slow == fast
    assert (fast[1].inserted, fast[1].deleted, fast[1].invalid) == (1, 1, 4)


def test_a_composite_string_key_compares_alike(sqlite_catalog: Catalog) -> None:
    schema = Schema(
        NestedField(1, "region", StringType(), required=True),
        NestedField(2, "code", StringType(), required=True),
        NestedField(3, "value", LongType(), required=False),
    )
    tbl = sqlite_catalog.create_table("gold.regional", schema=schema)
    arrow = tbl.schema().as_arrow()
    tbl.append(
        pa.table(
            {
                "region": ["eu", "eu", "us", "us"],
                "code": ["a", "b", "a", "c"],
                "value": [1, 2, 3, 4],
            },
            arrow,
        )
    )
    key, columns = ("region", "code"), ("region", "code", "value")
    was = pa.table(
        {"region": ["eu", "eu", "us", "ap"], "code": ["a", "b", "a", "a"], "value": [1, 9, 3, 5]},
        arrow,
    )
    segments: Segments = [(False, digests.entries(was, key, columns))]

    fast, slow = _both(tbl, segments, key, columns)

    assert slow == fast
    assert (fast[1].inserted, fast[1].updated, fast[1].deleted) == (1, 1, 1)


def _store_with(tmp_path: Path, segments: Segments) -> Any:
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    held = [t for reserved, t in segments if not reserved]
    for i, entries in enumerate(held):
        update = DigestUpdate("fp", digests.encode(entries), entries.num_rows, replace=i == 0)
        checkpoint = Checkpoint("crm", "gold.items", "main", i + 1, 1, ("id",), 1.0)
        run = RunRecord("crm", 1.0, 1.5, "ok", "full", None, i + 1)
        store.commit_cycle(CycleCommit(checkpoint=checkpoint, run=run, digest=update))
    for reserved, entries in segments:
        if reserved:
            store.reserve_digest("crm", digests.encode(entries), entries.num_rows)
    return store


def _entries(data: dict[int, str | None]) -> pa.Table:
    arrow = pa.schema([pa.field("id", pa.int64()), pa.field("name", pa.string())])
    table = pa.table({"id": list(data), "name": list(data.values())}, arrow)
    return digests.entries(table, ("id",), ("id", "name"))


def test_a_large_digest_is_loaded_spilled_and_compacts_as_the_fast_path_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_digest, "COPY_CHUNK", 100)  # segments copied in many parts
    segments: Segments = [
        (False, _entries({i: f"n{i}" for i in range(1, 50)})),
        (False, _entries({2: "two"})),
        (False, digests.gone_entries(_entries({3: None}), ("id",))),
        (True, _entries({4: "four?", 60: "sixty?"})),
    ]
    store = _store_with(tmp_path, segments)

    fast = load(store, "crm", ("id",))
    small = load_for_compare(store, "crm", ("id",))
    spilled = load_for_compare(store, "crm", ("id",), spill_rows=10)

    assert isinstance(small, pa.Table) and SPILL_ROWS > 1_000_000
    assert isinstance(spilled, Spilled)
    assert spilled.num_rows == fast.num_rows == 49
    assert spilled.to_arrow().to_pylist() == fast.to_pylist()
    directory = spilled.directory
    later = [
        _entries({5: "five", 70: "seventy"}),
        digests.gone_entries(_entries({6: None}), ("id",)),
    ]
    data, rows = spilled.compacted(later)
    expected = as_entries(
        digests.effective([(False, as_entries(fast)), *[(False, p) for p in later]], ("id",))
    )
    assert digests.decode(data).to_pylist() == expected.to_pylist()
    assert rows == expected.num_rows == 49
    spilled.close()
    assert not os.path.exists(directory), "the spill directory goes with the digest"


def test_a_damaged_segment_is_reported_not_trusted(tmp_path: Path) -> None:
    store = _store_with(tmp_path, [(False, _entries(dict.fromkeys(range(1, 20), "v")))])
    data = b"PAR1 not a parquet file PAR1"
    store.reserve_digest("crm", data, 5)

    with pytest.raises(DigestDamagedError, match="destination crm: digest segment 2"):
        load_for_compare(store, "crm", ("id",), spill_rows=1)


def test_a_held_segment_naming_a_key_twice_folds_as_the_fast_path_folds() -> None:
    """The fold around the largest segment gives way to the whole fold when that segment
    names a key twice (which entry of one segment wins is not defined: same values here)."""
    twice = pa.concat_tables([_entries({1: "a", 2: "b", 3: "c"}), _entries({2: "b", 3: "c"})])
    gone = digests.gone_entries(_entries({3: None}), ("id",))
    segments: Segments = [(False, twice), (False, gone.cast(twice.schema))]

    spilled = _spilled(segments, ("id",))

    assert spilled.to_arrow().to_pylist() == digests.effective(segments, ("id",)).to_pylist()
    assert spilled.num_rows == 2


@pytest.mark.parametrize("arrow_read", [False, True], ids=["duckdb-reads", "arrow-reads"])
def test_where_the_fast_path_cannot_match_keys_the_sql_plan_and_the_spilled_path_agree(
    sqlite_catalog: Catalog, arrow_read: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A digest whose keys do not convert to B's key types has no fast path: beyond
    FALLBACK_SPILL_ROWS it spills instead of taking the in-memory SQL plan."""
    tbl = _table(sqlite_catalog, "fallback", arrow_read=arrow_read, nullable=True)
    tbl.append(_rows(tbl, [(1, "a"), (2, "b2"), (2, "b3"), (None, "x"), (4, "d"), (5, "e")]))
    key, columns = ("id",), ("id", "name")
    segments: Segments = [
        (False, digests.entries(_rows(tbl, {1: "a", 3: "c", 4: "old"}), key, columns)),
        (True, digests.entries(_rows(tbl, {5: "e", 6: "f"}), key, columns)),
    ]
    effective = digests.effective(segments, key)
    monkeypatch.setattr(digests, "compare_files", lambda *a, **k: None)
    outcomes = []
    for rows in (10**12, 0):
        monkeypatch.setattr(digests, "FALLBACK_SPILL_ROWS", rows)
        cs = digests.compare(_span(tbl, key), columns, effective, reason="r")
        outcomes.append(_outcome(cs))

    assert outcomes[0] == outcomes[1]
    counts = outcomes[0][1]
    assert (counts.inserted, counts.updated, counts.deleted, counts.invalid) == (1, 1, 2, 3)
