"""rest_api templates: compiled once, rendered in the sandbox (sandbox.py) within a
render budget, their output checked to be JSON.

A template sees only what it is given (`record`, `records`, `op`, `destination`,
`snapshot_id`): nothing reaches files, the environment or the secrets, which stay in
headers and auth. Any failure, a budget overrun included, is a `TemplateError` naming
the template's key and line.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateSyntaxError
from jinja2.environment import Template
from jinja2.exceptions import TemplateError as JinjaError

from floe_egress.sinks.http.budget import (
    MAX_SECONDS,
    MAX_STEPS,
    Budget,
    OverBudget,
    budget_scope,
)
from floe_egress.sinks.http.sandbox import SANDBOX

MAX_RECORD_CHARS = 1 << 20
MAX_BODY_CHARS = 16 << 20
_TEMPLATE_FILE = "<template>"
_EXCERPT = 80


class TemplateError(Exception):
    """A template that does not compile, or whose render failed or was stopped."""

    def __init__(self, key: str, problem: str, line: int | None = None) -> None:
        self.key = key
        self.problem = problem
        self.line = line
        where = f"{key}, line {line}" if line is not None else key
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True, slots=True)
class Compiled:
    """A template compiled once, with the key it was configured at."""

    key: str
    source: str
    template: Template


def compile_template(key: str, source: str) -> Compiled:
    try:
        return Compiled(key, source, SANDBOX.from_string(source))
    except TemplateSyntaxError as exc:
        raise TemplateError(key, exc.message or "does not compile", exc.lineno) from None
    except Exception as exc:  # an integer literal too long to read, nesting too deep, ...
        raise TemplateError(key, f"does not compile: {type(exc).__name__}: {exc}") from None


def render(compiled: Compiled, context: Mapping[str, Any], max_chars: int) -> str:
    """The text `compiled` renders from `context`, within one render budget."""
    budget = Budget(time.monotonic() + MAX_SECONDS, MAX_STEPS, max_chars)
    written = 0
    parts: list[str] = []
    try:
        with budget_scope(budget):
            for chunk in compiled.template.generate(dict(context)):
                written += len(chunk)
                budget.size(written)
                budget.tick()
                parts.append(chunk)
    except OverBudget as exc:
        raise TemplateError(compiled.key, str(exc), _template_line(exc)) from None
    except RecursionError as exc:
        problem = "stopped: it calls itself too deeply (a macro or loop that never ends)"
        raise TemplateError(compiled.key, problem, _template_line(exc)) from None
    except JinjaError as exc:
        problem = exc.message or type(exc).__name__
        raise TemplateError(compiled.key, problem, _template_line(exc)) from None
    except Exception as exc:  # a failure of the template's own code (a bad int(), ...)
        problem = f"{type(exc).__name__}: {exc}"
        raise TemplateError(compiled.key, problem, _template_line(exc)) from None
    return "".join(parts)


class _NotJson(ValueError):
    pass


def _constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON value")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _NotJson(f"the key {key!r} appears twice in one object")
        found[key] = value
    return found


def _unencodable(value: Any) -> bool:
    """Whether a string in `value` holds a lone surrogate (`"\\ud800"`), which no
    UTF-8 body can carry."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def render_json(compiled: Compiled, context: Mapping[str, Any], max_chars: int) -> tuple[str, Any]:
    """The rendered text and its JSON value; TemplateError when it is not strict JSON
    (NaN and infinity, a key twice in one object and text UTF-8 cannot carry are not)."""
    text = render(compiled, context, max_chars)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        problem = f"rendered text UTF-8 cannot carry ({exc.reason} at character {exc.start})"
        raise TemplateError(compiled.key, problem) from None
    try:
        value = json.loads(text, parse_constant=_constant, object_pairs_hook=_object)
    except _NotJson as exc:
        raise TemplateError(compiled.key, f"rendered text that is not JSON: {exc}") from None
    except RecursionError:
        raise TemplateError(compiled.key, "rendered JSON nested too deeply") from None
    except ValueError as exc:
        line = text.count("\n", 0, getattr(exc, "pos", 0)) + 1
        start = max(0, getattr(exc, "pos", 0) - _EXCERPT // 2)
        excerpt = text[start : start + _EXCERPT]
        problem = (
            f"rendered text that is not JSON ({getattr(exc, 'msg', exc)} at line {line} "
            f"of the output, near {excerpt!r}); write values with the tojson filter"
        )
        raise TemplateError(compiled.key, problem) from None
    if "\\u" in text and _unencodable(value):
        problem = "rendered JSON holding a lone surrogate (\\ud800-\\udfff): not UTF-8"
        raise TemplateError(compiled.key, problem)
    return text, value


def _template_line(exc: BaseException) -> int | None:
    """The template line the failure happened at (jinja rewrites the traceback so that
    template frames carry template line numbers)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _TEMPLATE_FILE:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
