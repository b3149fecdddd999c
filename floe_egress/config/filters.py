"""A destination's `filter:` as written: read with pyiceberg's expression parser (the
syntax of `Table.scan(row_filter=...)`), and compared across cycles. Binding it to a
table's columns and applying it is changes/rowfilter.py's."""

from __future__ import annotations

from pyiceberg.expressions import AlwaysTrue, BooleanExpression
from pyiceberg.expressions.parser import parse
from pyparsing import ParseBaseException

EXAMPLE = "plan = 'enterprise' and mrr > 1000"
MAX_LENGTH = 4096


def parse_filter(text: str) -> BooleanExpression:
    """`text` parsed, or ValueError saying where it stops making sense."""
    if len(text) > MAX_LENGTH:
        raise ValueError(f"a filter has at most {MAX_LENGTH} characters, this one {len(text)}")
    if not text.strip():
        raise ValueError(f"the filter is empty: leave it out, or write e.g. {EXAMPLE}")
    try:
        return parse(text)
    except ParseBaseException as exc:
        near = text[exc.loc : exc.loc + 20]
        where = f"at character {exc.loc + 1} ({near!r})" if near else "at its end"
        raise ValueError(
            f"the filter is not an expression pyiceberg can read {where}; write comparisons "
            f"of columns with literals joined by and/or/not, e.g. {EXAMPLE}"
        ) from None
    except (ValueError, TypeError) as exc:
        raise ValueError(f"the filter cannot be read: {exc}") from None


def stored_filter(text: str | None) -> str | None:
    """A destination's filter as its checkpoint keeps it: None when it has none."""
    return text.strip() if text is not None and text.strip() else None


def same_filter(a: str | None, b: str | None) -> bool:
    """Whether two filters select the same rows as written (spacing, the case of
    keywords and `true` for none aside)."""
    return _canonical(a) == _canonical(b)


def _canonical(text: str | None) -> str | None:
    if text is None or not text.strip():
        return None
    try:
        expression = parse(text)
    except (ParseBaseException, ValueError, TypeError):
        return text.strip()
    return None if isinstance(expression, AlwaysTrue) else repr(expression)


__all__ = ["EXAMPLE", "MAX_LENGTH", "parse_filter", "same_filter", "stored_filter"]
