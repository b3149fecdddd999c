"""Field types shared by the floe.yaml models and the sink types' `sink_config` models.

Every number has a lower and an upper bound and is finite: `.inf`, `.nan` and values
like 10**24 would otherwise pass validation and fail later, far from the key that
caused them (a timer that overflows, a counter SQLite cannot store). Text fields refuse
control characters: a line break pasted at the end of a name, or inside a URL or a
header value, changes what is sent (or is silently dropped by the HTTP client).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

CONTROL_CHARACTERS_ERROR = "control_characters"
"""The pydantic error type of text with a control character in it."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# RFC 9110 token characters: what an HTTP header name may contain.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def control_character(text: str, *, allow: str = "") -> str | None:
    """The first control character in `text` (escaped, e.g. `'\\r'`) that is not in
    `allow`, or None."""
    for match in _CONTROL.finditer(text):
        if match.group() not in allow:
            return repr(match.group())
    return None


def refuse_control_characters(value: str, *, allow: str = "") -> str:
    """`value` unchanged; raises a pydantic error (never quoting the value, which may be
    a secret) when it holds a control character other than those in `allow`."""
    found = control_character(value, allow=allow)
    if found is not None:
        raise PydanticCustomError(
            CONTROL_CHARACTERS_ERROR,
            "contains the control character {char}, which does not belong in this value "
            "(a pasted line break?): remove it",
            {"char": found},
        )
    return value


def _no_controls(value: str) -> str:
    return refuse_control_characters(value)


def _prose(value: str) -> str:
    return refuse_control_characters(value, allow="\t\n\r")


def _identifier(value: str) -> str:
    refuse_control_characters(value)
    if not _IDENTIFIER.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a field name: use letters, digits and underscores, "
            "not starting with a digit (for example external_id)"
        )
    return value


def _header_name(value: str) -> str:
    refuse_control_characters(value)
    if not _HEADER_NAME.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an HTTP header name: use letters, digits and - (for example "
            "X-Api-Key)"
        )
    return value


def _header_value(value: str) -> str:
    return refuse_control_characters(value, allow="\t")


Text = Annotated[str, AfterValidator(_no_controls)]
"""A one-line string: no line breaks, tabs or other control characters."""

Prose = Annotated[str, AfterValidator(_prose)]
"""Free text: tabs and line breaks allowed, other control characters not."""

Identifier = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_identifier)]
"""A field name as destinations take it: `[A-Za-z_][A-Za-z0-9_]*`, at most 128 characters."""

HeaderName = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_header_name)]
"""An HTTP header name (RFC 9110 token)."""

HeaderValue = Annotated[str, Field(max_length=8192), AfterValidator(_header_value)]
"""An HTTP header value: no CR, LF or other control characters (a tab is allowed)."""

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
"""A float that is not `.inf`, `-.inf` or `.nan`; give it bounds too."""

TimeoutSeconds = Annotated[float, Field(allow_inf_nan=False, ge=0.1, le=3600)]
"""A request timeout: from 0.1 s to an hour."""

Port = Annotated[int, Field(ge=1, le=65535)]
"""A TCP port."""

__all__ = [
    "CONTROL_CHARACTERS_ERROR",
    "FiniteFloat",
    "HeaderName",
    "HeaderValue",
    "Identifier",
    "Port",
    "Prose",
    "Text",
    "TimeoutSeconds",
    "control_character",
    "refuse_control_characters",
]
