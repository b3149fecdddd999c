"""What comes back over the wire, taken defensively: redirects refused, bodies bounded.

- Redirects are never followed (every request of the product goes with
  `allow_redirects=False`): an HTTP client re-sends a POST answered 301/302/303 as a GET
  without its body, and the 200 that follows would count a whole batch as delivered. A
  3xx is a PermanentSinkError naming the URL (without its query string, which may carry
  an API key) and where the `Location` pointed: the fix is the configured URL.
- A body is read up to a cap, streamed: `MAX_ERROR_BODY` for an answer that is not 2xx
  (only its first `KEPT_ERROR_BODY` bytes are kept when it is larger, for the message),
  `MAX_OK_BODY` for a 2xx (its records' ids and errors are needed whole; a larger one
  fails the request). Past the cap nothing more is read and the connection is dropped,
  so an endless or huge answer costs at most the cap.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from yarl import URL

from floe_egress.errors import PermanentSinkError

MAX_ERROR_BODY = 1024 * 1024
KEPT_ERROR_BODY = 8 * 1024
MAX_OK_BODY = 32 * 1024 * 1024
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Body:
    data: bytes
    cut_at: int | None = None
    """The cap the body went over (nothing past it was read), or None: read whole."""


def without_query(url: str | URL) -> str:
    """`url` without its query string and fragment (they may carry credentials)."""
    parts = urlsplit(str(url))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


async def read_body(response: aiohttp.ClientResponse) -> Body:
    """The body of `response`, read up to its cap; a larger one is cut and its
    connection closed (not returned to the pool with unread bytes on it)."""
    ok = 200 <= response.status < 300
    cap = MAX_OK_BODY if ok else MAX_ERROR_BODY
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(_CHUNK):
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            response.close()
            data = b"".join(chunks)
            return Body(data if ok else data[:KEPT_ERROR_BODY], cut_at=cap)
    return Body(b"".join(chunks))


def redirect_error(
    where: str, method: str, url: str | URL, status: int, location: str | None
) -> PermanentSinkError:
    """The error for a 3xx answer to `method url`; `where` names the destination."""
    if location:
        target = without_query(URL(str(url)).join(URL(location)))
        pointed = f"with a redirect to {target}"
    else:
        pointed = "without a Location"
    return PermanentSinkError(
        f"{where}: {method} {without_query(url)} was answered HTTP {status} {pointed}; "
        "redirects are not followed (a client re-sends a redirected POST as a GET "
        "without its body): set the URL in sink_config to where the API really is"
    )


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP-date."""
    raw = headers.get("Retry-After")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    # An HTTP-date has one-second resolution and means "not before": add a hair so
    # the retry never lands a tick early.
    return max(0.0, when.timestamp() - time.time()) + 0.01


def too_large_error(where: str, label: str, status: int) -> PermanentSinkError:
    """The error for a 2xx answer over `MAX_OK_BODY`: what it says about each record is
    unknown, so nothing of the request may count as delivered."""
    return PermanentSinkError(
        f"{where}: the answer to {label} (HTTP {status}) is larger than "
        f"{MAX_OK_BODY // 2**20} MiB and was not read further, so what it says about each "
        "record is unknown; send fewer records a request (max_records_per_request)"
    )


def cut_note(cut_at: int | None) -> str:
    """Says that an error body was cut at `cut_at` bytes; empty when it was read whole."""
    if cut_at is None:
        return ""
    return f" (the body was larger than {cut_at // 1024} KiB and was not read further)"


__all__ = [
    "KEPT_ERROR_BODY",
    "MAX_ERROR_BODY",
    "MAX_OK_BODY",
    "Body",
    "cut_note",
    "read_body",
    "redirect_error",
    "retry_after",
    "too_large_error",
    "without_query",
]
