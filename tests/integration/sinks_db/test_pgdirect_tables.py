"""PostgreSQL direct writes (pgdirect.py) on tables and servers that are not as expected:
each case once through the driver and once forced through dlt, with the same outcome."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg2
import pytest

from floe_egress.errors import TransientSinkError
from floe_egress.sinks.database.sink import DatabaseSink
from tests.fixtures.egress import PG_ADMIN_URL
from tests.integration.sinks_db.conftest import TABLE, Db, SinkFactory, changes, send

WRITERS = ["direct", "dlt"]


def build(
    make_sink: SinkFactory, db: Db, writer: str, mode: str = "upsert", **config: object
) -> DatabaseSink:
    sink = make_sink(db, mode, **config)
    if writer == "dlt":
        sink.db.direct = None
    return sink


@pytest.fixture
def latin1() -> Iterator[Db]:
    """A database whose encoding is LATIN1, not UTF-8."""
    name = f"floe_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(PG_ADMIN_URL)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(
            f"CREATE DATABASE \"{name}\" ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' "
            "TEMPLATE template0"
        )
    url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    try:
        yield Db("postgres", {"credentials": url, "dataset": "activation", "table": TABLE}, url=url)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.mark.parametrize("writer", WRITERS)
async def test_text_arrives_as_written_in_a_latin1_database(
    latin1: Db, make_sink: SinkFactory, writer: str
) -> None:
    sink = build(make_sink, latin1, writer, "mirror")
    await send(sink, changes([{"id": 1, "name": "a", "op": "insert"}]), 1)
    await send(sink, changes([{"id": 1, "name": "ünï", "op": "update"}]), 2)
    assert sink.runs[-1].direct == (writer == "direct")
    assert [(r["id"], r["name"]) for r in latin1.rows()] == [(1, "ünï")]
    await send(sink, changes([{"id": 2, "name": "é", "op": "insert"}]), 3)
    assert [(r["id"], r["name"]) for r in latin1.rows()] == [(1, "ünï"), (2, "é")]


@pytest.mark.parametrize("writer", WRITERS)
async def test_a_table_dropped_between_writes_is_made_again(
    pg: Db, make_sink: SinkFactory, writer: str
) -> None:
    sink = build(make_sink, pg, writer)
    await send(sink, changes([{"id": 1, "name": "a", "op": "insert"}]), 1)
    await send(sink, changes([{"id": 1, "name": "b", "op": "update"}]), 2)
    pg.execute(f"DROP TABLE {pg.qualified()}")
    await send(sink, changes([{"id": 2, "name": "c", "op": "insert"}]), 3)
    assert pg.rows() == [{"id": 2, "name": "c"}]


async def test_a_key_index_dropped_after_the_check_sends_the_batch_through_dlt(
    pg: Db, make_sink: SinkFactory
) -> None:
    sink = build(make_sink, pg, "direct")
    await send(sink, changes([{"id": 1, "name": "a", "op": "insert"}]), 1)
    await send(sink, changes([{"id": 1, "name": "b", "op": "update"}]), 2)
    direct = sink.db.direct
    assert direct is not None
    original = direct.table_state

    def drop_the_index_after_looking() -> str:
        state = original()
        direct.table_state = original  # type: ignore[method-assign]
        direct._unique[("id",)] = True  # as looked up a moment ago
        pg.execute(f'DROP INDEX "activation"."{TABLE}__floe_key"')
        return state

    direct.table_state = drop_the_index_after_looking  # type: ignore[method-assign]
    sink._indexed = True  # the sink created it once and will not look again
    await send(sink, changes([{"id": 1, "name": "c", "op": "update"}]), 3)
    assert not sink.runs[-1].direct
    assert pg.rows() == [{"id": 1, "name": "c"}]


@pytest.mark.parametrize(
    "index",
    [
        "ALTER TABLE {t} ADD CONSTRAINT pk PRIMARY KEY (id) DEFERRABLE INITIALLY DEFERRED",
        "CREATE UNIQUE INDEX part ON {t} (id) WHERE id > 0",
    ],
    ids=["deferrable", "partial"],
)
async def test_an_index_on_conflict_cannot_use_leaves_the_merge_to_dlt(
    pg: Db, make_sink: SinkFactory, index: str
) -> None:
    sink = build(make_sink, pg, "direct", key_index=False)
    await send(sink, changes([{"id": 1, "name": "a", "op": "insert"}]), 1)
    pg.execute(index.format(t=pg.qualified()))
    await send(sink, changes([{"id": 1, "name": "b", "op": "update"}]), 2)
    assert not sink.runs[-1].direct
    assert pg.rows() == [{"id": 1, "name": "b"}]


async def test_an_index_whose_key_is_part_of_ours_leaves_the_merge_to_dlt(
    pg: Db, make_sink: SinkFactory
) -> None:
    """Unique on (id) INCLUDE (name): ON CONFLICT (id, name) cannot use it."""
    sink = build(make_sink, pg, "direct", key=("id", "name"), key_index=False)
    await send(sink, changes([{"id": 1, "name": "a", "v": 1, "op": "insert"}]), 1)
    pg.execute(f"CREATE UNIQUE INDEX inc ON {pg.qualified()} (id) INCLUDE (name)")
    await send(sink, changes([{"id": 1, "name": "a", "v": 2, "op": "update"}]), 2)
    assert not sink.runs[-1].direct
    assert pg.rows() == [{"id": 1, "name": "a", "v": 2}]


@pytest.fixture
def role_without_temp(pg: Db) -> Iterator[str]:
    """A role that may create schemas in the database but not temporary tables."""
    name = f"floe_role_{uuid.uuid4().hex[:8]}"
    database = pg.url.rsplit("/", 1)[1]
    admin = psycopg2.connect(pg.url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE ROLE {name} LOGIN")
        cur.execute(f'REVOKE TEMPORARY ON DATABASE "{database}" FROM PUBLIC')
        cur.execute(f'GRANT CREATE ON DATABASE "{database}" TO {name}')
    try:
        yield pg.url.replace("postgres@", f"{name}@")
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP OWNED BY {name} CASCADE")
        admin.close()
        outside = psycopg2.connect(PG_ADMIN_URL)
        outside.autocommit = True
        with outside.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            cur.execute(f"DROP ROLE {name}")
        outside.close()


async def test_without_the_temp_privilege_merges_go_through_dlt(
    pg: Db, role_without_temp: str, make_sink: SinkFactory
) -> None:
    db = Db("postgres", {**pg.config, "credentials": role_without_temp}, url=role_without_temp)
    sink = build(make_sink, db, "direct")
    await send(sink, changes([{"id": 1, "name": "a", "op": "insert"}]), 1)
    await send(sink, changes([{"id": 1, "name": "b", "op": "update"}]), 2)
    assert not sink.runs[-1].direct
    assert db.rows() == [{"id": 1, "name": "b"}]


@pytest.mark.parametrize("writer", WRITERS)
async def test_a_lock_timeout_is_transient(pg: Db, make_sink: SinkFactory, writer: str) -> None:
    url = pg.url + "?options=-c%20lock_timeout%3D300"
    db = Db("postgres", {**pg.config, "credentials": url}, url=url)
    sink = build(make_sink, db, writer)
    await send(sink, changes([{"id": 1, "name": "a", "op": "insert"}]), 1)
    await send(sink, changes([{"id": 1, "name": "b", "op": "update"}]), 2)
    locker = psycopg2.connect(pg.url)
    try:
        with locker.cursor() as cur:
            cur.execute(f"LOCK TABLE {pg.qualified()} IN EXCLUSIVE MODE")
        with pytest.raises(TransientSinkError, match="lock timeout"):
            await send(sink, changes([{"id": 1, "name": "c", "op": "update"}]), 3)
    finally:
        locker.rollback()
        locker.close()
    await send(sink, changes([{"id": 1, "name": "c", "op": "update"}]), 3)
    assert pg.rows() == [{"id": 1, "name": "c"}]


@pytest.mark.parametrize("writer", WRITERS)
async def test_a_refused_row_whose_values_read_like_an_outage_is_still_isolated(
    pg: Db, make_sink: SinkFactory, writer: str
) -> None:
    sink = build(make_sink, pg, writer)
    rows = [{"id": i, "score": i, "name": "x", "op": "insert"} for i in (1, 2)]
    await send(sink, changes(rows), 1)
    pg.execute(f"ALTER TABLE {pg.qualified()} ADD CONSTRAINT positive CHECK (score >= 0)")
    steady = [
        {"id": 1, "score": 10, "name": "ok", "op": "update"},
        {"id": 2, "score": -1, "name": "the job timed out: deadlock", "op": "update"},
    ]
    report = await send(sink, changes(steady), 2)
    assert [f.key for f in report.failed] == [{"id": 2}]
    assert {r["id"]: r["score"] for r in pg.rows()} == {1: 10, 2: 2}
