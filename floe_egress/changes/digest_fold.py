"""Folding digest segments quickly in the usual case: one large held segment (what a
full send or a compaction wrote: one entry per key, in key order) and a few small ones.

The keys no other segment names keep the large segment's entry as it is; only the
entries of the keys the other segments name are folded (by `changes.digest.effective`'s
own fold), and the two parts are merged in key order. It applies when the key is one
integer-like column and the largest segment is held, without nulls and strictly
increasing; otherwise `fold_sorted` returns None and the caller folds everything.

Segments of about equal size that name each key once between them (the batches of a
full send) are folded by `fold_disjoint` instead: one sort of the keys.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from floe_egress.changes.integers import integer_view

MIN_ROWS = 100_000
"""Below this the plain fold is as fast."""

Fold = Callable[[Sequence[tuple[bool, pa.Table]], Sequence[str]], pa.Table]


def fold_sorted(
    segments: Sequence[tuple[bool, pa.Table]],
    key: Sequence[str],
    fold: Fold,
    *,
    hash_column: str,
    gone_column: str,
    unsure_column: str,
) -> pa.Table | None:
    """The effective digest of `segments` (see the module doc), or None when the
    shortcut does not apply."""
    if len(key) != 1 or not segments:
        return None
    big = max(range(len(segments)), key=lambda i: segments[i][1].num_rows)
    reserved, base = segments[big]
    key_type = base.schema.field(key[0]).type
    if reserved or base.num_rows < MIN_ROWS or base.column(key[0]).null_count:
        return None
    if any(t.num_rows and t.schema.field(key[0]).type != key_type for _, t in segments):
        return None
    keys = integer_view(base.column(key[0]))
    if keys is None or not bool(np.all(keys[1:] > keys[:-1])):
        return None
    others = [t for i, (_, t) in enumerate(segments) if i != big and t.num_rows]
    named = [integer_view(t.column(key[0])) for t in others]
    touched = np.zeros(0, dtype=np.int64)
    if named:
        wanted = np.unique(np.concatenate([k for k in named if k is not None]))
        found = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
        touched = np.unique(found[keys[found] == wanted])
    keep = np.asarray(
        pc.invert(pc.fill_null(base.column(gone_column), False)).to_numpy(zero_copy_only=False),
        dtype=bool,
    )
    keep[touched] = False
    rest = pa.table(
        {
            key[0]: base.column(key[0]),
            hash_column: base.column(hash_column).cast(pa.uint64()),
            unsure_column: pa.array(np.zeros(base.num_rows, dtype=bool)),
        }
    )
    small = rest.schema.empty_table()
    if others:
        picked = base.take(pa.array(touched, pa.int64()))
        small = fold([(r, picked if i == big else t) for i, (r, t) in enumerate(segments)], key)
        small = small.select(rest.column_names).cast(rest.schema) if small.num_rows else small
    if not small.num_rows and bool(keep.all()):
        return rest
    return _merge(rest, keys, keep, small, key[0])


def fold_disjoint(
    segments: Sequence[tuple[bool, pa.Table]],
    key: Sequence[str],
    *,
    hash_column: str,
    gone_column: str,
    unsure_column: str,
) -> pa.Table | None:
    """The effective digest of held segments that name each key once between them (the
    batches of one full send: fifty segments of 100,000 keys for 5M rows), by one sort
    of their keys; None when a segment is reserved, the key is not one integer-like
    column without nulls, or a key repeats."""
    parts = [t for _, t in segments if t.num_rows]
    if len(key) != 1 or not parts or any(reserved for reserved, _ in segments):
        return None
    key_type = parts[0].schema.field(key[0]).type
    views = []
    for part in parts:
        column = part.column(key[0])
        view = integer_view(column) if column.type == key_type and not column.null_count else None
        if view is None:
            return None
        views.append(view)
    keys = np.concatenate(views)
    del views
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    del keys
    if len(ordered) > 1 and not bool(np.all(ordered[1:] > ordered[:-1])):
        return None
    entries = pa.concat_tables(
        [p.select([key[0], hash_column, gone_column]) for p in parts], promote_options="permissive"
    )
    entries = entries.take(pa.array(order))
    del order
    held = pc.invert(pc.fill_null(entries.column(gone_column), True))
    entries = entries.filter(held)
    return pa.table(
        {
            key[0]: entries.column(key[0]),
            hash_column: entries.column(hash_column).cast(pa.uint64()),
            unsure_column: pa.array(np.zeros(entries.num_rows, dtype=bool)),
        }
    )


def _merge(
    rest: pa.Table, keys: np.ndarray, keep: np.ndarray, small: pa.Table, name: str
) -> pa.Table:
    """The rows of `rest` where `keep` (their keys: `keys`, in order) and the rows of
    `small` (in key order, none of them kept), merged in key order."""
    small_keys = integer_view(small.column(name)) if small.num_rows else keys[:0]
    assert small_keys is not None
    kept_keys = keys[keep]
    at = np.searchsorted(kept_keys, small_keys) + np.arange(len(small_keys))
    placed = np.ones(len(kept_keys) + len(small_keys), dtype=bool)
    placed[at] = False
    if not pa.types.is_integer(rest.schema.field(name).type):
        order = np.empty(len(placed), dtype=np.int64)
        order[placed] = np.flatnonzero(keep)
        order[at] = len(keys) + np.arange(len(small_keys))
        return pa.concat_tables([rest, small]).take(pa.array(order))
    # Integer keys: each column merged with numpy (several times faster than a take).
    columns = {}
    for column in rest.column_names:
        parts = (rest.column(column), small.column(column))
        if column == name:
            values = [kept_keys, small_keys]
        else:
            values = [_values(parts[0])[keep], _values(parts[1])]
        merged = np.empty(len(placed), dtype=values[0].dtype)
        merged[placed], merged[at] = values
        mask = None
        if parts[0].null_count or parts[1].null_count:
            mask = np.empty(len(placed), dtype=bool)
            mask[placed], mask[at] = _nulls(parts[0])[keep], _nulls(parts[1])
        columns[column] = pa.array(merged, type=rest.schema.field(column).type, mask=mask)
    return pa.table(columns)


def _values(column: pa.ChunkedArray) -> np.ndarray:
    array = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    if array.null_count:
        array = pc.fill_null(array, False if pa.types.is_boolean(array.type) else 0)
    return np.asarray(array.to_numpy(zero_copy_only=False))


def _nulls(column: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.is_null(column).to_numpy(zero_copy_only=False), dtype=bool)


__all__ = ["MIN_ROWS", "fold_disjoint", "fold_sorted"]
