"""`floe-egress validate` on broken variants of a valid floe.yaml: never a traceback,
always exit 2, every problem as `file:LINE key.path: message`, and a broken key (or the
mapping that holds it) among them.

Each variant breaks one to three keys of floe.every-setting.yaml: wrong types,
out-of-range, infinite and NaN numbers, control characters in values and keys, unknown
keys, missing keys, bad URLs, cron expressions that are invalid or never fire, deep
nesting, recursive aliases and alias bombs, a server open to the network without a
token. The 500 variants run `main()` in this process; a few run the real command.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from floe_egress.cli import main
from floe_egress.config import KeyPath, format_path
from tests.fixtures.cli_runner import cli_isolation
from tests.unit.config.conftest import EVERY_SETTING, EVERY_SETTING_SECRETS

__all__ = ["cli_isolation"]

BASE: dict[str, Any] = yaml.safe_load(EVERY_SETTING.read_text(encoding="utf-8"))
D = ("ingestion", "destinations")
REST, HUBSPOT, SALESFORCE, DUCKDB = ((*D, i) for i in range(4))
Draw = Callable[[st.SearchStrategy[Any]], Any]

# Numbers: (key path, lowest, highest, whole numbers only).
NUMBERS: list[tuple[KeyPath, float, float, bool]] = [
    (("server", "port"), 1, 65535, True),
    (("server", "shutdown_grace_seconds"), 0.1, 3600, False),
    (("server", "lease_seconds"), 1, 3600, False),
    ((*REST, "sink_config", "timeout_seconds"), 0.1, 3600, False),
    ((*REST, "sink_config", "max_records_per_request"), 1, 100_000, True),
    ((*REST, "batch_size"), 1, 100_000, True),
    ((*REST, "max_attempts"), 1, 1000, True),
    ((*REST, "max_delete_fraction"), 0, 1, False),
    ((*REST, "rate_limit", "requests_per_second"), 0.01, 100_000, False),
    ((*REST, "rate_limit", "burst"), 1, 100_000, True),
    ((*REST, "rate_limit", "max_concurrency"), 1, 256, True),
    ((*REST, "retry", "max_attempts"), 1, 100, True),
    ((*REST, "retry", "initial_backoff_seconds"), 0.01, 3600, False),
    ((*REST, "retry", "max_backoff_seconds"), 0.01, 3600, False),
    ((*REST, "retry", "timeout_seconds"), 0.1, 3600, False),
    ((*REST, "schedule", "interval_seconds"), 0.1, 7 * 86_400, False),
    ((*HUBSPOT, "sink_config", "timeout_seconds"), 0.1, 3600, False),
    ((*HUBSPOT, "sink_config", "max_records_per_request"), 1, 100, True),
    ((*SALESFORCE, "sink_config", "timeout_seconds"), 0.1, 3600, False),
]

# One-line text values (control characters refused); `True` where a tab is allowed.
TEXTS: list[tuple[KeyPath, bool]] = [
    (("metadata", "name"), False),
    (("metadata", "labels", "team"), False),
    (("catalog", "name"), False),
    (("catalog", "type"), False),
    (("catalog", "uri"), False),
    (("catalog", "warehouse"), False),
    (("state", "url"), False),
    (("server", "host"), False),
    (("server", "token"), False),
    *[((*dest, key), False) for dest in (REST, HUBSPOT, DUCKDB) for key in ("name", "sink_type")],
    ((*REST, "source_table"), False),
    ((*REST, "ref"), False),
    ((*REST, "primary_key", 0), False),
    ((*REST, "field_mapping", "email"), False),
    ((*REST, "rate_limit", "account"), False),
    ((*REST, "sink_config", "url"), False),
    ((*REST, "sink_config", "headers", "X-Tenant"), True),
    ((*REST, "sink_config", "auth", "token"), True),
    ((*HUBSPOT, "schedule", "cron"), False),
    ((*HUBSPOT, "sink_config", "object_type"), False),
    ((*HUBSPOT, "sink_config", "access_token"), True),
    ((*SALESFORCE, "sink_config", "sobject"), False),
    ((*DUCKDB, "sink_config", "table"), False),
]
# Keys whose names are checked (control characters refused).
KEYS: list[KeyPath] = [
    ("metadata", "labels", "team"),
    (*REST, "field_mapping", "customer_id"),
    (*REST, "sink_config", "headers", "X-Tenant"),
]
# Values of any type but these are wrong: (key path, what is wrong for it).
TYPED: list[tuple[KeyPath, str]] = [
    (("metadata",), "mapping"),
    (("metadata", "name"), "str"),
    (("metadata", "description"), "str"),
    (("metadata", "labels"), "mapping"),
    (("catalog",), "mapping"),
    (("catalog", "name"), "str"),
    (("state",), "mapping"),
    (("state", "url"), "str"),
    (("server",), "mapping"),
    (("server", "host"), "str"),
    (("server", "token"), "str"),
    (("ingestion",), "mapping"),
    (D, "list"),
    ((*REST, "name"), "str"),
    ((*REST, "source_table"), "str"),
    ((*REST, "primary_key"), "list"),
    ((*REST, "mode"), "str"),
    ((*REST, "enabled"), "bool"),
    ((*REST, "field_mapping"), "mapping"),
    ((*REST, "rate_limit"), "mapping"),
    ((*REST, "retry"), "mapping"),
    ((*REST, "schedule"), "mapping"),
    ((*REST, "sink_config"), "mapping"),
    ((*REST, "sink_config", "url"), "str"),
    ((*REST, "sink_config", "headers"), "mapping"),
    ((*REST, "sink_config", "verify_tls"), "bool"),
    ((*HUBSPOT, "sink_config", "object_type"), "str"),
    ((*DUCKDB, "sink_config", "table"), "str"),
]
WRONG_FOR: dict[str, list[Any]] = {
    "str": [12, 1.5, True, [1], {"a": 1}],
    "mapping": ["text", 7, ["a"], True],
    "list": ["text", 7, {"a": 1}],
    "bool": ["maybe", 3, [True], {"a": 1}],
}
# Mappings of models that forbid unknown keys.
CLOSED: list[KeyPath] = [
    (),
    ("metadata",),
    ("state",),
    ("server",),
    ("ingestion",),
    REST,
    HUBSPOT,
    SALESFORCE,
    DUCKDB,
    (*REST, "rate_limit"),
    (*REST, "retry"),
    (*REST, "schedule"),
    (*REST, "sink_config", "auth"),
    *[(*dest, "sink_config") for dest in (REST, HUBSPOT, SALESFORCE, DUCKDB)],
]
REQUIRED: list[KeyPath] = [
    ("apiVersion",),
    ("kind",),
    ("metadata",),
    ("metadata", "name"),
    *[(*dest, key) for dest in (REST, SALESFORCE) for key in ("name", "source_table", "sink_type")],
    (*REST, "sink_config", "url"),
    (*REST, "rate_limit", "requests_per_second"),
    (*HUBSPOT, "sink_config", "object_type"),
    (*HUBSPOT, "sink_config", "access_token"),
    (*SALESFORCE, "sink_config", "sobject"),
    (*DUCKDB, "sink_config", "table"),
]
BAD_URLS: dict[KeyPath, list[str]] = {
    ("state", "url"): [
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:///state.db?mode=memory",
        "sqlite://state.db",
        "sqlite:///",
        "postgresql://db:99999/floe",
        "postgresql://db:0/floe",
        "postgresql://db:port/floe",
        "mysql://db/floe",
        "state.db",
    ],
    ("catalog", "uri"): [
        "http://",
        "https://:8181/api",
        "http://catalog:99999/",
        "http://catalog:0/",
        "http://cata log/",
        "thrift://",
        "http://[::1/",
    ],
    ("catalog", "warehouse"): ["s3://", "gs://:1/x"],
    (*REST, "sink_config", "url"): ["ftp://api.example.com/", "api.example.com/v1", ""],
}
BAD_CRON = ["0 0 30 2 *", "15 4 31 4 *", "0 0 31 2,4 *", "61 * * * *", "* * *", "daily", ""]
NOT_A_FIELD_NAME = ["", "external id", "1abc", "e-mail", "a.b"]
CONTROL = [chr(c) for c in (*range(0x20), 0x7F, 0x85, 0x9B, 0x2028, 0x2029)]


def get(doc: Any, path: KeyPath) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def put(doc: Any, path: KeyPath, value: Any) -> None:
    get(doc, path[:-1])[path[-1]] = value


def rename(doc: Any, path: KeyPath, new: str) -> None:
    """Rename the key at `path`, keeping the order of its mapping."""
    parent = get(doc, path[:-1])
    items = list(parent.items())
    parent.clear()
    parent.update((new if key == path[-1] else key, value) for key, value in items)


def with_control(draw: Draw, text: str, tab_allowed: bool) -> str:
    chars = [c for c in CONTROL if not (tab_allowed and c == "\t")]
    char = draw(st.sampled_from(chars))
    at = draw(st.integers(0, len(text)))
    return text[:at] + char + text[at:]


def bad_number(draw: Draw, low: float, high: float, whole: bool) -> Any:
    below = low - max(abs(low) * 1e-6, 1e-9)
    above = high + max(abs(high) * 1e-6, 1e-9)
    choices: list[st.SearchStrategy[Any]] = [
        st.sampled_from([float("inf"), float("-inf"), float("nan")]),
        st.floats(max_value=below, allow_nan=False, allow_infinity=False),
        st.floats(min_value=above, allow_nan=False, allow_infinity=False),
        st.integers(min_value=int(high) + 1, max_value=10**400),
        st.integers(max_value=int(-low) - 1 if low <= 0 else int(low) - 1, min_value=-(10**30)),
        st.sampled_from(["abc", "", "ten", "5 s", "1O"]),
        st.sampled_from([[1], {"a": 1}]),
    ]
    if whole:
        choices.append(st.floats(low + 0.01, high - 0.01).filter(lambda x: not x.is_integer()))
    return draw(st.one_of(choices))


Mutation = Callable[[Draw, dict[str, Any], dict[str, str]], KeyPath]
"""Breaks the document (snippets: placeholder -> YAML text); returns the key path broken."""


def number(draw: Draw, doc: dict[str, Any], snippets: dict[str, str]) -> KeyPath:
    path, low, high, whole = draw(st.sampled_from(NUMBERS))
    put(doc, path, bad_number(draw, low, high, whole))
    return path


def control_in_value(draw: Draw, doc: dict[str, Any], snippets: dict[str, str]) -> KeyPath:
    path, tab_allowed = draw(st.sampled_from(TEXTS))
    put(doc, path, with_control(draw, str(get(doc, path)), tab_allowed))
    return path


def control_in_key(draw: Draw, doc: dict[str, Any], snippets: dict[str, str]) -> KeyPath:
    path = draw(st.sampled_from(KEYS))
    new = with_control(draw, str(path[-1]), False)
    rename(doc, path, new)
    return (*path[:-1], new)


def wrong_type(draw: Draw, doc: dict[str, Any], snippets: dict[str, str]) -> KeyPath:
    path, kind = draw(st.sampled_from(TYPED))
    put(doc, path, draw(st.sampled_from(WRONG_FOR[kind])))
    return path


def unknown_key(draw: Draw, doc: dict[str, Any], snippets: dict[str, str]) -> KeyPath:
    path = draw(st.sampled_from(CLOSED))
    key = "zz_" + draw(st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12))
    get(doc, path)[key] = draw(st.sampled_from([1, "x", [1], {"a": 1}, None]))
    return (*path, key)


def missing_key(draw: Draw, doc: dict[str, Any], snippets: dict[str, str]) -> KeyPath:
    path = draw(st.sampled_from(REQUIRED))
    del get(doc, path[:-1])[path[-1]]
    return path


def bad_url(draw: Draw, doc: dict[str, Any], snippets: dict[str, str]) -> KeyPath:
    path = draw(st.sampled_from(sorted(BAD_URLS)))
    put(doc, path, draw(st.sampled_from(BAD_URLS[path])))
    return path


def bad_cron(draw: Draw, doc: dict[str, Any], snippets: dict[str, str]) -> KeyPath:
    path = (*HUBSPOT, "schedule", "cron")
    put(doc, path, draw(st.sampled_from(BAD_CRON)))
    return path


def cron_and_interval(draw: Draw, doc: dict[str, Any], snippets: dict[str, str]) -> KeyPath:
    get(doc, (*HUBSPOT, "schedule"))["interval_seconds"] = 60
    return (*HUBSPOT, "schedule")


def bad_field_name(draw: Draw, doc: dict[str, Any], snippets: dict[str, str]) -> KeyPath:
    path = (*REST, "field_mapping", "customer_id")
    put(doc, path, draw(st.sampled_from(NOT_A_FIELD_NAME)))
    return path


def open_server(draw: Draw, doc: dict[str, Any], snippets: dict[str, str]) -> KeyPath:
    doc["server"]["host"] = draw(st.sampled_from(["0.0.0.0", "::", "10.1.2.3", "floe.internal"]))
    del doc["server"]["token"]
    return ("server", "host")


def duplicate_name(draw: Draw, doc: dict[str, Any], snippets: dict[str, str]) -> KeyPath:
    put(doc, (*DUCKDB, "name"), "crm")
    return (*DUCKDB, "name")


def _snippet(snippets: dict[str, str], text: str) -> str:
    placeholder = f"__snippet_{len(snippets)}__"
    snippets[placeholder] = text
    return placeholder


PLACES: list[KeyPath] = [
    ("metadata", "labels"),
    ("metadata", "description"),
    ("catalog", "uri"),
    (*REST, "sink_config", "headers"),
    (*REST, "field_mapping"),
    (*REST, "primary_key"),
    (*HUBSPOT, "sink_config"),
]


def deep_nesting(draw: Draw, doc: dict[str, Any], snippets: dict[str, str]) -> KeyPath:
    path = draw(st.sampled_from(PLACES))
    depth = draw(st.integers(50, 400))
    opening, closing = draw(st.sampled_from([("[", "]"), ("{a: ", "}")]))
    put(doc, path, _snippet(snippets, opening * depth + "1" + closing * depth))
    return path


def recursive_alias(draw: Draw, doc: dict[str, Any], snippets: dict[str, str]) -> KeyPath:
    path = draw(st.sampled_from(PLACES))
    name = f"r{len(snippets)}"
    text = draw(st.sampled_from(["&{0} {{<<: *{0}}}", "&{0} [1, *{0}]", "&{0} {{a: [*{0}]}}"]))
    put(doc, path, _snippet(snippets, text.format(name)))
    return path


def bomb(prefix: str, levels: int) -> str:
    """A flow list of anchors that each repeat the previous one nine times."""
    anchors = [f"&{prefix}0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, levels):
        anchors.append(f"&{prefix}{level} [" + ", ".join([f"*{prefix}{level - 1}"] * 9) + "]")
    return "[" + ", ".join(anchors) + "]"


def alias_bomb(draw: Draw, doc: dict[str, Any], snippets: dict[str, str]) -> KeyPath:
    path = draw(st.sampled_from(PLACES))
    put(doc, path, _snippet(snippets, bomb(f"b{len(snippets)}_", draw(st.integers(5, 9)))))
    return path


MUTATIONS: list[Mutation] = [
    number,
    number,
    control_in_value,
    control_in_value,
    control_in_key,
    wrong_type,
    unknown_key,
    missing_key,
    bad_url,
    bad_cron,
    cron_and_interval,
    bad_field_name,
    open_server,
    duplicate_name,
    deep_nesting,
    recursive_alias,
    alias_bomb,
]


def _overlaps(path: KeyPath, others: list[KeyPath]) -> bool:
    return any(p[: len(path)] == path or path[: len(p)] == p for p in others)


@st.composite
def broken_documents(draw: Draw) -> tuple[str, list[KeyPath]]:
    """A broken floe.yaml and the key paths it breaks."""
    doc = copy.deepcopy(BASE)
    snippets: dict[str, str] = {}
    broken: list[KeyPath] = []
    for _ in range(draw(st.integers(1, 3))):
        trial = copy.deepcopy(doc)
        trial_snippets = dict(snippets)
        try:
            path = draw(st.sampled_from(MUTATIONS))(draw, trial, trial_snippets)
        except (KeyError, IndexError, TypeError, AttributeError):
            continue  # its key was removed or replaced by an earlier mutation
        if not _overlaps(path, broken):
            doc, snippets = trial, trial_snippets
            broken.append(path)
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=False, width=1000)
    for placeholder, snippet in snippets.items():
        text = text.replace(placeholder, snippet)
    return text, broken


def related(reported: str, broken: KeyPath) -> bool:
    """Whether a problem line (after `file:LINE `) is about the broken key: the key
    itself, one inside it, or the mapping or list that holds it."""
    keys = [format_path(broken[:end]) for end in range(1, len(broken) + 1)]
    full = keys[-1]
    return reported.startswith(full) or any(
        reported.startswith(key + ":") for key in keys if key != full
    )


def validate_here(path: Path) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["validate", "--config", str(path)])
    return code, err.getvalue()


def check_output(path: Path, code: int, err: str, broken: list[KeyPath]) -> None:
    assert "Traceback" not in err, err
    assert code == 2, err
    located = re.compile(rf"{re.escape(str(path))}:(\d+) (\S.*)")
    problems = err.splitlines()
    assert problems, "no problem reported"
    reported = []
    for line in problems:
        match = located.fullmatch(line)
        assert match is not None, f"not `file:LINE key.path: message`: {line!r}"
        reported.append(match.group(2))
    assert any(related(r, b) for r in reported for b in broken), (broken, reported)


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in EVERY_SETTING_SECRETS.items():
        monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("cli_isolation", "secrets")
def test_the_unbroken_document_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "floe.yaml"
    path.write_text(yaml.safe_dump(BASE, sort_keys=False), encoding="utf-8")

    code, err = validate_here(path)

    assert (code, err) == (0, "")


@pytest.mark.usefixtures("cli_isolation", "secrets")
def test_validate_reports_every_broken_document_at_its_key(tmp_path: Path) -> None:
    path = tmp_path / "floe.yaml"

    @settings(
        max_examples=500,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(broken_documents())
    def check(document: tuple[str, list[KeyPath]]) -> None:
        text, broken = document
        path.write_text(text, encoding="utf-8")
        code, err = validate_here(path)
        check_output(path, code, err, broken)

    check()


SUBPROCESS_CASES: dict[str, tuple[KeyPath, str]] = {
    "alias bomb": (("metadata", "labels"), bomb("a", 9)),
    "self merge": (("metadata", "labels"), "&m {<<: *m}"),
    "5000 brackets": (("metadata", "labels"), "[" * 5000 + "]" * 5000),
    "infinite interval": ((*REST, "schedule", "interval_seconds"), ".inf"),
    "huge max_attempts": ((*REST, "max_attempts"), "1000000000000000000000000"),
    "header with CR LF": ((*REST, "sink_config", "headers", "X-Tenant"), '"a\\r\\nX-Admin: 1"'),
}


@pytest.mark.usefixtures("secrets")
@pytest.mark.parametrize(("broken", "snippet"), SUBPROCESS_CASES.values(), ids=SUBPROCESS_CASES)
def test_the_real_command_exits_2_without_a_traceback(
    tmp_path: Path, broken: KeyPath, snippet: str
) -> None:
    doc = copy.deepcopy(BASE)
    put(doc, broken, "__snippet__")
    path = tmp_path / "floe.yaml"
    text = yaml.safe_dump(doc, sort_keys=False, width=1000).replace("__snippet__", snippet)
    path.write_text(text, encoding="utf-8")

    run = subprocess.run(
        [str(Path(sys.executable).parent / "floe-egress"), "validate", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "FLOE_EGRESS_WORK_DIR": str(tmp_path / "work")},
        check=False,
    )

    check_output(path, run.returncode, run.stderr, [broken])
