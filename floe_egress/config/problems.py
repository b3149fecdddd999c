"""Configuration problems: where (key path, line) and what, collected and reported together."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from floe_egress.errors import ConfigError

KeyPath = tuple[str | int, ...]

_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_\-]+$")
_LONGEST_SHOWN = 60
"""Longer strings and numbers are shortened in messages."""


def format_path(path: KeyPath) -> str:
    """`ingestion.destinations[1].rate_limit`; keys with dots or spaces are quoted."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`; did you mean 'x'?` when one of the choices is close to the word, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def describe(value: Any) -> str:
    """A value as a message shows it after 'got': quoted strings, plain numbers, kinds."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if len(value) > _LONGEST_SHOWN:
            return f"{value[:_LONGEST_SHOWN]!r}... ({len(value)} characters)"
        return repr(value)
    if isinstance(value, int) and abs(value) >= 10**_LONGEST_SHOWN:
        return f"a number of more than {_LONGEST_SHOWN} digits"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the configuration: its key path, a plain message, its line."""

    path: KeyPath
    message: str
    line: int | None = None

    @property
    def key(self) -> str:
        return format_path(self.path)

    def render(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line is not None else source
        return f"{where} {self.key}: {self.message}" if self.path else f"{where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.key, "line": self.line, "message": self.message}

    def with_prefix(self, prefix: KeyPath) -> Problem:
        return Problem((*prefix, *self.path), self.message, self.line)


def sort_problems(problems: Iterable[Problem]) -> list[Problem]:
    # Stable: problems on one line keep the order they were found in.
    return sorted(problems, key=lambda p: p.line if p.line is not None else 0)


class ConfigValidationError(ConfigError):
    """The configuration has problems; `.problems` lists every one, sorted by line."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems: tuple[Problem, ...] = tuple(sort_problems(problems))
        super().__init__("\n".join(p.render(source) for p in self.problems))


__all__ = [
    "ConfigValidationError",
    "KeyPath",
    "Problem",
    "describe",
    "did_you_mean",
    "format_path",
    "sort_problems",
]
