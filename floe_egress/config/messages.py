"""pydantic's validation errors rewritten as plain `Problem`s about floe.yaml keys."""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from floe_egress.config.problems import KeyPath, Problem, describe, did_you_mean


def problems_from_validation_error(
    exc: ValidationError, model: type[BaseModel], data: Any, prefix: KeyPath = ()
) -> list[Problem]:
    """One `Problem` per pydantic error; `model` is the class that validated `data`."""
    return problems_from_errors(exc.errors(), model, data, prefix)


def problems_from_errors(
    errors: Iterable[ErrorDetails], model: type[BaseModel], data: Any, prefix: KeyPath = ()
) -> list[Problem]:
    problems = [
        Problem((*prefix, *key_path(error, data)), plain_message(error, model)) for error in errors
    ]
    return _merge_alternatives(problems)


def key_path(error: ErrorDetails, data: Any) -> KeyPath:
    """The error's location as keys of the input: union member labels (`'bearer'`,
    `'int'`) dropped, and a union's tag key named when the tag is what is wrong."""
    path: list[str | int] = []
    node = data
    loc = error["loc"]
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(node, dict) and (part in node or last):
            path.append(part)
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            path.append(part)
            node = node[part]
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        tag = str((error.get("ctx") or {}).get("discriminator", "")).strip("'")
        if tag.isidentifier():
            path.append(tag)
    return tuple(path)


def _merge_alternatives(problems: list[Problem]) -> list[Problem]:
    # A union (`int | str`) fails once per member at the same key: say it once.
    merged: list[Problem] = []
    for problem in problems:
        previous = merged[-1] if merged else None
        if previous is not None and previous.path == problem.path:
            first, second = (
                _TYPE_MESSAGE.match(previous.message),
                _TYPE_MESSAGE.match(problem.message),
            )
            if first and second and first["got"] == second["got"]:
                message = f"must be {first['what']} or {second['what']}, got {first['got']}"
                merged[-1] = Problem(problem.path, message, problem.line)
                continue
        merged.append(problem)
    return merged


_LENGTH_OF_TEXT = {"too_short": "string_too_short", "too_long": "string_too_long"}
_TYPE_MESSAGE = re.compile(r"^must be (?P<what>.+), got (?P<got>.+)$")


def plain_message(error: ErrorDetails, model: type[BaseModel]) -> str:
    kind = error["type"]
    if kind in _LENGTH_OF_TEXT and isinstance(error.get("input"), str):
        # A length limit put on a validated string reports itself as the length of a list.
        kind = _LENGTH_OF_TEXT[kind]
    if kind == "float_type" and type(error.get("input")) is int:
        kind = "finite_number"  # an integer too large for a float
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    got = describe(error.get("input"))
    handler = _HANDLERS.get(kind)
    if handler is not None:
        return handler(ctx, got)
    if kind == "extra_forbidden":
        key = str(error["loc"][-1]) if error["loc"] else ""
        return f"unknown key {key!r}" + did_you_mean(key, keys_at(model, error["loc"][:-1]))
    if kind in ("literal_error", "enum"):
        return _one_of(ctx, error.get("input"), got)
    if kind == "union_tag_invalid":
        tags = {"expected": ctx.get("expected_tags", "")}
        return _one_of(tags, ctx.get("tag"), describe(ctx.get("tag")))
    if kind == "union_tag_not_found":
        return "required key is missing"
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    return _generic(error["msg"], got, kind)


