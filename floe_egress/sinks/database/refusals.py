"""What each database refuses to store, looked for before a batch is sent.

Each of these would otherwise fail the whole batch (PostgreSQL refuses the COPY,
MariaDB's JSON check or its driver refuses the statement, the Python side of dlt's
SQLAlchemy loader cannot convert the value), and the batch would then be split to find
the rows, at two dlt runs per level. Found first, the rows fail alone with a reason
that names the column (see sinks/values.py).

- PostgreSQL: a NUL character in text, top-level or inside a nested value (its text and
  jsonb types cannot hold U+0000); NaN and the infinities inside a nested value (JSON
  has no literal for them); dates and timestamps outside years 1-9999 inside a nested
  value (its JSON text is written through Python, which has no value for them).
- MariaDB/MySQL: NaN and the infinities anywhere (neither DOUBLE nor JSON holds them);
  dates and timestamps outside years 1-9999 (neither DATETIME nor Python holds them).
  MariaDB stores NUL characters in text and in JSON (as `\\u0000`).
- SQLite: dates and timestamps outside years 1-9999 (dlt's loader goes through Python).
  SQLite stores NUL characters, and NaN as NULL.
- DuckDB: nothing (it loads the Arrow values as they are).
"""

from __future__ import annotations

from floe_egress.sinks.values import Rule, beyond_python, not_finite, nul_bytes

_YEARS = "a date or timestamp outside years 1-9999"

POSTGRES = (
    Rule(nul_bytes, "text holds a NUL byte (0x00), which PostgreSQL cannot store"),
    Rule(
        not_finite,
        "NaN or an infinite number inside a nested value, which JSON (PostgreSQL jsonb) "
        "cannot hold",
        nested_only=True,
    ),
    Rule(
        beyond_python,
        f"{_YEARS} inside a nested value, which its JSON text cannot carry",
        nested_only=True,
    ),
)
MYSQL = (
    Rule(not_finite, "NaN or an infinite number, which MariaDB/MySQL cannot store"),
    Rule(beyond_python, f"{_YEARS}, which MariaDB/MySQL cannot store"),
)
SQLITE = (Rule(beyond_python, f"{_YEARS}, which dlt's SQLite loader cannot convert"),)
DUCKDB: tuple[Rule, ...] = ()

__all__ = ["DUCKDB", "MYSQL", "POSTGRES", "SQLITE"]
