"""The sandbox rest_api templates render in (templates.py): Jinja2's immutable sandbox
with a render budget.

A template sees only what it is given, a short list of filters and a budgeted `range`:
no other globals, no attribute of a Python object but a few plain methods of text and
mappings, no `str.format` and no `%` on text.

Each render has a budget (`Budget`, set with `budget_scope`): `MAX_SECONDS` of time,
`MAX_STEPS` loop steps (every step of every `for`; `range` gives no more numbers than
the steps left) and a limit on the text any one value, join or output may grow to.
Going over raises `OverBudget`. Text can grow where Jinja does not look (`~`, `*`,
`**`, `+`, filters that join or repeat, a list holding itself many times over written
as JSON): each such place checks the size first.
"""

from __future__ import annotations

import contextvars
import functools
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.filters import FILTERS
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_SECONDS = 1.0
MAX_STEPS = 100_000
_OUTSIDE_CHARS = 1 << 20

_SAFE_METHODS: dict[type, frozenset[str]] = {
    str: frozenset(
        [
            "lower",
            "upper",
            "strip",
            "lstrip",
            "rstrip",
            "startswith",
            "endswith",
            "title",
            "capitalize",
            "split",
            "rsplit",
            "splitlines",
            "isdigit",
            "isalpha",
            "isalnum",
            "isspace",
            "islower",
            "isupper",
        ]
    ),
    dict: frozenset({"get", "items", "keys", "values"}),
}
_PLAIN_FILTERS = [
    "abs",
    "capitalize",
    "default",
    "d",
    "dictsort",
    "first",
    "float",
    "groupby",
    "int",
    "items",
    "last",
    "length",
    "count",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "reject",
    "rejectattr",
    "reverse",
    "round",
    "select",
    "selectattr",
    "sort",
    "title",
    "trim",
    "truncate",
    "unique",
    "upper",
    "urlencode",
]
_TEXT_FILTERS = frozenset({"join", "urlencode"})


