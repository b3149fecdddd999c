"""The few database calls the SQL store makes, written once per dialect.

Plain statements use `?` placeholders. Bulk work on keys (the ledger can hold millions
of rows) has one method per operation, so each backend can use its fastest path:
executemany inside the transaction for SQLite, arrays and COPY for PostgreSQL.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal, Protocol

from floe_egress.state.store import LedgerEntry

KeyTable = Literal["failed_rows", "ledger"]


class Cursor(ABC):
    """A cursor inside one open transaction."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    @abstractmethod
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    @abstractmethod
    def fetchone(self) -> tuple[Any, ...] | None: ...

    @abstractmethod
    def fetchall(self) -> list[tuple[Any, ...]]: ...

    @abstractmethod
    def delete_keys(self, table: KeyTable, destination: str, keys: Sequence[str]) -> None:
        """Delete the rows of `destination` whose key_json is in `keys`."""

    @abstractmethod
    def select_ledger(self, destination: str, keys: Sequence[str]) -> list[tuple[str, int]]:
        """(key_json, row_hash) of the ledger rows of `destination` among `keys`."""

    @abstractmethod
    def write_ledger(
        self, destination: str, entries: Sequence[LedgerEntry], *, emptied: bool
    ) -> None:
        """Upsert `entries` (distinct keys). `emptied`: the destination has no ledger rows
        left in this transaction, so plain inserts suffice."""


class Transactions(Protocol):
    """What the store's parts (the ledger, the leases) need back from the store."""

    def transaction(self, *, write: bool = True) -> AbstractContextManager[Cursor]:
        """A cursor in one transaction: committed on exit, rolled back on any error."""
