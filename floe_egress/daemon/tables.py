"""Table handles kept across cycles, loaded again only when the table moved.

A handle is a pyiceberg `Table`: its metadata, read from the metadata file its catalog
pointed at when it was loaded. The SQL catalog tells the current pointer in one row
(changes/pointer.py); while it names the kept handle's file, the handle is the table.
Other catalogs are asked by a load, as before; a load made to read the pointer is handed
to the cycle that follows, so a poll that finds the table moved loads it once.

Safe to share between the daemon's worker threads: at worst two threads load the same
table at once and the later handle is kept.
"""

from __future__ import annotations

import os

from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from floe_egress.changes import load_table
from floe_egress.changes.pointer import metadata_pointer

NO_POLL_CHECK = os.environ.get("FLOE_EGRESS_BENCH_NO_POLL_CHECK") == "1"
"""Only for bench/idle.py's baseline: every load loads, and every poll runs a full
cycle (polls.py), as before polls were cheap. Not a setting: never set it in service."""


class Tables:
    def __init__(self) -> None:
        self._kept: dict[str, Table] = {}
        self._fresh: dict[str, Table] = {}
        """Handles loaded by `pointer` (catalogs without a cheap pointer), for the next
        `load` of the same table."""

    def load(self, catalog: Catalog, identifier: str) -> Table:
        """The current table: the kept handle while the pointer has not moved."""
        fresh = self._fresh.pop(identifier, None)
        if fresh is not None:
            return fresh
        kept = None if NO_POLL_CHECK else self._kept.get(identifier)
        if kept is not None and metadata_pointer(catalog, identifier) == kept.metadata_location:
            return kept
        table = load_table(catalog, identifier)
        self._kept[identifier] = table
        return table

    def pointer(self, catalog: Catalog, identifier: str) -> str:
        """Where the table's current metadata file is: one SQL row for the SQL catalog,
        a load (kept for the next `load`) for the others."""
        location = metadata_pointer(catalog, identifier)
        if location is not None:
            return location
        table = load_table(catalog, identifier)
        self._kept[identifier] = self._fresh[identifier] = table
        return table.metadata_location

    def settled(self, identifier: str) -> None:
        """No cycle follows the poll that read the pointer: a later `load` asks again."""
        self._fresh.pop(identifier, None)


__all__ = ["NO_POLL_CHECK", "Tables"]
