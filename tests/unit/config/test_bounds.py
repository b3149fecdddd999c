"""Every number in floe.yaml has a lower and an upper bound and is finite.

Before these bounds, `max_attempts: 1000000000000000000000000` passed `validate` and then
failed every run record (SQLite cannot store the number), `requests_per_second: .inf`
and `timeout_seconds: .inf` raised tracebacks at sync, `interval_seconds: .inf` crashed
the daemon at start, and `interval_seconds: 1e-9` was accepted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from floe_egress.config import ConfigValidationError
from floe_egress.spec import load_spec
from tests.unit.config.conftest import edit, line_of

D0 = "ingestion.destinations[0]"
D1 = "ingestion.destinations[1]"
D2 = "ingestion.destinations[2]"

# (the line in floe.every-setting.yaml, its key path, lowest and highest accepted value)
BOUNDED: list[tuple[str, str, float, float]] = [
    ("  port: 8686", "server.port", 1, 65535),
    ("  shutdown_grace_seconds: 30", "server.shutdown_grace_seconds", 0.1, 3600),
    ("  lease_seconds: 30", "server.lease_seconds", 1, 3600),
    ("        timeout_seconds: 10", f"{D0}.sink_config.timeout_seconds", 0.1, 3600),
    (
        "        max_records_per_request: 50",
        f"{D0}.sink_config.max_records_per_request",
        1,
        100_000,
    ),
    ("      batch_size: 100", f"{D0}.batch_size", 1, 100_000),
    ("      max_attempts: 10", f"{D0}.max_attempts", 1, 1000),
    ("      max_delete_fraction: 0.5", f"{D0}.max_delete_fraction", 0, 1),
    ("        requests_per_second: 10", f"{D0}.rate_limit.requests_per_second", 0.01, 100_000),
    ("        burst: 10", f"{D0}.rate_limit.burst", 1, 100_000),
    ("        max_concurrency: 4", f"{D0}.rate_limit.max_concurrency", 1, 256),
    ("        max_attempts: 5", f"{D0}.retry.max_attempts", 1, 100),
    ("        initial_backoff_seconds: 0.5", f"{D0}.retry.initial_backoff_seconds", 0.01, 3600),
    ("        max_backoff_seconds: 60", f"{D0}.retry.max_backoff_seconds", 0.01, 3600),
    ("        timeout_seconds: 30", f"{D0}.retry.timeout_seconds", 0.1, 3600),
    ("        interval_seconds: 5", f"{D0}.schedule.interval_seconds", 0.1, 7 * 86_400),
    ("        timeout_seconds: 11", f"{D1}.sink_config.timeout_seconds", 0.1, 3600),
    ("        max_records_per_request: 100", f"{D1}.sink_config.max_records_per_request", 1, 100),
    ("        timeout_seconds: 12", f"{D2}.sink_config.timeout_seconds", 0.1, 3600),
]


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _below(low: float) -> str:
    return _num(low - 1) if low >= 1 or low == 0 else _num(low / 10)


def _cases() -> list[object]:
    cases: list[object] = []
    for line, path, low, high in BOUNDED:
        bad = {
            ".inf": "must be a finite number, got inf",
            "-.inf": "must be a finite number, got -inf",
            ".nan": "must be a finite number, got nan",
            "1000000000000000000000000": f"must be at most {_num(high)}",
            _num(high + 1): f"must be at most {_num(high)}",
            _below(low): f"must be at least {_num(low)}",
        }
        for value, message in bad.items():
            new = f"{line.split(':')[0]}: {value}"
            cases.append(pytest.param(line, new, path, message, id=f"{path}={value}"))
    return cases


def problems(path: Path) -> list[tuple[str, int | None, str]]:
    with pytest.raises(ConfigValidationError) as info:
        load_spec(path, check_secrets=True)
    return [(p.key, p.line, p.message) for p in info.value.problems]


def test_the_file_with_every_setting_is_valid(
    every_setting_env: str, write_config: Callable[[str], Path]
) -> None:
    loaded = load_spec(write_config(every_setting_env), check_secrets=True)

    assert len(loaded.spec.ingestion.destinations) == 4


@pytest.mark.parametrize(("line", "new", "path", "message"), _cases())
def test_a_number_out_of_bounds_is_a_problem_at_its_key_and_line(
    every_setting_env: str,
    write_config: Callable[[str], Path],
    line: str,
    new: str,
    path: str,
    message: str,
) -> None:
    config = write_config(edit(every_setting_env, line, new))

    assert problems(config) == [(path, line_of(every_setting_env, line), message)]


@pytest.mark.parametrize(
    ("old", "new", "path", "message"),
    [
        (
            "max_attempts: 10",
            "max_attempts: 1e30",
            f"{D0}.max_attempts",
            "must be an integer of a sensible size, got 1e+30",
        ),
        (
            "interval_seconds: 5",
            "interval_seconds: 1" + "0" * 400,
            f"{D0}.schedule.interval_seconds",
            "must be a finite number, got a number of more than 60 digits",
        ),
    ],
)
def test_huge_numbers_are_named_without_printing_every_digit(
    every_setting_env: str,
    write_config: Callable[[str], Path],
    old: str,
    new: str,
    path: str,
    message: str,
) -> None:
    config = write_config(edit(every_setting_env, old, new))

    assert problems(config) == [(path, line_of(every_setting_env, old), message)]
