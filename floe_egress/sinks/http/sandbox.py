"""The sandbox rest_api templates render in (templates.py): Jinja2's immutable sandbox
with a render budget.

A template sees only what it is given, a short list of filters and a budgeted `range`:
no other globals, no attribute of a Python object but a few plain methods of text and
mappings, no `str.format` and no `%` on text.

Each render has a budget (`Budget`, set with `budget_scope`): `MAX_SECONDS`, `MAX_STEPS`
(each step of a `for`, each item a filter takes), a size for any one value, join or
output (a list held many times over counted each time), `PRODUCED` times that for all
the text it writes, macros and blocks included, and integers of `MAX_INT_BITS` bits.
`{{ }}` writes text JSON-escaped, so a value inside a JSON string cannot close it;
`tojson`'s output and what macros and blocks return (`Json`) are written as they are.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.filters import FILTERS
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from floe_egress.sinks.http.budget import (
    MAX_DEPTH,
    MAX_STEPS,
    Budget,
    OverBudget,
    current_budget,
)

MAX_INT_BITS = 14_000
"""About 4,200 decimal digits (CPython writes at most 4,300 as text)."""
_UNSIZED = frozenset({"length", "count", "default", "d", "first", "last"})

_STR_METHODS = (
    "lower upper strip lstrip rstrip startswith endswith title capitalize split rsplit "
    "splitlines isdigit isalpha isalnum isspace islower isupper"
)
_SAFE_METHODS: dict[type, frozenset[str]] = {
    str: frozenset(_STR_METHODS.split()),
    dict: frozenset({"get", "items", "keys", "values"}),
}
_FILTER_NAMES = (
    "abs capitalize default d dictsort first float groupby items last length count list "
    "lower map max min reject rejectattr reverse round select selectattr sort title trim "
    "truncate unique upper urlencode"
)


class Json(str):
    """Text written as it is, not JSON-escaped: tojson's, or a macro's or block's."""


def text_size(value: Any, limit: int) -> int:
    """About how many characters `value` takes as text or JSON, counted up to `limit`:
    a list holding itself four times over, ten deep, is never written out to find out."""
    total = seen = 0
    stack = [value]
    while stack:
        item = stack.pop()
        seen += 1
        if seen % 4096 == 0:
            current_budget().tick()
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
    """`finalize`: what `{{ }}` writes, sized and counted; text JSON-escaped."""
    if isinstance(value, Json):
        return value  # counted when it was made (by tojson, a macro or a block)
    if isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False)[1:-1]
        current_budget().produce(len(value))
    elif not isinstance(value, int | float | bool | type(None)):
        text_size(value, current_budget().max_chars)
    return value


def checked_int(value: Any) -> Any:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise OverBudget(f"an integer of more than {MAX_INT_BITS:,} bits")
    return value


def _argument(budget: Budget, name: str, value: Any) -> Any:
    """A filter's argument, sized; an iterator (`map`'s) taken in item by item."""
    if isinstance(value, Iterator):
        items, total = [], 0
        for item in value:
            budget.step()
            total += text_size(item, budget.max_chars)
            budget.size(total)
            items.append(item)
        return items
    if name not in _UNSIZED and not isinstance(value, Context | ImmutableSandboxedEnvironment):
        text_size(value, budget.max_chars)
        if isinstance(value, list | tuple | Mapping):
            budget.step(len(value))  # the items a filter goes through (a key function each)
    return value


