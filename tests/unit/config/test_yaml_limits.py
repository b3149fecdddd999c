"""The YAML loader refuses what would exhaust the machine, with the key and line.

Before these limits a 1.5 KB alias bomb took 52 s and 1.3 GB (9**7 values) or ran out
of memory (9**9), a merge of a mapping into itself raised AttributeError and 5,000
nested brackets raised RecursionError; values ruamel cannot build (2024-13-01, a
5,000-digit integer) raised ValueError."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from floe_egress.cli import main
from floe_egress.config import ConfigValidationError, load_config
from floe_egress.config.yamllimits import MAX_ALIAS_EXPANSION, MAX_DEPTH
from floe_egress.config.yamlsource import YamlProblem, parse_yaml
from tests.fixtures.cli_runner import cli_isolation

__all__ = ["cli_isolation"]

HEAD = """\
apiVersion: floe.dev/v1
kind: FloeSpec
metadata:
  name: limits
"""


def alias_bomb(levels: int) -> str:
    """`labels:` holding anchors that each repeat the previous one nine times."""
    lines = ["  labels:", "    l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, levels):
        refs = ", ".join([f"*l{level - 1}"] * 9)
        lines.append(f"    l{level}: &l{level} [{refs}]")
    return HEAD + "\n".join(lines) + "\n"


def problems(path: Path) -> list[tuple[str, int | None, str]]:
    with pytest.raises(ConfigValidationError) as info:
        load_config(path)
    return [(p.key, p.line, p.message) for p in info.value.problems]


@pytest.mark.parametrize("levels", [5, 9])
def test_an_alias_bomb_is_refused_at_the_alias_that_goes_beyond_the_limit(
    write_config: Callable[[str], Path], levels: int
) -> None:
    text = alias_bomb(levels)
    assert len(text) < 1600
    started = time.monotonic()

    [(key, line, message)] = problems(write_config(text))

    assert time.monotonic() - started < 5
    # l1..l3 add 8,262 values; the first *l3 of l4 adds 7,380 more.
    assert (key, line) == ("metadata.labels.l4[0]", 10)
    assert message == (
        f"aliases expand to more than {MAX_ALIAS_EXPANSION:,} values (at *l3): use fewer "
        "aliases, or anchors that hold less"
    )


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("&m {<<: *m}", "metadata.labels['<<']"),
        ("&m {a: 1, b: *m}", "metadata.labels.b"),
        ("&s [1, *s]", "metadata.labels[1]"),
    ],
)
def test_an_alias_inside_its_own_anchor_is_refused(
    write_config: Callable[[str], Path], value: str, key: str
) -> None:
    path = write_config(HEAD + f"  labels: {value}\n")

    assert problems(path) == [
        (
            key,
            5,
            "alias *{0} sits inside its own anchor &{0}: that describes a value without "
            "end; repeat the keys instead".format(value[1]),
        )
    ]


@pytest.mark.parametrize(
    "nested",
    [
        "[" * 5000 + "]" * 5000,
        "{a: " * 5000 + "1" + "}" * 5000,
        "\n" + "".join(" " * (4 + 2 * i) + f"k{i}:\n" for i in range(80)) + " " * 164 + "1",
    ],
    ids=["5000 brackets", "5000 braces", "80 indented mappings"],
)
def test_deep_nesting_is_refused_at_the_level_that_goes_beyond_the_limit(
    write_config: Callable[[str], Path], nested: str
) -> None:
    [(key, line, message)] = problems(write_config(HEAD + f"  labels: {nested}\n"))

    assert key.startswith("metadata.labels")
    # The document, metadata and labels are three of the levels.
    assert key.count("[") + key.count(".") == MAX_DEPTH - 1
    assert line is not None and line >= 5
    assert message == (
        f"nested more than {MAX_DEPTH} levels deep: a floe.yaml needs far fewer; flatten this value"
    )


def test_nesting_up_to_the_limit_is_read() -> None:
    # The document's mapping is the first level.
    inside = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    expected: list[Any] = []
    for _ in range(MAX_DEPTH - 2):
        expected = [expected]
    assert parse_yaml(f"a: {inside}\n").data["a"] == expected
    with pytest.raises(YamlProblem, match="nested more than"):
        parse_yaml(f"a: [{inside}]\n")


def test_a_reused_anchor_name_is_refused(write_config: Callable[[str], Path]) -> None:
    text = HEAD + "  labels:\n    a: &x one\n    b: &x two\n    c: *x\n"

    assert problems(write_config(text)) == [
        (
            "metadata.labels.b",
            7,
            "anchor &x is defined again (first on line 6): give each anchor its own name",
        )
    ]


def test_anchors_aliases_and_merge_keys_within_the_limits_still_work(
    write_config: Callable[[str], Path],
) -> None:
    text = HEAD + (
        "ingestion:\n"
        "  destinations:\n"
        "    - &crm\n"
        "      name: crm\n"
        "      source_table: gold.customers\n"
        "      sink_type: rest_api\n"
        "      sink_config: &api {url: 'https://api.example.com/v1/contacts'}\n"
        "    - <<: *crm\n"
        "      name: crm_copy\n"
        "      sink_config: *api\n"
    )

    loaded = load_config(write_config(text))

    first, second = loaded.spec.ingestion.destinations
    # A merged key is placed on the line of the mapping it was merged into.
    assert loaded.line_of(("ingestion", "destinations", 1, "source_table")) == 12
    assert (first.name, second.name) == ("crm", "crm_copy")
    assert second.sink_config == first.sink_config == {"url": "https://api.example.com/v1/contacts"}


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("2024-13-01", "timestamp"),
        ("2024-02-30 10:00:00", "timestamp"),
        ("1" * 5000, "int"),
        ("!!bool maybe", "bool"),
        ("0x_", "int"),
    ],
    ids=["month 13", "february 30", "5000 digits", "bool maybe", "0x_"],
)
def test_a_value_yaml_cannot_build_is_a_problem_with_its_line(
    write_config: Callable[[str], Path], value: str, kind: str
) -> None:
    path = write_config(HEAD + f"  description: x\n  labels:\n    since: {value}\n")

    assert problems(path) == [
        (
            "",
            7,
            f"invalid YAML: this value cannot be read as a YAML {kind}: quote it if it is "
            "meant as text",
        )
    ]


@pytest.mark.usefixtures("cli_isolation")
@pytest.mark.parametrize(
    ("value", "where"),
    [
        ("&m {<<: *m}", ":5 metadata.labels['<<']: alias *m sits inside its own anchor"),
        ("[" * 5000 + "]" * 5000, ":5 metadata.labels[0][0]"),
        (alias_bomb(9).removeprefix(HEAD + "  labels:"), ":10 metadata.labels.l4[0]: aliases"),
    ],
    ids=["self merge", "5000 brackets", "alias bomb"],
)
def test_validate_exits_2_without_a_traceback(
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    value: str,
    where: str,
) -> None:
    path = write_config(HEAD + f"  labels: {value}\n")

    code = main(["validate", "--config", str(path)])

    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert err.startswith(f"{path}{where}")
