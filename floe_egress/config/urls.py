"""Network addresses in floe.yaml: well-formed URLs and hosts, and which hosts are loopback.

`url_problem` judges the form of a URL only (scheme, host present, port in range, no
control characters); which schemes and addresses a destination may use is the sinks'
address policy. Messages never quote the URL: it may carry a password.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection
from typing import Any
from urllib.parse import SplitResult, urlsplit

from floe_egress.config.fields import refuse_control_characters
from floe_egress.config.secrets import has_references

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_\-]{0,61}[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"{_LABEL}(\.{_LABEL})*\.?")
HOST_SCHEMES = frozenset({"http", "https", "thrift", "s3", "s3a", "s3n", "gs", "abfs", "abfss"})
"""Schemes whose URLs name nothing without a host."""


def url_problem(
    value: str,
    *,
    schemes: Collection[str] | None = None,
    require_host: bool | None = None,
) -> str | None:
    """What is wrong with the form of URL `value`, or None.

    `schemes`: the schemes allowed (any when None). `require_host`: whether the URL must
    name a host (default: for the schemes in `HOST_SCHEMES`). A value that starts with a
    secret reference is judged once resolved; a reference elsewhere (a password) leaves
    the rest to judge. Control characters are refused by `refuse_control_characters`,
    which raises; call it first where that error is wanted.
    """
    if value.startswith("${"):
        return None
    if not _SCHEME.match(value):
        return "is not a URL: expected scheme://host[:port]/path"
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        return f"is not a valid URL: {exc}"
    scheme = parts.scheme.lower()
    if schemes is not None and scheme not in schemes:
        allowed = ", ".join(f"{s}://" for s in sorted(schemes))
        return f"must be a URL starting with {allowed} (got a {scheme}:// URL)"
    host_info = parts.netloc.rpartition("@")[2]
    if has_references(host_info):
        return None
    return _host_problem(parts, scheme, require_host)


def _host_problem(parts: SplitResult, scheme: str, require_host: bool | None) -> str | None:
    needs_host = scheme in HOST_SCHEMES if require_host is None else require_host
    host = parts.hostname
    if needs_host and not host:
        return "names no host: expected scheme://host[:port]/path"
    if host and not is_host(host):
        return f"has a malformed host {host!r}"
    try:
        port = parts.port
    except ValueError:
        port_text = parts.netloc.rpartition("@")[2].rpartition(":")[2]
        return f"has an invalid port {port_text!r}: a port is a number from 1 to 65535"
    if port == 0:
        return "has port 0: a port is a number from 1 to 65535"
    return None


def check_url(
    value: str,
    *,
    schemes: Collection[str] | None = None,
    require_host: bool | None = None,
) -> str:
    """`value` unchanged, for pydantic validators: raises on control characters and on
    anything `url_problem` finds (ValueError, so the message names the key)."""
    refuse_control_characters(value)
    problem = url_problem(value, schemes=schemes, require_host=require_host)
    if problem is not None:
        raise ValueError(problem)
    return value


def check_catalog_value(value: Any) -> Any:
    """A catalog property unchanged: strings (nested ones too) without control
    characters, and a string that is a URL (`uri`, `warehouse`, `s3.endpoint`, ...)
    well-formed."""
    if isinstance(value, str):
        refuse_control_characters(value)
        if _SCHEME.match(value):
            check_url(value)
    elif isinstance(value, dict):
        for item in value.values():
            check_catalog_value(item)
    elif isinstance(value, list):
        for item in value:
            check_catalog_value(item)
    return value


_SQLITE_MEMORY = re.compile(r"(?i)(^|[?&])mode=memory(&|$)")


def check_state_url(value: str) -> str:
    """`state.url` unchanged when it names a durable store: a SQLite file or a
    PostgreSQL database. An in-memory SQLite database would lose the checkpoint at exit."""
    refuse_control_characters(value)
    if value.startswith("${"):
        return value
    if not value.startswith(("sqlite://", "postgresql://", "postgres://")):
        raise ValueError(
            "must be a sqlite:/// path or a postgresql:// URL "
            f"(got {value.split(':', 1)[0]!r} scheme)"
        )
    if not value.startswith("sqlite:"):
        return check_url(value, require_host=False)
    path, _, query = value.removeprefix("sqlite:///").partition("?")
    if value == "sqlite://" or path == ":memory:" or _SQLITE_MEMORY.search(query):
        raise ValueError(
            "is an in-memory SQLite database: the checkpoint would vanish when the process "
            "exits and every row would be sent again; use sqlite:///path/to/state.db"
        )
    if not value.startswith("sqlite:///") or not path:
        raise ValueError(
            "names no file: use sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    if query:
        raise ValueError("query parameters are not supported for SQLite; remove them")
    return value


def is_host(text: str) -> bool:
    """Whether `text` is an IP address or a well-formed host name."""
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return bool(_HOST_NAME.fullmatch(text)) and len(text) <= 253
    return True


def is_loopback(host: str) -> bool:
    """True when `host` is reachable from this machine only ("" means every address)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


__all__ = [
    "HOST_SCHEMES",
    "check_catalog_value",
    "check_state_url",
    "check_url",
    "is_host",
    "is_loopback",
    "url_problem",
]