def _budgeted(name: str, filter_: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(filter_)
    def run(*args: Any, **kwargs: Any) -> Any:
        budget = current_budget()
        budget.tick()
        args = tuple(_argument(budget, name, arg) for arg in args)
        kwargs = {key: _argument(budget, name, arg) for key, arg in kwargs.items()}
        result = filter_(*args, **kwargs)
        if isinstance(result, str):
            budget.produce(len(result))
        return checked_int(result)

    return run


def tojson(value: Any) -> str:
    """Compact JSON that keeps non-ASCII text as it is; NaN and infinity refused."""
    budget = current_budget()
    text_size(value, budget.max_chars)
    try:
        text = json.dumps(
            value, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_unjson
        )
    except (TypeError, ValueError) as exc:
        raise SecurityError(f"tojson cannot write this value: {exc}") from None
    budget.produce(len(text))
    return Json(text)


def _unjson(value: Any) -> Any:
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    raise TypeError(f"a {type(value).__name__} is not a JSON value")


def _string(value: Any) -> str:
    text_size(value, current_budget().max_chars)
    return str(value)


def _replace(value: Any, old: str, new: str, count: int | None = None) -> str:
    text = str(value)
    times = text.count(old) if count is None else min(count, text.count(old))
    current_budget().size(len(text) + times * max(0, len(new) - len(old)))
    return text.replace(old, new, -1 if count is None else count)


def _int(value: Any, default: int = 0, base: int = 10) -> Any:
    if isinstance(value, str) and len(value) > MAX_INT_BITS // 3:
        raise OverBudget(f"an integer written in more than {MAX_INT_BITS // 3:,} characters")
    return checked_int(FILTERS["int"](value, default, base))


def _sum(values: Any, attribute: str | None = None, start: int | float = 0) -> Any:
    if not isinstance(start, int | float):
        raise SecurityError("sum adds numbers only")
    total = start
    for item in values:
        current_budget().step()
        found = item.get(attribute) if attribute is not None and isinstance(item, dict) else item
        if not isinstance(found, int | float):
            raise SecurityError(f"sum adds numbers only, got {type(found).__name__}")
        total = checked_int(total + found)
    return total


def _range(*args: int) -> range:
    """`range`, no longer than the loop steps left (a `for` counts its steps itself)."""
    numbers = range(*args)
    if len(numbers) > current_budget().steps:
        raise OverBudget(f"it took more than {MAX_STEPS:,} loop steps")
    return numbers


def _loop_steps(values: Any) -> Iterator[Any]:
    budget = current_budget()
    for value in values:
        budget.step()
        yield value


class _CodeGenerator(CodeGenerator):
    """Literals sized (a list holding one list twice, ten deep, is 1,024 lists' worth);
    `~` sized; buffers joined by `Sandbox.concat`, which sizes them."""

    def _sized(self, visit: Callable[[Any, Frame], None], node: Any, frame: Frame) -> None:
        sized = getattr(node, "ctx", "load") == "load"  # not a tuple assigned to
        self.write("environment.checked_value(" if sized else "(")
        visit(node, frame)
        self.write(")")

    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self._sized(super().visit_List, node, frame)

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self._sized(super().visit_Dict, node, frame)

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        self._sized(super().visit_Tuple, node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.checked_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})
    intercepted_unops = frozenset({"-", "+"})
    code_generator_class = _CodeGenerator

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False, finalize=_checked)
        self.filters = {name: _budgeted(name, FILTERS[name]) for name in _FILTER_NAMES.split()}
        self.filters |= {
            "join": _budgeted("join", FILTERS["join"]),
            "int": _budgeted("int", _int),
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
        for const in tree.find_all(nodes.Const):
            if isinstance(const.value, int) and const.value.bit_length() > MAX_INT_BITS:
                problem = f"an integer of more than {MAX_INT_BITS:,} bits"
                raise TemplateSyntaxError(problem, const.lineno, name, filename)
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
        budget = current_budget()
        budget.size(sum(text_size(p, budget.max_chars) for p in parts))
        text = "".join(map(str, parts))
        budget.produce(len(text))
        return text

    def checked_value(self, value: Any) -> Any:
        text_size(value, current_budget().max_chars)
        return value

    def concat(self, parts: Iterable[str]) -> str:
        """What a macro, `set` or `filter` block, `caller()` or `self.block()` returns:
        sized before it is joined, and counted."""
        budget = current_budget()
        kept, total = [], 0
        for part in parts:
            total += len(part)
            budget.size(total)
            kept.append(part)
        budget.produce(total)
        return Json("".join(kept))

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        budget = current_budget()
        budget.tick()
        budget.depth += 1  # stopped well before Python's own recursion limit
        try:
            if budget.depth > MAX_DEPTH:
                raise OverBudget("it calls itself too deeply (a macro or loop that never ends)")
            return super().call(context, obj, *args, **kwargs)
        finally:
            budget.depth -= 1

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = current_budget()
        budget.tick()
        checked_int(left)
        checked_int(right)
        if operator == "%" and isinstance(left, str):
            raise SecurityError("`%` on text is not available in templates; join text with ~")
        if operator == "**" and _power_bits(left, right) > MAX_INT_BITS:
            raise OverBudget(f"an integer of more than {MAX_INT_BITS:,} bits")
        if operator == "*":
            _check_product(budget, left, right)
        if operator == "+" and isinstance(left, str | list | tuple):
            budget.size(_length(budget, left) + _length(budget, right))
        return checked_int(super().call_binop(context, operator, left, right))

    def call_unop(self, context: Context, operator: str, arg: Any) -> Any:
        current_budget().tick()
        return checked_int(super().call_unop(context, operator, checked_int(arg)))


def _power_bits(left: Any, right: Any) -> int:
    if not (isinstance(left, int) and isinstance(right, int)) or right <= 0 or abs(left) < 2:
        return 0
    return (abs(left).bit_length() - 1) * right


def _length(budget: Budget, value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    return text_size(value, budget.max_chars) if isinstance(value, list | tuple) else 0


def _check_product(budget: Budget, left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS + 1:
            raise OverBudget(f"an integer of more than {MAX_INT_BITS:,} bits")
        return
    sequence, times = (right, left) if isinstance(left, int) else (left, right)
    if isinstance(sequence, str | list | tuple) and isinstance(times, int):
        budget.size(_length(budget, sequence) * max(times, 0))


SANDBOX = Sandbox()
