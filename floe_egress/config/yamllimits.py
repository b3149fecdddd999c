"""What a YAML text may ask of the loader, checked on each parser event before the
composer and constructor see it: how deep it nests and how far its aliases expand.

Without these limits a small file can exhaust the machine: nine anchors that each repeat
the previous one nine times expand 1.5 KB into 9**9 values (an alias bomb); an alias
inside its own anchor is a structure without end; thousands of nested brackets exhaust
the stack. A floe.yaml needs none of that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    MappingStartEvent,
    NodeEvent,
    ScalarEvent,
)
from ruamel.yaml.parser import RoundTripParser

from floe_egress.config.problems import KeyPath, Problem

MAX_DEPTH = 50
"""Mappings and lists nested deeper than this are refused (floe.yaml needs about 8)."""
MAX_ALIAS_EXPANSION = 10_000
"""Values that aliases may add to the document when expanded."""


@dataclass(slots=True)
class _Open:
    """A mapping or list being read: its anchor, its expanded size so far, and where
    inside it the reader is."""

    is_mapping: bool
    anchor: str | None
    line: int
    size: int = 1
    key: str | int = "?"
    reading_key: bool = True
    index: int = 0

    def position(self) -> str | int:
        return self.key if self.is_mapping else self.index

    def finish_child(self, node: Any) -> None:
        """The child node just read was `node` (the key's text when it was a scalar)."""
        if not self.is_mapping:
            self.index += 1
        elif self.reading_key:
            self.key = node if isinstance(node, str) else "?"
            self.reading_key = False
        else:
            self.reading_key = True


@dataclass(slots=True)
class _Reader:
    stack: list[_Open] = field(default_factory=list)
    anchors: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Closed anchors: name -> (expanded size, line)."""
    added: int = 0

    def path(self) -> KeyPath:
        return tuple(frame.position() for frame in self.stack)

    def problem(self, message: str, line: int) -> Problem:
        return Problem(self.path(), message, line)

    def defined(self, name: str) -> int | None:
        if name in self.anchors:
            return self.anchors[name][1]
        return next((f.line for f in self.stack if f.anchor == name), None)

    def start(self, event: CollectionStartEvent, line: int) -> Problem | None:
        first = self.defined(event.anchor) if event.anchor else None
        if first is not None:
            return self.problem(_reused(event.anchor, first), line)
        if len(self.stack) >= MAX_DEPTH:
            return self.problem(
                f"nested more than {MAX_DEPTH} levels deep: a floe.yaml needs far fewer; "
                "flatten this value",
                line,
            )
        self.stack.append(_Open(isinstance(event, MappingStartEvent), event.anchor, line))
        return None

    def end(self) -> None:
        done = self.stack.pop()
        if done.anchor:
            self.anchors[done.anchor] = (done.size, done.line)
        self.finished(done.size, None)

    def scalar(self, event: ScalarEvent, line: int) -> Problem | None:
        if event.anchor:
            first = self.defined(event.anchor)
            if first is not None:
                return self.problem(_reused(event.anchor, first), line)
            self.anchors[event.anchor] = (1, line)
        self.finished(1, event.value)
        return None

    def alias(self, name: str, line: int) -> Problem | None:
        if any(frame.anchor == name for frame in self.stack):
            return self.problem(
                f"alias *{name} sits inside its own anchor &{name}: that describes a value "
                "without end; repeat the keys instead",
                line,
            )
        size = self.anchors.get(name, (1, line))[0]  # an unknown alias: the parser says so
        self.added += size - 1
        if self.added > MAX_ALIAS_EXPANSION:
            return self.problem(
                f"aliases expand to more than {MAX_ALIAS_EXPANSION:,} values (at *{name}): "
                "use fewer aliases, or anchors that hold less",
                line,
            )
        self.finished(size, None)
        return None

    def see(self, event: Any) -> Problem | None:
        """Account for one parser event; the limit it goes beyond, if any."""
        if not isinstance(event, NodeEvent | CollectionEndEvent):
            return None
        line = event.start_mark.line + 1
        if isinstance(event, CollectionStartEvent):
            return self.start(event, line)
        if isinstance(event, CollectionEndEvent):
            self.end()
        elif isinstance(event, ScalarEvent):
            return self.scalar(event, line)
        elif isinstance(event, AliasEvent):
            return self.alias(event.anchor, line)
        return None

    def finished(self, size: int, node: Any) -> None:
        if self.stack:
            self.stack[-1].size += size
            self.stack[-1].finish_child(node)


def _reused(name: str, first: int) -> str:
    return f"anchor &{name} is defined again (first on line {first}): give each anchor its own name"


class LimitExceeded(Exception):
    """The text goes beyond a limit; carries the `Problem` (key path, line, what)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


class LimitedParser(RoundTripParser):
    """ruamel's round-trip parser that raises `LimitExceeded` at the first event beyond
    a limit: the composer (which recurses once per level) and the constructor (which
    expands aliases) never see it. Install it with `yaml.Parser = LimitedParser`."""

    def __init__(self, loader: Any) -> None:
        super().__init__(loader)
        self._reader = _Reader()

    def get_event(self) -> Any:
        event = super().get_event()
        problem = self._reader.see(event)
        if problem is not None:
            raise LimitExceeded(problem)
        return event


__all__ = ["MAX_ALIAS_EXPANSION", "MAX_DEPTH", "LimitExceeded", "LimitedParser"]
