"""`validate` checks a destination's filter: its syntax when the file is read, and its
columns and literal types against the table, with the key and the line."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.crash_harness import ServerThread
from tests.fixtures.world import World, customers, initial_rows
from tests.integration.cli.conftest import Cli, destination


def config_with(world: World, server: ServerThread, row_filter: str) -> Path:
    return world.write_config([destination("crm", server, filter=row_filter)])


def line_of(path: Path, text: str) -> int:
    lines = path.read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def test_a_filter_that_fits_the_table_is_valid(
    cli: Cli, world: World, server: ServerThread
) -> None:
    world.table.append(customers(initial_rows(4)))
    run = cli("validate", "--config", str(config_with(world, server, "plan = 'pro'")))
    assert run.code == 0, run.err
    assert "valid (1 destination)" in run.out


def test_a_filter_is_checked_against_the_columns_and_their_types(
    cli: Cli, world: World, server: ServerThread
) -> None:
    world.table.append(customers(initial_rows(4)))
    config = config_with(world, server, "tier = 'pro'")
    run = cli("validate", "--config", str(config))
    assert run.code == 2
    line = line_of(config, "filter:")
    assert f"floe.yaml:{line} ingestion.destinations[0].filter:" in run.err
    assert "names column 'tier', which the table lacks" in run.err
    assert "customer_id, email, plan" in run.err

    config = config_with(world, server, "customer_id = 'seven'")
    run = cli("validate", "--config", str(config))
    assert run.code == 2
    assert "ingestion.destinations[0].filter" in run.err
    assert "seven" in run.err


def test_a_filter_that_is_no_expression_is_refused_when_read(
    cli: Cli, world: World, server: ServerThread
) -> None:
    config = config_with(world, server, "plan = 'pro' and")
    run = cli("validate", "--config", str(config))
    assert run.code == 2
    assert "ingestion.destinations[0].filter" in run.err
    assert "not an expression pyiceberg can read at its end" in run.err
    assert "e.g. plan = 'enterprise' and mrr > 1000" in run.err


def test_a_table_out_of_reach_is_a_warning_that_the_check_was_skipped(
    cli: Cli, world: World, server: ServerThread
) -> None:
    dest = destination("crm", server, filter="plan = 'pro'", source_table="gold.later")
    config = world.write_config([dest])
    run = cli("validate", "--config", str(config))
    assert run.code == 0, run.err
    assert "warning:" in run.err and "gold.later could not be read" in run.err


def test_templates_are_rendered_against_the_table_with_their_line(
    cli: Cli, world: World, server: ServerThread
) -> None:
    world.table.append(customers(initial_rows(4)))
    good = '{"id": {{ record.external_id | tojson }},\n "tier": {{ record.plan_tier | tojson }}}'
    bad = '{"id": {{ record.external_id | tojson }},\n "tier": {{ record.plan | tojson }}}'
    for template, code in ((good, 0), (bad, 2)):
        dest = destination("crm", server, mode="upsert")  # no deletes: one shape
        dest["sink_config"]["record_template"] = template
        config = world.write_config([dest])
        run = cli("validate", "--config", str(config))
        assert run.code == code, run.err
    assert "ingestion.destinations[0].sink_config.record_template: destination 'crm'" in run.err
    assert "line 2" in run.err
    assert "plan" in run.err
