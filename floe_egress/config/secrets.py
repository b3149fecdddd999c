"""Secret references: `${env:NAME}`, `${credential:NAME}` and `${secret:SECRET/KEY}`,
found, checked, resolved, redacted.

A reference may stand alone or sit inside a longer string (`Bearer ${env:CRM_TOKEN}`).
`${credential:NAME}` reads the file NAME in systemd's `$CREDENTIALS_DIRECTORY`
(`LoadCredential=`). `${secret:SECRET/KEY}` reads a Kubernetes Secret as Kubernetes
mounts it, a directory of files, one per key: `$FLOE_SECRETS_DIR/SECRET/KEY` (default
base `/var/run/secrets/floe`). Resolved values never appear in messages, reprs or
compiled artifacts: errors name the reference and where it is, never what it resolves to.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import quote, quote_plus

from floe_egress.config.problems import KeyPath, Problem, format_path
from floe_egress.errors import SecretError

T = TypeVar("T")
SecretKind = Literal["env", "credential", "secret"]
SECRETS_DIR_VARIABLE = "FLOE_SECRETS_DIR"
DEFAULT_SECRETS_DIR = "/var/run/secrets/floe"
MASK = "***"

_REFERENCE = re.compile(r"\$\{([^{}]*)\}")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# No leading dot and no slash: a credential name can never leave $CREDENTIALS_DIRECTORY.
_CREDENTIAL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
# Kubernetes' own rules: a Secret's name is a DNS subdomain label, a key has no slash.
_K8S_SECRET = re.compile(r"^[a-z0-9]([a-z0-9-]{0,251}[a-z0-9])?$")
_K8S_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):(?P<pw>[^@/\s]+)@")
# Shorter values would mask unrelated text ("1", "on") all over a redacted message.
_MIN_MASKED_LENGTH = 4
_known_values: set[str] = set()


@dataclass(frozen=True, slots=True)
class SecretRef:
    kind: SecretKind
    name: str

    def __str__(self) -> str:
        return f"${{{self.kind}:{self.name}}}"


class ResolvedSecret(str):
    """A string that came from a secret: usable as a str, masked in repr."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(MASK)


def _parse(token: str) -> SecretRef | str:
    """A reference, or why `${token}` is not one."""
    text = f"${{{token}}}"
    kind, sep, name = token.partition(":")
    if not sep:
        return f"{text} is not a secret reference: use ${{env:{token}}} or ${{credential:{token}}}"
    if kind not in ("env", "credential", "secret"):
        return (
            f"{text} has an unknown source {kind!r}: use ${{env:NAME}}, ${{credential:NAME}} "
            "or ${secret:SECRET/KEY}"
        )
    if not name:
        what = {"env": "environment variable", "credential": "credential", "secret": "Secret"}
        return f"{text} names no {what[kind]}"
    if kind == "env" and not _ENV_NAME.fullmatch(name):
        return f"{text}: {name!r} is not a valid environment variable name"
    if kind == "credential" and not _CREDENTIAL_NAME.fullmatch(name):
        return f"{text}: {name!r} is not a valid credential name (letters, digits, _ . -)"
    if kind == "secret":
        secret, slash, key = name.partition("/")
        if not slash:
            return f"{text} names no key: use ${{secret:SECRET/KEY}} (a Kubernetes Secret's key)"
        if not _K8S_SECRET.fullmatch(secret):
            return (
                f"{text}: {secret!r} is not a Kubernetes Secret name (lowercase letters, "
                "digits and -, starting and ending with a letter or digit)"
            )
        if not _K8S_KEY.fullmatch(key) or key in (".", ".."):
            return f"{text}: {key!r} is not a Secret key (letters, digits, - _ .)"
        return SecretRef("secret", name)
    return SecretRef("env" if kind == "env" else "credential", name)


def _scan(text: str) -> tuple[list[SecretRef], list[str]]:
    refs: list[SecretRef] = []
    malformed: list[str] = []
    for match in _REFERENCE.finditer(text):
        parsed = _parse(match.group(1))
        if isinstance(parsed, SecretRef):
            refs.append(parsed)
        else:
            malformed.append(parsed)
    if "${" in _REFERENCE.sub("", text):
        malformed.append("a secret reference is not closed: expected ${env:NAME}")
    return refs, malformed


def _strings(obj: Any, path: KeyPath) -> Iterator[tuple[KeyPath, str]]:
    if isinstance(obj, str):
        yield path, obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from _strings(value, (*path, str(key)))
    elif isinstance(obj, list | tuple):
        for index, value in enumerate(obj):
            yield from _strings(value, (*path, index))


