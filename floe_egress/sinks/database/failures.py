"""dlt and driver exceptions turned into sink errors that name the destination.

dlt's own transient/terminal marking follows the driver's exception class (psycopg2
calls a syntax error "operational", so dlt retries it), and a failed load job keeps only
its message: the database's own words decide here. Messages never carry the password.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator

from floe_egress.config.secrets import MASK, redact
from floe_egress.errors import PermanentSinkError, SinkError, TransientSinkError

# A value some row holds that the database (or the driver, or dlt's Python side) cannot
# take: the batch is split to find the row. Most are caught before sending (refusals.py).
_ROW = re.compile(
    r"violates|violation|constraint\b[^\n]*\bfailed|duplicate key|duplicate entry|out of range|"
    r"too long|invalid input|incorrect \w+ value|data truncat|cannot be null|"
    r"conversion error|could not convert|numeric field overflow|"
    r"invalid byte sequence|unsupported unicode escape sequence|not json serializable|"
    r"can ?not be used with mysql|"
    r'column "-?(nan|inf|infinity)" does not exist',
    re.IGNORECASE,
)
_REFUSED = re.compile(
    r"password authentication failed|authentication failed|access denied|"
    r"role \S+ does not exist|database \S+ does not exist|unknown database|"
    r"no pg_hba\.conf entry|permission denied|must be owner|"
    r"syntax error|does not exist",
    re.IGNORECASE,
)
_TRANSIENT = re.compile(
    r"connection refused|could not connect|can't connect|server closed the connection|"
    r"could not translate host name|name resolution|name or service not known|"
    r"no route to host|network is unreachable|"
    r"connection reset|connection (was )?lost|lost connection|gone away|"
    r"terminating connection|connection timed out|timeout expired|timed out|"
    r"could not set lock|database is locked|too many connections|"
    r"the database system is (starting up|shutting down|in recovery mode)|"
    r"deadlock|could not serialize|broken pipe|ssl syscall",
    re.IGNORECASE,
)


def chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what it wraps: causes, contexts, dlt's step and database wrappers."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for attr in ("exception", "dbapi_exception", "inner_exc", "orig"):
            inner = getattr(current, attr, None)
            if isinstance(inner, BaseException):
                todo.append(inner)
        for inner in (current.__cause__, current.__context__):
            if inner is not None:
                todo.append(inner)


def root_message(exc: BaseException) -> str:
    """The innermost message: the database's own words where there are some."""
    messages = [str(e).strip() for e in chain(exc) if str(e).strip()]
    if not messages:
        return type(exc).__name__
    innermost = messages[-1]
    first_line = innermost.splitlines()[0]
    return first_line[:500]


def _pg_codes(exc: BaseException) -> list[str]:
    """The SQLSTATEs of the PostgreSQL errors in `exc`'s chain (psycopg2's `pgcode`)."""
    codes = [getattr(e, "pgcode", None) for e in chain(exc)]
    return [str(code) for code in codes if code]


def _pg_row_error(exc: BaseException) -> bool:
    """PostgreSQL said: a value (class 22, data exception) or a constraint (class 23).
    Decided by SQLSTATE, not by words: the message's DETAIL quotes the row, whose values
    may hold anything ("the job timed out")."""
    return any(code[:2] in ("22", "23") for code in _pg_codes(exc))


def _pg_operational(exc: BaseException) -> bool:
    """A psycopg2 OperationalError or InternalError (a lock or statement timeout, a full
    disk, out of memory, a read-only server): transient to dlt, and so here."""
    for e in chain(exc):
        if type(e).__module__.startswith("psycopg2"):
            import psycopg2

            if isinstance(e, psycopg2.OperationalError | psycopg2.InternalError):
                return True
    return False


def is_transient(exc: BaseException) -> bool:
    if _pg_row_error(exc):
        return False
    text = "\n".join(f"{type(e).__name__}: {e}" for e in chain(exc))
    if _TRANSIENT.search(text):
        return True
    if _REFUSED.search(text) or _ROW.search(text):
        return False
    if any(isinstance(e, OSError) for e in chain(exc)):  # the network, a full disk
        return True
    if _pg_operational(exc):
        return True
    # dlt's exceptions exist only once dlt is imported: a connection check raises none.
    dlt_exceptions = sys.modules.get("dlt.common.exceptions")
    if dlt_exceptions is None:
        return False
    transient: type[BaseException] = dlt_exceptions.TransientException
    return any(isinstance(e, transient) for e in chain(exc))


def is_row_error(exc: BaseException) -> bool:
    """The database refused some values (constraint, range, conversion, a character or
    number it cannot store), not the batch."""
    if _pg_row_error(exc):
        return True
    text = "\n".join(str(e) for e in chain(exc))
    return bool(_ROW.search(text)) and not _TRANSIENT.search(text)


def mask(text: str, masked: tuple[str, ...]) -> str:
    for secret in masked:
        text = text.replace(secret, MASK)
    return str(redact(text))


def sink_error(exc: BaseException, what: str, masked: tuple[str, ...]) -> SinkError:
    """`what` (which names the destination) with the database's reason, classified."""
    message = mask(f"{what}: {root_message(exc)}", masked)
    if not is_transient(exc):
        return PermanentSinkError(message)
    return TransientSinkError(message)


__all__ = ["chain", "is_row_error", "is_transient", "mask", "root_message", "sink_error"]
