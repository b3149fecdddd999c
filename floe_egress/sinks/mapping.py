"""Field mapping and sync-mode routing, shared by every sink type."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pyarrow as pa
import pyarrow.compute as pc

from floe_egress.changes.model import OP_COLUMN
from floe_egress.config.models import SyncMode

_MODE_OPS: dict[str, frozenset[str]] = {
    "upsert": frozenset({"insert", "update"}),
    "update": frozenset({"update"}),
    "insert": frozenset({"insert"}),
    "mirror": frozenset({"insert", "update", "delete"}),
    "append": frozenset({"insert", "update", "delete"}),
}


def ops_for_mode(mode: SyncMode) -> frozenset[str]:
    """The change ops a mode delivers; the others are dropped before delivery."""
    return _MODE_OPS[mode]


def filter_for_mode(changes: pa.Table, mode: SyncMode) -> pa.Table:
    """Keep only the rows whose op the mode delivers."""
    wanted = _MODE_OPS[mode]
    if wanted == frozenset({"insert", "update", "delete"}):
        return changes
    mask = pc.is_in(changes[OP_COLUMN], value_set=pa.array(sorted(wanted), pa.string()))
    return changes.filter(mask)


def apply_field_mapping(
    changes: pa.Table, mapping: Mapping[str, str] | None, *, keep: tuple[str, ...] = (OP_COLUMN,)
) -> pa.Table:
    """Select and rename columns: `source -> destination`; unmapped columns are dropped.

    Columns in `keep` (the op column by default) are kept under their own names. With no
    mapping every column is kept as is.
    """
    if mapping is None:
        return changes
    missing = [src for src in mapping if src not in changes.column_names]
    if missing:
        raise KeyError(
            f"field_mapping names columns the table does not have: {missing} "
            f"(table columns: {[c for c in changes.column_names if c not in keep]})"
        )
    names = [*mapping, *(k for k in keep if k in changes.column_names and k not in mapping)]
    clash = mapping_clash(mapping, [k for k in keep if k in changes.column_names])
    if clash is not None:
        raise KeyError(clash)
    selected = changes.select(names)
    return selected.rename_columns([mapping.get(n, n) for n in names])


def mapping_clash(mapping: Mapping[str, str] | None, kept: Iterable[str]) -> str | None:
    """What is wrong when a mapped field takes the name of a column that is kept under
    its own name (a key column not in field_mapping); None when nothing is."""
    if mapping is None:
        return None
    clashes = sorted(
        f"{src!r} -> {mapping[src]!r} is also the field of key column {own!r}, which is "
        "not in field_mapping and so keeps its own name"
        for src in mapping
        for own in kept
        if own not in mapping and mapping[src] == own
    )
    if not clashes:
        return None
    return f"field_mapping {'; '.join(clashes)}: map the key column as well"