def find_references(obj: Any, prefix: KeyPath = ()) -> list[tuple[KeyPath, SecretRef]]:
    """Every well-formed reference in a str/dict/list, with the key path it sits at."""
    return [(path, ref) for path, text in _strings(obj, prefix) for ref in _scan(text)[0]]


def malformed_references(obj: Any, prefix: KeyPath = ()) -> list[Problem]:
    return [
        Problem(path, reason) for path, text in _strings(obj, prefix) for reason in _scan(text)[1]
    ]


def has_references(value: Any) -> bool:
    return any(True for _ in find_references(value))


def _lookup(ref: SecretRef, environ: Mapping[str, str]) -> tuple[str | None, str, str]:
    """(value, reason, what to do): value is None when the reference cannot be resolved."""
    if ref.kind == "env":
        value = environ.get(ref.name)
        hint = (
            f"set the environment variable {ref.name} (systemd: Environment= or EnvironmentFile=)"
        )
        if value is None:
            return None, f"environment variable {ref.name} is not set", hint
        if not value:
            return None, f"environment variable {ref.name} is empty", hint
        return value, "", ""
    if ref.kind == "secret":
        return _secret_file(ref, environ)
    directory = environ.get("CREDENTIALS_DIRECTORY")
    hint = f"add LoadCredential={ref.name}:/path/to/secret to the systemd unit"
    if not directory:
        return None, "CREDENTIALS_DIRECTORY is not set (systemd LoadCredential=)", hint
    path = Path(directory) / ref.name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, f"no file {ref.name} in $CREDENTIALS_DIRECTORY={directory}", hint
    except (OSError, UnicodeDecodeError) as exc:
        reason = f"cannot read {ref.name} in $CREDENTIALS_DIRECTORY={directory}"
        return None, f"{reason}: {type(exc).__name__}", hint
    return text.rstrip("\r\n"), "", ""


def _secret_file(ref: SecretRef, environ: Mapping[str, str]) -> tuple[str | None, str, str]:
    """A key of a Kubernetes Secret mounted as a directory (one file per key)."""
    secret, _, key = ref.name.partition("/")
    base = environ.get(SECRETS_DIR_VARIABLE) or DEFAULT_SECRETS_DIR
    where = f"${SECRETS_DIR_VARIABLE}={base}" if environ.get(SECRETS_DIR_VARIABLE) else base
    hint = (
        f"mount the Secret {secret} at {base}/{secret} (a volume of kind secret), or set "
        f"{SECRETS_DIR_VARIABLE} to the directory that holds it"
    )
    path = Path(base) / secret / key
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if not (Path(base) / secret).is_dir():
            return None, f"the Secret {secret} is not mounted under {where}", hint
        return None, f"the Secret {secret} has no key {key} (no file {path})", hint
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot read key {key} of the Secret {secret}: {type(exc).__name__}", hint
    # A mounted key holds the value as stored; a trailing newline is an editor's.
    return text.rstrip("\r\n"), "", ""


def unresolvable(ref: SecretRef, environ: Mapping[str, str] | None = None) -> str | None:
    """Why the reference cannot be resolved now, or None when it can."""
    value, reason, _ = _lookup(ref, os.environ if environ is None else environ)
    return None if value is not None else reason


def _resolve_text(text: str, path: KeyPath, environ: Mapping[str, str]) -> str:
    refs, malformed = _scan(text)
    where = format_path(path)
    if malformed:
        raise SecretError(f"{where}: {malformed[0]}" if where else malformed[0])
    if not refs:
        return text

    def substitute(match: re.Match[str]) -> str:
        ref = _parse(match.group(1))
        assert isinstance(ref, SecretRef)
        value, reason, hint = _lookup(ref, environ)
        if value is None:
            at = f" at {where}" if where else ""
            raise SecretError(f"secret {ref}{at} cannot be resolved: {reason}; {hint}")
        if len(value) >= _MIN_MASKED_LENGTH:
            _remember(value)
        return value

    return ResolvedSecret(_REFERENCE.sub(substitute, text))


def resolve(value: T, *, path: KeyPath = (), environ: Mapping[str, str] | None = None) -> T:
    """`value` with every reference replaced, recursively through dicts and lists.

    Strings that held a reference come back as `ResolvedSecret`. Raises `SecretError`
    naming the reference, its key path and what to do; never the value.
    """
    env = os.environ if environ is None else environ
    result: Any
    if isinstance(value, str):
        result = _resolve_text(value, path, env)
    elif isinstance(value, Mapping):
        result = {k: resolve(v, path=(*path, str(k)), environ=env) for k, v in value.items()}
    elif isinstance(value, list | tuple):
        result = [resolve(v, path=(*path, i), environ=env) for i, v in enumerate(value)]
    else:
        result = value
    return result  # type: ignore[no-any-return]