class OverBudget(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(f"stopped: it ran over its render budget: {reason}")


@dataclass(slots=True)
class Budget:
    """What one render may still spend."""

    deadline: float
    steps: int
    max_chars: int

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise OverBudget(f"it took longer than {MAX_SECONDS:g} s")

    def step(self, count: int = 1) -> None:
        self.steps -= count
        if self.steps < 0:
            raise OverBudget(f"it took more than {MAX_STEPS:,} loop steps")
        if self.steps % 256 == 0:
            self.tick()

    def size(self, chars: int) -> None:
        if chars > self.max_chars:
            limit = f"{self.max_chars:,}"
            raise OverBudget(f"a text of {chars:,} characters, over the limit of {limit}")


_BUDGET: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("budget", default=None)


def _budget() -> Budget:
    budget = _BUDGET.get()
    if budget is None:
        # Outside a render (constant folding at compile time): a fresh small budget.
        return Budget(time.monotonic() + MAX_SECONDS, MAX_STEPS, _OUTSIDE_CHARS)
    return budget


def text_size(value: Any, limit: int) -> int:
    """About how many characters `value` takes as text or JSON, counted up to `limit`:
    a list holding itself four times over, ten deep, is never written out to find out."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item) + 2
        elif isinstance(item, Mapping):
            total += 2 + 2 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            total += 2 + len(item)
            stack.extend(item)
        else:
            total += 24
        if total > limit:
            raise OverBudget(f"a value of more than {limit:,} characters")
    return total


def _checked(value: Any) -> Any:
    if not isinstance(value, str | int | float | bool | type(None)):
        text_size(value, _budget().max_chars)
    elif isinstance(value, str):
        _budget().size(len(value))
    return value


def _budgeted(name: str, filter_: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(filter_)
    def run(*args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.tick()
        if name in _TEXT_FILTERS:
            for arg in args:
                if not isinstance(arg, Context | ImmutableSandboxedEnvironment):
                    text_size(arg, budget.max_chars)
        result = filter_(*args, **kwargs)
        if isinstance(result, str):
            budget.size(len(result))
        return result

    return run


def tojson(value: Any) -> str:
    """Compact JSON that keeps non-ASCII text as it is; NaN and infinity refused."""
    text_size(value, _budget().max_chars)
    try:
        return json.dumps(
            value, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_unjson
        )
    except (TypeError, ValueError) as exc:
        raise SecurityError(f"tojson cannot write this value: {exc}") from None


def _unjson(value: Any) -> Any:
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    raise TypeError(f"a {type(value).__name__} is not a JSON value")


def _string(value: Any) -> str:
    text_size(value, _budget().max_chars)
    return str(value)


def _replace(value: Any, old: str, new: str, count: int | None = None) -> str:
    text = str(value)
    times = text.count(old) if count is None else min(count, text.count(old))
    _budget().size(len(text) + times * max(0, len(new) - len(old)))
    return text.replace(old, new, -1 if count is None else count)


def _sum(values: Any, attribute: str | None = None, start: int | float = 0) -> Any:
    if not isinstance(start, int | float):
        raise SecurityError("sum adds numbers only")
    total = start
    for item in values:
        _budget().step()
        found = item.get(attribute) if attribute is not None and isinstance(item, dict) else item
        if not isinstance(found, int | float):
            raise SecurityError(f"sum adds numbers only, got {type(found).__name__}")
        total += found
    return total


def _range(*args: int) -> range:
    """`range`, no longer than the loop steps left (a `for` counts its steps itself)."""
    numbers = range(*args)
    if len(numbers) > _budget().steps:
        raise OverBudget(f"it took more than {MAX_STEPS:,} loop steps")
    return numbers


def _loop_steps(values: Any) -> Iterator[Any]:
    budget = _budget()
    for value in values:
        budget.step()
        yield value


class _CodeGenerator(CodeGenerator):
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # `a ~ b`, doubled a few times over, would outgrow any memory: check each.
        self.write("environment.checked_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _CodeGenerator

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False, finalize=_checked)
        self.filters = {name: _budgeted(name, FILTERS[name]) for name in _PLAIN_FILTERS}
        self.filters |= {
            "join": _budgeted("join", FILTERS["join"]),
            "replace": _replace,
            "string": _string,
            "sum": _sum,
            "tojson": tojson,
            "floe_loop_steps": _loop_steps,
        }
        self.tests = {n: t for n, t in self.tests.items() if n not in ("callable",)}
        self.globals = {"range": _range}

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            counted = nodes.Filter(
                loop.iter, "floe_loop_steps", [], [], None, None, lineno=loop.iter.lineno
            )
            loop.iter = counted.set_environment(self)
        return tree

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        if not callable(value):
            return True
        return any(isinstance(obj, kind) and attr in names for kind, names in _SAFE_METHODS.items())

    def wrap_str_format(self, value: Any) -> None:
        return None

    def checked_concat(self, parts: Sequence[Any]) -> str:
        budget = _budget()
        budget.size(sum(text_size(p, budget.max_chars) for p in parts))
        return "".join(map(str, parts))

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _budget().tick()
        return super().call(context, obj, *args, **kwargs)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = _budget()
        budget.tick()
        if operator == "%" and isinstance(left, str):
            raise SecurityError("`%` on text is not available in templates; join text with ~")
        if operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
            budget.size(abs(left).bit_length() * right // 3)
        if operator == "*":
            _check_product(budget, left, right)
        if operator == "+" and isinstance(left, str | list | tuple):
            budget.size(len(left) + (len(right) if isinstance(right, str | list | tuple) else 0))
        return super().call_binop(context, operator, left, right)


def _check_product(budget: Budget, left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int):
        budget.size((abs(left).bit_length() + abs(right).bit_length()) // 3)
        return
    sequence, times = (right, left) if isinstance(left, int) else (left, right)
    if isinstance(sequence, str | list | tuple) and isinstance(times, int):
        budget.size(len(sequence) * max(times, 0))


SANDBOX = Sandbox()


@contextmanager
def budget_scope(budget: Budget) -> Iterator[Budget]:
    """Renders inside spend `budget`."""
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)
