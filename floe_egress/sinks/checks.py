"""Checks of each destination against its sink type: known type, valid sink_config, mode.

They work on the raw floe.yaml mappings too, so that one broken destination does not
hide the sink problems of the others. Secret references stay unresolved strings here.
`floe_egress.spec` hands `check_destination_items` to config's loader; each destination
imports only its own sink type's module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from floe_egress.config.fields import CONTROL_CHARACTERS_ERROR
from floe_egress.config.messages import problems_from_errors
from floe_egress.config.models import SYNC_MODES, FloeSpec
from floe_egress.config.problems import KeyPath, Problem, did_you_mean
from floe_egress.config.secrets import has_references
from floe_egress.sinks.registry import SinkType, get_sink_type, sink_type_names

DESTINATIONS: KeyPath = ("ingestion", "destinations")
_ALWAYS = frozenset({"extra_forbidden", CONTROL_CHARACTERS_ERROR})


def check_destinations(spec: FloeSpec) -> list[Problem]:
    """Every sink problem of a validated spec (paths from the top of floe.yaml)."""
    items = [d.model_dump(by_alias=True, exclude_unset=True) for d in spec.ingestion.destinations]
    return check_destination_items(items)


def check_destination_items(items: Sequence[Any], prefix: KeyPath = DESTINATIONS) -> list[Problem]:
    """Sink problems of raw destination mappings; malformed items are left to the models."""
    problems: list[Problem] = []
    for index, item in enumerate(items):
        if isinstance(item, Mapping):
            problems += _check_one(item, (*prefix, index))
    return problems


def _check_one(item: Mapping[str, Any], at: KeyPath) -> list[Problem]:
    name = item.get("sink_type")
    if not isinstance(name, str) or not name:
        return []
    sink_type = get_sink_type(name)
    if sink_type is None:
        known = sink_type_names()
        available = ", ".join(known) or "none registered"
        message = f"unknown sink_type {name!r}; available: {available}" + did_you_mean(name, known)
        return [Problem((*at, "sink_type"), message)]
    problems = _check_config(sink_type, item.get("sink_config", {}), (*at, "sink_config"))
    mode = item.get("mode", "upsert")
    if isinstance(mode, str) and mode in SYNC_MODES and mode not in sink_type.modes:
        supported = ", ".join(m for m in SYNC_MODES if m in sink_type.modes)
        default = "" if "mode" in item else " (the default)"
        problems.append(
            Problem(
                (*at, "mode"),
                f"sink_type {name!r} cannot do mode {mode!r}{default}; it supports: {supported}",
            )
        )
    if sink_type.check_item is not None and not problems:
        problems += [Problem((*at, *path), message) for path, message in sink_type.check_item(item)]
    return [_named(p, item.get("name")) for p in problems]


_TEMPLATE_KEYS = ("record_template", "body_template")


def _named(problem: Problem, destination: Any) -> Problem:
    """A template's problem names its destination (the line is the template's own)."""
    if not isinstance(destination, str) or not problem.path:
        return problem
    if problem.path[-1] not in _TEMPLATE_KEYS or problem.message.startswith("destination "):
        return problem
    return Problem(problem.path, f"destination {destination!r}: {problem.message}", problem.line)


def _check_config(sink_type: SinkType, config: Any, at: KeyPath) -> list[Problem]:
    if not isinstance(config, Mapping):
        return []
    data = dict(config)
    try:
        sink_type.config_model.model_validate(data)
    except ValidationError as exc:
        # A value that is a secret reference can only be judged once resolved, at build
        # time; a control character around a reference is wrong whatever it resolves to.
        errors = [
            e
            for e in exc.errors()
            if e["type"] in _ALWAYS or not _is_reference_text(e.get("input"))
        ]
        return problems_from_errors(errors, sink_type.config_model, data, at)
    return []


def _is_reference_text(value: Any) -> bool:
    return isinstance(value, str) and has_references(value)


def destination_warnings(spec: FloeSpec) -> list[Problem]:
    """What the sink types warn about in a valid spec (`validate` prints it): credentials
    over plain http://, for one."""
    warnings: list[Problem] = []
    for index, dest in enumerate(spec.ingestion.destinations):
        sink_type = get_sink_type(dest.sink_type)
        if sink_type is None or sink_type.warn_item is None:
            continue
        item = dest.model_dump(by_alias=True, exclude_unset=True)
        at = (*DESTINATIONS, index)
        warnings += [Problem((*at, *path), message) for path, message in sink_type.warn_item(item)]
    return warnings


__all__ = ["check_destination_items", "check_destinations", "destination_warnings"]
