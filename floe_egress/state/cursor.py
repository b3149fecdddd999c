"""The few database calls the SQL store makes, written once per dialect.

Plain statements use `?` placeholders. Bulk work on keys has one method per operation,
so each backend can use its fastest path: executemany inside the transaction for
SQLite, arrays for PostgreSQL.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal, Protocol

KeyTable = Literal["failed_rows"]


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


class Transactions(Protocol):
    """What the store's parts (the ledger, the leases) need back from the store."""

    def transaction(self, *, write: bool = True) -> AbstractContextManager[Cursor]:
        """A cursor in one transaction: committed on exit, rolled back on any error."""