def _num(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _chars(n: Any) -> str:
    return f"{n} character" + ("" if n == 1 else "s")


def _items(n: Any) -> str:
    return f"{n} item" + ("" if n == 1 else "s")


def _too_short_str(ctx: dict[str, Any], got: str) -> str:
    if ctx.get("min_length") == 1:
        return "must not be empty"
    return f"must be at least {_chars(ctx.get('min_length'))} long, got {got}"


def _kind(what: str) -> Callable[[dict[str, Any], str], str]:
    return lambda _ctx, got: f"must be {what}, got {got}"


_HANDLERS: dict[str, Callable[[dict[str, Any], str], str]] = {
    "missing": lambda _ctx, _got: "required key is missing",
    "greater_than": lambda ctx, _got: f"must be greater than {_num(ctx.get('gt'))}",
    "greater_than_equal": lambda ctx, _got: f"must be at least {_num(ctx.get('ge'))}",
    "less_than": lambda ctx, _got: f"must be less than {_num(ctx.get('lt'))}",
    "less_than_equal": lambda ctx, _got: f"must be at most {_num(ctx.get('le'))}",
    "string_too_short": _too_short_str,
    "string_too_long": lambda ctx, _got: f"must be at most {_chars(ctx.get('max_length'))} long",
    "too_short": lambda ctx, _got: f"must have at least {_items(ctx.get('min_length'))}",
    "too_long": lambda ctx, _got: f"must have at most {_items(ctx.get('max_length'))}",
    "string_pattern_mismatch": lambda ctx, got: (
        f"must match the pattern {ctx.get('pattern')}, got {got}"
    ),
    "finite_number": _kind("a finite number"),
    "int_parsing_size": _kind("an integer of a sensible size"),
    "int_parsing": _kind("an integer"),
    "int_type": _kind("an integer"),
    "int_from_float": _kind("a whole number"),
    "float_parsing": _kind("a number"),
    "float_type": _kind("a number"),
    "bool_parsing": _kind("true or false"),
    "bool_type": _kind("true or false"),
    "string_type": _kind("a string"),
    "dict_type": _kind("a mapping"),
    "model_type": _kind("a mapping"),
    "model_attributes_type": _kind("a mapping"),
    "list_type": _kind("a list"),
    "tuple_type": _kind("a list"),
    "set_type": _kind("a list"),
}


def _one_of(ctx: dict[str, Any], value: Any, got: str) -> str:
    choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
    if len(choices) == 1:
        return f"must be {choices[0]!r}, got {got}"
    listed = ", ".join(choices) if choices else str(ctx.get("expected"))
    hint = did_you_mean(value, choices) if isinstance(value, str) else ""
    return f"must be one of {listed}; got {got}{hint}"


def _generic(msg: str, got: str, kind: str) -> str:
    text = re.sub(r"^(Value|Assertion) error, ", "", msg)
    text = re.sub(r"^Input should", "must", text)
    if kind.endswith("_type") and " got " not in text:
        text = f"{text}, got {got}"
    return text[:1].lower() + text[1:]


def keys_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """The keys the model accepts at `loc` (aliases first), for did-you-mean hints."""
    target = _type_at(model, loc)
    if isinstance(target, type) and issubclass(target, BaseModel):
        return [field.alias or name for name, field in target.model_fields.items()]
    return []


def _type_at(annotation: Any, loc: tuple[str | int, ...]) -> Any:
    current = annotation
    for part in loc:
        current = _unwrap(current)
        member = _union_member(current, part)
        if member is not None:
            current = member
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            current = _field_type(current, str(part))
        elif get_origin(current) in (list, tuple, set) and isinstance(part, int):
            current = get_args(current)[0] if get_args(current) else Any
        elif get_origin(current) is dict:
            args = get_args(current)
            current = args[1] if len(args) == 2 else Any
        else:
            return None
        if current is None:
            return None
    return _unwrap(current)


def _union_member(annotation: Any, label: str | int) -> Any:
    """The member of a union of models that pydantic's location label names, if any."""
    if get_origin(annotation) not in (Union, types.UnionType):
        return None
    for option in get_args(annotation):
        option = _unwrap(option)
        if not (isinstance(option, type) and issubclass(option, BaseModel)):
            continue
        if label == option.__name__:
            return option
        for field in option.model_fields.values():
            if get_origin(field.annotation) is Literal and label in get_args(field.annotation):
                return option
    return None


def _field_type(model: type[BaseModel], key: str) -> Any:
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            return field.annotation
    return None


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin is Union or origin is types.UnionType:
            options = [a for a in get_args(annotation) if a is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation


__all__ = ["keys_at", "plain_message", "problems_from_errors", "problems_from_validation_error"]
