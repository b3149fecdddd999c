"""Reading floe.yaml into plain Python data plus the line of every key."""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import ConstructorError, RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError, YAMLWarning
from ruamel.yaml.reader import ReaderError

from floe_egress.config.problems import KeyPath, Problem
from floe_egress.config.yamllimits import LimitedParser, LimitExceeded
from floe_egress.errors import ConfigError

_DUPLICATE_KEY = re.compile(r'found duplicate key "(?P<key>.*?)" with value')


@dataclass(frozen=True, slots=True)
class LineMap:
    """1-based line of every key and list item; a missing key maps to its parent's line."""

    lines: Mapping[KeyPath, int] = field(default_factory=dict)

    def line_of(self, path: KeyPath) -> int | None:
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None


@dataclass(frozen=True, slots=True)
class YamlDocument:
    data: Any
    lines: LineMap


class YamlProblem(ConfigError):
    """The text is not a YAML document this loader can use; carries one `Problem`."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def parse_yaml(text: str) -> YamlDocument:
    """Parse one YAML document (round-trip loader: safe, keeps positions), within the
    limits of `yamllimits` (nesting depth, alias expansion)."""
    yaml = YAML(typ="rt")
    yaml.Parser = LimitedParser
    yaml.Constructor = _Constructor
    try:
        with warnings.catch_warnings():
            # Reused anchors, the one warning that matters, are refused by LimitedParser.
            warnings.simplefilter("ignore", YAMLWarning)
            node = yaml.load(text)
    except LimitExceeded as exc:
        raise YamlProblem(exc.problem) from None
    except MarkedYAMLError as exc:
        raise YamlProblem(_syntax_problem(exc)) from None
    except ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        what = f"the character #x{exc.character:04x}" if isinstance(exc.character, int) else ""
        message = f"invalid YAML: {what}: {exc.reason}" if what else f"invalid YAML: {exc.reason}"
        raise YamlProblem(Problem((), message, line)) from None
    except YAMLError as exc:
        raise YamlProblem(Problem((), f"invalid YAML: {exc}")) from None
    lines: dict[KeyPath, int] = {}
    if isinstance(node, CommentedMap | CommentedSeq):
        lines[()] = node.lc.line + 1
    return YamlDocument(_plain(node, (), lines), LineMap(lines))


class _Constructor(RoundTripConstructor):
    """ruamel's round-trip constructor, whose failures to build a value (a date like
    2024-13-01, a 5,000-digit integer, `!!bool maybe`) say on which line they are."""

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            tag = str(getattr(node.tag, "value", None) or node.tag)
            kind = tag.rsplit(":", 1)[-1] if tag.startswith("tag:yaml.org,2002:") else tag
            raise ConstructorError(
                problem=f"this value cannot be read as a YAML {kind}: quote it if it is "
                "meant as text",
                problem_mark=node.start_mark,
            ) from None


def _syntax_problem(exc: MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    problem = str(exc.problem or exc.context or "not valid YAML")
    duplicate = _DUPLICATE_KEY.match(problem)
    if duplicate:
        # ruamel's message quotes both values, which may be secrets pasted inline.
        return Problem((), f"duplicate key {duplicate['key']!r}", line)
    context = ""
    if exc.context and exc.problem and exc.context_mark is not None:
        context = f" ({exc.context} started on line {exc.context_mark.line + 1})"
    return Problem((), f"invalid YAML: {problem}{context}", line)


def _plain(node: Any, path: KeyPath, lines: dict[KeyPath, int]) -> Any:
    """ruamel's round-trip types as plain dict/list/str/int/float/bool, recording lines."""
    if isinstance(node, CommentedMap):
        out: dict[Any, Any] = {}
        for key in node:
            child = (*path, key if isinstance(key, str | int) else str(key))
            # A key merged in with `<<` has no position of its own: it takes its parent's.
            position = (node.lc.data or {}).get(key)
            if position is not None:
                lines[child] = position[0] + 1
            out[_plain(key, (), {})] = _plain(node[key], child, lines)
        return out
    if isinstance(node, CommentedSeq):
        items: list[Any] = []
        for index, value in enumerate(node):
            position = node.lc.item(index)
            if position is not None:
                lines[(*path, index)] = position[0] + 1
            items.append(_plain(value, (*path, index), lines))
        return items
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


__all__ = ["LineMap", "YamlDocument", "YamlProblem", "parse_yaml"]
