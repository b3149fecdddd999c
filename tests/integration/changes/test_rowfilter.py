"""A destination's filter bound to a real table: its rows, its files' statistics, and
the errors a filter that does not fit gets."""

from __future__ import annotations

import pyarrow as pa
import pytest

from floe_egress.changes.rowfilter import RowFilter
from floe_egress.config.filters import parse_filter, same_filter
from floe_egress.errors import InvalidSourceError
from tests.fixtures.world import World, customers


@pytest.fixture
def world(tmp_path: pytest.TempPathFactory) -> World:
    return World(tmp_path / "world", "sqlite://")  # type: ignore[operator]


def test_files_whose_statistics_rule_out_a_match_are_not_read(world: World) -> None:
    world.table.append(customers([(i, f"u{i}@x.io", "free") for i in range(1, 6)]))
    world.reload().append(customers([(i, f"u{i}@x.io", "pro") for i in range(6, 9)]))
    table = world.reload()
    tasks = list(table.scan().plan_files())
    assert len(tasks) == 2
    pro = RowFilter.of("plan = 'pro'", table.schema(), table)
    kept = pro.prune(tasks)
    assert len(kept) == 1
    assert pa.concat_tables([pro.apply(table.scan().to_arrow())]).num_rows == 3
    # A filter the statistics cannot decide keeps every file.
    assert len(RowFilter.of("customer_id <> 3", table.schema(), table).prune(tasks)) == 2


def test_null_matches_no_comparison(world: World) -> None:
    rows = pa.table(
        {"customer_id": [1, 2, 3], "email": ["a", None, "c"], "plan": ["pro", "pro", None]},
        schema=world.table.schema().as_arrow(),
    )
    world.table.append(rows)
    table = world.reload()
    data = table.scan().to_arrow()

    def ids(text: str) -> list[int]:
        matched = RowFilter.of(text, table.schema(), table).apply(data)
        return sorted(matched.column("customer_id").to_pylist())

    assert ids("plan = 'pro'") == [1, 2]
    assert ids("not (plan = 'pro')") == []
    assert ids("plan is null") == [3]
    assert ids("email <> 'a'") == [3]
    assert ids("true") == [1, 2, 3]


def test_a_filter_that_does_not_fit_says_why(world: World) -> None:
    table = world.reload()
    with pytest.raises(InvalidSourceError, match=r"names column 'tier', which the table lacks"):
        RowFilter.of("tier = 'pro'", table.schema(), table)
    with pytest.raises(InvalidSourceError, match="Cannot convert"):
        RowFilter.of("plan > 5", table.schema(), table)
    with table.update_schema() as update:
        update.rename_column("plan", "tier")
    table = world.reload()
    with pytest.raises(InvalidSourceError, match=r"column 'plan' was renamed to 'tier'"):
        RowFilter.of("plan = 'pro'", table.schema(), table)


def test_filters_are_compared_as_pyiceberg_reads_them() -> None:
    assert same_filter("plan = 'pro'", "plan='pro'")
    assert same_filter("plan = 'pro' AND mrr > 10", "plan = 'pro' and mrr > 10")
    assert same_filter(None, "") and same_filter(None, "true")
    assert not same_filter("plan = 'pro'", "plan = 'free'")
    assert not same_filter(None, "plan = 'pro'")
    for text, where in (("plan = ", "at character"), ("plan = 'a' and", "at its end")):
        with pytest.raises(ValueError, match=where):
            parse_filter(text)
    with pytest.raises(ValueError, match="at most 4096 characters"):
        parse_filter("plan = 'a' or " * 400 + "true")
