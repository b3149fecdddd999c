"""Classifying the rows of two sides of a diff whose key is one integer-like column
and repeats on neither side, with numpy (see diff.py for what the classes mean).

B is matched against A a slice at a time: through a table indexed by key when the keys
are ids (they span a range at most twice the number of rows), except for millions of
keys in key order on both sides (a digest always is; files written in key order too),
which are found by a binary search in A as it is; else by sorting A. Beyond the keys
and hashes this costs a flag per row of A and the arrays of one slice (and the table
by key, 5 bytes per key of the range), never an array per matched row.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_EMPTY = np.zeros(0, dtype=np.int64)
_SLICE = 1 << 18
_SEARCH_ABOVE = 2_000_000


def integer_view(column: pa.ChunkedArray) -> np.ndarray | None:
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


def classify_integers(
    a_keys: np.ndarray,
    a_hashes: np.ndarray,
    a_null: np.ndarray,
    b_keys: np.ndarray,
    b_hashes: np.ndarray,
    b_null: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(inserts, updates, deletes) for unique integer keys; None when a key repeats.

    B is matched a slice at a time, so what it costs beyond the keys and hashes is a few
    arrays of one slice and a flag per row of A, not arrays of every matched row."""
    a_rows = np.flatnonzero(~a_null) if a_null.any() else None
    b_rows = np.flatnonzero(~b_null) if b_null.any() else None
    ka = a_keys if a_rows is None else a_keys[a_rows]
    kb = b_keys if b_rows is None else b_keys[b_rows]
    # A table indexed by key (ids) is fastest, at 5 bytes per key of their range; for
    # millions of keys on two sides in key order (a digest always is, files written in
    # order often are) a binary search in A as it is costs no memory and ~15% more time.
    a_in_order = _in_order(ka)
    searched = a_in_order and len(ka) + len(kb) > _SEARCH_ABOVE and _in_order(kb)
    lookup = _dense_lookup(ka, kb) if len(ka) and len(kb) and not searched else None
    if lookup is None:
        lookup = _sorted_lookup(ka, kb, a_in_order)
    if lookup is None:
        return None
    ha = a_hashes if a_rows is None or not len(a_hashes) else a_hashes[a_rows]
    hb = b_hashes if b_rows is None or not len(b_hashes) else b_hashes[b_rows]
    matched = np.zeros(len(ka), dtype=bool)
    inserts, updates = [_EMPTY], [_EMPTY]
    for start in range(0, len(kb), _SLICE):
        in_a = lookup(kb[start : start + _SLICE])
        hit = in_a >= 0
        inserts.append(np.flatnonzero(~hit) + start)
        b_hit = np.flatnonzero(hit)
        a_hit = in_a[b_hit]
        matched[a_hit] = True
        b_hit += start
        updates.append(b_hit[ha[a_hit] != hb[b_hit]])
    found_inserts, found_updates = np.concatenate(inserts), np.concatenate(updates)
    deletes = np.flatnonzero(~matched)
    if b_rows is not None:
        found_inserts, found_updates = b_rows[found_inserts], b_rows[found_updates]
    if a_rows is not None:
        deletes = a_rows[deletes]
    return found_inserts, found_updates, deletes


Lookup = Callable[[np.ndarray], np.ndarray]
"""Keys of B -> the row of A holding each (within A's non-null keys), -1 where none."""


def _dense_lookup(ka: np.ndarray, kb: np.ndarray) -> Lookup | None:
    """A table indexed by key, when the keys span a range at most twice the number of
    rows (ids); None otherwise, or when a key repeats."""
    low = min(int(ka.min()), int(kb.min()))
    span = max(int(ka.max()), int(kb.max())) - low + 1
    if span > 2 * (len(ka) + len(kb)) or max(len(ka), len(kb)) >= 2**31:
        return None
    row_of = np.full(span, -1, dtype=np.int32)  # key - low -> its row in A
    for start in range(0, len(ka), _SLICE):
        part = ka[start : start + _SLICE]
        row_of[part - low] = np.arange(start, start + len(part), dtype=np.int32)
    held = sum(int(np.count_nonzero(row_of[i : i + _SLICE] >= 0)) for i in range(0, span, _SLICE))
    if held != len(ka):
        return None  # a key of A repeats
    seen = np.zeros(span, dtype=bool)
    for start in range(0, len(kb), _SLICE):
        seen[kb[start : start + _SLICE] - low] = True
    if np.count_nonzero(seen) != len(kb):
        return None  # a key of B repeats
    del seen
    return lambda keys: row_of[keys - low].astype(np.int64)


def _sorted_lookup(ka: np.ndarray, kb: np.ndarray, a_in_order: bool) -> Lookup | None:
    """A binary search in A's keys in order (sorted when they are not already); None
    when a key repeats."""
    a_order = None if a_in_order else np.argsort(ka, kind="stable")
    a_sorted = ka if a_order is None else ka[a_order]
    if _repeats(a_sorted) or not _distinct(kb):
        return None
    if not len(a_sorted):
        return lambda keys: np.full(len(keys), -1, dtype=np.int64)

    def lookup(keys: np.ndarray) -> np.ndarray:
        order = None if _in_order(keys) else np.argsort(keys, kind="stable")
        queries = keys if order is None else keys[order]  # searched in order: 10x faster
        # Only the part of A the slice's keys span (it stays in the CPU's cache).
        low = int(np.searchsorted(a_sorted, queries[0])) if len(queries) else 0
        high = int(np.searchsorted(a_sorted, queries[-1], side="right")) if len(queries) else 0
        found = np.searchsorted(a_sorted[low:high], queries) + low
        np.minimum(found, len(a_sorted) - 1, out=found)
        hit = a_sorted[found] == queries
        rows = np.where(hit, found if a_order is None else a_order[found], -1)
        if order is not None:
            rows[order] = rows.copy()
        return rows

    return lookup


def _distinct(keys: np.ndarray) -> bool:
    """No key repeats: checked in order, or with a flag per key when they span a range
    at most four times their number (ids), or sorted."""
    if _in_order(keys):
        return not _repeats(keys)
    low = int(keys.min())
    span = int(keys.max()) - low + 1
    if span > 4 * len(keys):
        return not _repeats(np.sort(keys))
    seen = np.zeros(span, dtype=bool)
    for start in range(0, len(keys), _SLICE):
        seen[keys[start : start + _SLICE] - low] = True
    return int(np.count_nonzero(seen)) == len(keys)


def _in_order(keys: np.ndarray) -> bool:
    return bool(len(keys) < 2 or np.all(keys[1:] >= keys[:-1]))


def _repeats(sorted_keys: np.ndarray) -> bool:
    return bool(len(sorted_keys) > 1 and (sorted_keys[1:] == sorted_keys[:-1]).any())


__all__ = ["Lookup", "classify_integers", "integer_view"]
