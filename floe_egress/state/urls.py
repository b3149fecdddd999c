"""State store URLs: which backend, where, and how to show them without the password.

    sqlite:///relative/path.db      relative to the working directory
    sqlite:////absolute/path.db
    sqlite:// or sqlite:///:memory: in memory (tests)
    postgresql://user:pw@host:5432/db[?schema=NAME][&<libpq parameters>]
    postgres://...                  the same

`schema=NAME` (lowercase letters, digits, `_`) puts the tables in that schema and
creates it if missing. Any libpq parameter passes through, e.g.
`options=-csearch_path%3Dname` for a schema that already exists.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlencode

from floe_egress.errors import StateSetupError

SQLITE_MEMORY = ":memory:"
DEFAULT_CONNECT_TIMEOUT_S = 10
_PASSWORD_PARAM = re.compile(r"(?i)(\bpassword=)([^&\s]*)")
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _password_span(url: str) -> tuple[int, int] | None:
    """Where the password of `scheme://user:password@host...` sits in `url`.

    Up to the LAST `@`, so an unencoded `@`, `/`, `?` or `#` in the password is still
    covered: showing too little of a URL is better than showing a secret.
    """
    start = url.find("://")
    if start < 0:
        return None
    start += 3
    colon = url.find(":", start)
    at = url.rfind("@")
    if colon < 0 or at < colon:
        return None
    user = url[start:colon]
    if "@" in user or "/" in user:
        return None
    return colon + 1, at


def redact_url(url: str) -> str:
    """`url` with its password (in the authority or a `password=` parameter) as ***."""
    span = _password_span(url)
    if span is not None:
        url = f"{url[: span[0]]}***{url[span[1] :]}"
    return _PASSWORD_PARAM.sub(r"\1***", url)


def scrub(text: str, url: str) -> str:
    """`text` (e.g. a driver's error message) without any form of `url`'s password."""
    secrets = {m.group(2) for m in _PASSWORD_PARAM.finditer(url)}
    span = _password_span(url)
    if span is not None:
        secrets.add(url[span[0] : span[1]])
    for secret in list(secrets):
        secrets.add(unquote(secret))
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return _PASSWORD_PARAM.sub(r"\1***", text)


def sqlite_path(url: str) -> str:
    """The file path of a `sqlite://` URL, or SQLITE_MEMORY."""
    if url in ("sqlite://", f"sqlite:///{SQLITE_MEMORY}"):
        return SQLITE_MEMORY
    path = url.removeprefix("sqlite:///")
    if not url.startswith("sqlite:///") or not path:
        raise StateSetupError(
            f"state.url {url!r} names no file: use sqlite:///relative/path.db "
            "or sqlite:////absolute/path.db"
        )
    if "?" in path:
        raise StateSetupError(
            f"state.url {url!r}: query parameters are not supported for SQLite; remove them"
        )
    return path


def postgres_dsn(url: str) -> tuple[str, str | None]:
    """The libpq connection string of a postgresql:// URL, and its `schema` parameter.

    A connect timeout is added unless the URL sets one, so an unreachable server fails
    the open instead of hanging it.
    """
    import psycopg2
    import psycopg2.extensions

    base, query = _split_query(url)
    params = parse_qsl(query, keep_blank_values=True)
    schema = next((v for k, v in params if k == "schema"), None)
    if schema is not None and not _SCHEMA.fullmatch(schema):
        raise StateSetupError(
            f"state.url {redact_url(url)}: schema={schema!r} is not a plain lowercase "
            "identifier (letters, digits, _); choose another schema name"
        )
    rest = urlencode([(k, v) for k, v in params if k != "schema"])
    try:
        libpq = psycopg2.extensions.parse_dsn(f"{base}?{rest}" if rest else base)
    except psycopg2.Error as exc:
        # libpq quotes the part it could not parse, which may be a piece of the password.
        detail = "" if _password_span(url) else f" ({scrub(str(exc).strip(), url)})"
        raise StateSetupError(
            f"state.url {redact_url(url)} is not a valid PostgreSQL URL{detail}: expected "
            "postgresql://user:password@host:port/database with @ / ? # % in the password "
            "URL-encoded"
        ) from None
    libpq.setdefault("connect_timeout", str(DEFAULT_CONNECT_TIMEOUT_S))
    if schema:
        libpq["options"] = f"{libpq.get('options', '')} -csearch_path={schema}".strip()
    return psycopg2.extensions.make_dsn(**libpq), schema


def _split_query(url: str) -> tuple[str, str]:
    """Split at the `?` that starts the query, searching after any password."""
    span = _password_span(url)
    mark = url.find("?", span[1] if span else 0)
    return (url, "") if mark < 0 else (url[:mark], url[mark + 1 :])
