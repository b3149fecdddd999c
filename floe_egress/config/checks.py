"""Checks across keys that the models cannot make per field: unique names, secret references.

They read the raw document, so they still run when some destinations fail validation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from floe_egress.config.models import DEFAULT_HOST
from floe_egress.config.problems import KeyPath, Problem, format_path
from floe_egress.config.secrets import find_references, malformed_references, unresolvable
from floe_egress.config.urls import is_loopback

SECRET_LOCATIONS = "sink_config, catalog properties, state.url and server.token"


def _destinations(raw: Any) -> list[Any]:
    ingestion = raw.get("ingestion") if isinstance(raw, Mapping) else None
    items = ingestion.get("destinations") if isinstance(ingestion, Mapping) else None
    return items if isinstance(items, list) else []


def duplicate_names(raw: Any) -> list[Problem]:
    """A problem at every repeated destination name, naming the first one's index."""
    first: dict[str, int] = {}
    problems: list[Problem] = []
    for index, item in enumerate(_destinations(raw)):
        name = item.get("name") if isinstance(item, Mapping) else None
        if not isinstance(name, str):
            continue
        if name in first:
            where = format_path(("ingestion", "destinations", first[name]))
            problems.append(
                Problem(
                    ("ingestion", "destinations", index, "name"),
                    f"duplicate destination name {name!r}: already used by {where}",
                )
            )
        else:
            first[name] = index
    return problems


def server_problems(raw: Any) -> list[Problem]:
    """A server reachable beyond this machine needs a token (`run` refuses to start
    without one): the problem sits at server.token when the key is there, else at
    server.host."""
    server = raw.get("server", {}) if isinstance(raw, Mapping) else None
    if not isinstance(server, Mapping):
        return []
    host = server.get("host", DEFAULT_HOST)
    token = server.get("token")
    if not isinstance(host, str) or is_loopback(host):
        return []
    if token is not None and (token or not isinstance(token, str)):
        return []  # a token; or a malformed one, which the models report
    hint = (
        "set server.token (a secret reference such as ${credential:floe-token}) so that "
        "POST /v1/destinations/{name}/sync needs a bearer token, or bind server.host to "
        "127.0.0.1"
    )
    if "token" in server:
        message = f"must be set: server.host {host!r} is reachable beyond this machine; {hint}"
        return [Problem(("server", "token"), message)]
    message = f"{host!r} is reachable beyond this machine and server.token is not set: {hint}"
    return [Problem(("server", "host"), message)]


def allows_secrets(path: KeyPath) -> bool:
    """Whether a value at this key path is resolved as a secret reference."""
    match path:
        case ("catalog", str(key), *_):
            return key not in ("name", "type")
        case ("state", "url") | ("server", "token"):
            return True
        case ("ingestion", "destinations", int(), "sink_config", *_):
            return True
    return False


def secret_problems(
    raw: Any, *, check_resolvable: bool, environ: Mapping[str, str] | None = None
) -> list[Problem]:
    """Malformed references, references where none are resolved, and (if asked) the
    references that cannot be resolved in this environment."""
    problems = [p for p in malformed_references(raw) if allows_secrets(p.path)]
    seen: set[tuple[KeyPath, str]] = set()
    for path, ref in find_references(raw):
        if (path, str(ref)) in seen:
            continue
        seen.add((path, str(ref)))
        if not allows_secrets(path):
            message = f"secret {ref} is not allowed here: references are resolved only in "
            problems.append(Problem(path, message + SECRET_LOCATIONS))
        elif check_resolvable:
            reason = unresolvable(ref, environ)
            if reason is not None:
                problems.append(Problem(path, f"secret {ref} cannot be resolved: {reason}"))
    return problems


__all__ = [
    "SECRET_LOCATIONS",
    "allows_secrets",
    "duplicate_names",
    "secret_problems",
    "server_problems",
]