# Key names whose values are secrets (compared lowercase, without `-` and `_`).
_SECRET_NAMES = frozenset(
    {
        "token",
        "accesstoken",
        "refreshtoken",
        "bearertoken",
        "password",
        "passwd",
        "secret",
        "clientsecret",
        "apikey",
        "authorization",
        "proxyauthorization",
        "privatekey",
        "cookie",
        "xapikey",
        "xauthtoken",
    }
)
_SECRET_SUFFIXES = ("token", "password", "secret", "apikey")


def _secret_name(name: str) -> bool:
    flat = name.lower().replace("-", "").replace("_", "").replace(".", "")
    return flat in _SECRET_NAMES or flat.endswith(_SECRET_SUFFIXES)


# Subtrees whose keys are column names, not settings.
_NOT_SETTINGS = frozenset({"field_mapping", "primary_key"})
LITERAL_MASK_LENGTH = 8
"""Plain-text secrets shorter than this are reported but not masked in every message
(a 4-letter password would mask that word everywhere); URL passwords are masked in any
URL regardless."""


def literal_secrets(value: Any, path: KeyPath = ()) -> list[tuple[KeyPath, str]]:
    """Secrets written in the configuration as plain text: values of secret-named keys
    (tokens, passwords, API keys, Authorization headers) and URL passwords that hold no
    `${...}` reference. Returns (key path, value); the value is for masking only.
    """
    found: list[tuple[KeyPath, str]] = []
    if isinstance(value, Mapping):
        # auth: {type: api_key, value: ...} and {type: basic, password: ...}
        api_key = str(value.get("type", "")).lower() in ("api_key", "apikey")
        for k, v in value.items():
            at = (*path, str(k))
            if str(k) in _NOT_SETTINGS:
                continue
            secretish = _secret_name(str(k)) or (api_key and str(k) == "value")
            if isinstance(v, int | float) and not isinstance(v, bool):
                v = str(v)
            if secretish and isinstance(v, str) and v.strip() and not has_references(v):
                found.append((at, v))
            else:
                found += literal_secrets(v, at)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            found += literal_secrets(v, (*path, i))
    elif isinstance(value, str):
        match = _URL_PASSWORD.search(value)
        if match is not None and not has_references(match.group("pw")):
            found.append((path, match.group("pw")))
    return found


def _forms(value: str) -> set[str]:
    """`value` and what it becomes URL-encoded (in a path, a query string or a form
    body), as a destination may echo it."""
    return {value, quote(value, safe=""), quote_plus(value)}


def _remember(value: str) -> None:
    _known_values.update(_forms(value))


def mask_values(values: Iterable[str], *, min_length: int = _MIN_MASKED_LENGTH) -> None:
    """Mask these values, URL-encoded too, wherever `redact` runs (logs, errors, failed
    rows, /status) from now on."""
    for v in values:
        if len(v) >= min_length:
            _remember(v)
            # "Bearer abc123": the credential itself, wherever it shows up alone.
            scheme, _, rest = v.partition(" ")
            if scheme.lower() in ("bearer", "basic", "token") and len(rest) >= 8:
                _remember(rest)


def unmask_values(values: Iterable[str]) -> None:
    """Stop masking values that are no longer in use (a renewed token's predecessor)."""
    for v in values:
        _known_values.difference_update(_forms(v))


def redact(value: T) -> T:
    """`value` with resolved secrets and URL passwords replaced by `***`, recursively."""
    result: Any
    if isinstance(value, ResolvedSecret):
        result = MASK
    elif isinstance(value, str):
        result = _redact_text(value)
    elif isinstance(value, Mapping):
        result = {k: redact(v) for k, v in value.items()}
    elif isinstance(value, list | tuple):
        result = [redact(v) for v in value]
    else:
        result = value
    return result  # type: ignore[no-any-return]


def _redact_text(text: str) -> str:
    for secret in sorted(_known_values, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return _URL_PASSWORD.sub(rf"\g<head>:{MASK}@", text)


__all__ = [
    "MASK",
    "ResolvedSecret",
    "SecretRef",
    "find_references",
    "has_references",
    "literal_secrets",
    "malformed_references",
    "mask_values",
    "redact",
    "resolve",
    "unmask_values",
    "unresolvable",
]
