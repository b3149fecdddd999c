"""Unreachable databases, bad credentials, lost connections and rows a database refuses."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from floe_egress.errors import PermanentSinkError, TransientSinkError
from floe_egress.sinks.database import sink as sink_module
from floe_egress.sinks.database.dlt_db import DltDb
from tests.fixtures.proxy import Proxy
from tests.integration.sinks_db.conftest import Db, SinkFactory, changes, make_db, send

pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")

PASSWORD = "s3cr3t-pw"


def with_login(url: str, user: str, password: str, port: int | None = None) -> str:
    parts = urlsplit(url)
    netloc = f"{user}:{password}@{parts.hostname}:{port or parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.mark.parametrize(
    ("kind", "user", "port", "reason", "error"),
    [
        # Refused credentials need someone to act; a server that does not answer may be
        # back on the next try (errors.py: permanent and transient).
        ("postgres", "nobody", None, 'role "nobody" does not exist', PermanentSinkError),
        ("mysql", "root", None, "Access denied", PermanentSinkError),
        ("postgres", "postgres", 1, "Connection refused", TransientSinkError),
        ("mysql", "root", 1, "Connection refused", TransientSinkError),
    ],
)
async def test_check_fails_fast_naming_the_destination_without_the_password(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    make_sink: SinkFactory,
    kind: str,
    user: str,
    port: int | None,
    reason: str,
    error: type[Exception],
) -> None:
    db = make_db(request, kind, tmp_path)
    sink = make_sink(db, credentials=with_login(db.url, user, PASSWORD, port))
    started = time.monotonic()
    with pytest.raises(error) as failure:
        await sink.check()
    message = str(failure.value)
    assert time.monotonic() - started < 5
    assert message.startswith(f"destination 'app_db' ({kind} ")
    assert reason in message
    assert PASSWORD not in message
    assert PASSWORD not in repr(failure.value.__cause__) + repr(failure.value.__context__)


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
async def test_a_host_that_does_not_resolve_is_transient(
    request: pytest.FixtureRequest, tmp_path: Path, make_sink: SinkFactory, kind: str
) -> None:
    """DNS down or a host not (yet) there: the next try may work, so the daemon backs
    off instead of marking the destination failing."""
    db = make_db(request, kind, tmp_path)
    parts = urlsplit(with_login(db.url, "app", PASSWORD))
    nowhere = urlunsplit(parts._replace(netloc=f"app:{PASSWORD}@db.does-not-exist.invalid"))
    sink = make_sink(db, credentials=nowhere)
    with pytest.raises(TransientSinkError) as failure:
        await sink.check()
    assert str(failure.value).startswith(f"destination 'app_db' ({kind} ")
    assert PASSWORD not in str(failure.value)


@pytest.mark.parametrize("writer", ["dlt", "direct"])
async def test_a_connection_lost_during_the_load_is_transient_and_the_retry_applies(
    pg: Db, make_sink: SinkFactory, monkeypatch: pytest.MonkeyPatch, writer: str
) -> None:
    """dlt: a write through dlt dies in its load step and leaves its package pending.
    direct: the write goes through the driver (pgdirect.py) and leaves nothing behind."""
    proxy = await Proxy(urlsplit(pg.url).port or 5432).start()
    url = urlsplit(pg.url)._replace(netloc=f"postgres:{PASSWORD}@127.0.0.1:{proxy.port}")
    sink = make_sink(pg, "upsert", credentials=urlunsplit(url))
    if writer == "dlt":
        sink.db.direct = None
    batch_2 = changes([{"id": 2, "name": "b", "op": "insert"}])
    await send(sink, changes([{"id": 1, "name": "a", "op": "insert"}]), 1)

    loop = asyncio.get_running_loop()
    original = DltDb.load

    def load_while_the_host_goes_away(self: DltDb, *args: Any, **kwargs: Any) -> Any:
        asyncio.run_coroutine_threadsafe(proxy.stop(), loop).result()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DltDb, "load", load_while_the_host_goes_away)
    with pytest.raises(TransientSinkError) as failure:
        await send(sink, batch_2, 2)
    assert "destination 'app_db' (postgres " in str(failure.value)
    assert PASSWORD not in str(failure.value)
    assert sink.db.pipeline.has_pending_data == (writer == "dlt")

    monkeypatch.setattr(DltDb, "load", original)
    with pytest.raises(TransientSinkError, match="Connection refused"):
        await send(sink, batch_2, 2)
    await proxy.start()
    await send(sink, batch_2, 2)
    assert pg.rows() == [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    assert sink.runs[-1].direct == (writer == "direct")
    await proxy.stop()


@pytest.mark.parametrize("kind", ["postgres", "mysql", "sqlite"])
async def test_rows_the_database_refuses_are_isolated_and_reported(
    request: pytest.FixtureRequest, tmp_path: Path, make_sink: SinkFactory, kind: str
) -> None:
    db = make_db(request, kind, tmp_path)
    if kind == "postgres":
        db.execute('CREATE SCHEMA "activation"')
    db.execute(
        f"CREATE TABLE {db.qualified()} (id BIGINT PRIMARY KEY, name VARCHAR(20), "
        "score BIGINT CHECK (score >= 0))"
    )
    sink = make_sink(db, "upsert")
    rows = [{"id": i, "name": f"n{i}", "score": 9 - i, "op": "insert"} for i in range(4)]
    rows[2]["score"] = -1
    report = await send(sink, changes(rows), 1)
    assert [(f.key, f.op) for f in report.failed] == [({"id": 2}, "insert")]
    assert "constraint" in report.failed[0].reason.lower()
    assert report.delivered == {"insert": 3}
    assert [r["id"] for r in db.rows()] == [0, 1, 3]


async def test_a_batch_refused_for_every_row_fails_as_a_whole(
    pg: Db, make_sink: SinkFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = 0
    original = DltDb.load

    def counted(self: DltDb, *args: Any, **kwargs: Any) -> Any:
        nonlocal runs
        runs += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DltDb, "load", counted)
    monkeypatch.setattr(sink_module, "MAX_ISOLATED_ROWS", 1)
    pg.execute('CREATE SCHEMA "activation"')
    pg.execute(
        f"CREATE TABLE {pg.qualified()} (id BIGINT PRIMARY KEY, score BIGINT CHECK (score >= 0))"
    )
    sink = make_sink(pg, "upsert")
    rows = [{"id": i, "score": -1, "op": "insert"} for i in range(6)]
    with pytest.raises(PermanentSinkError, match=r"destination 'app_db'.*check constraint"):
        await send(sink, changes(rows), 1)
    # bisecting the 6 rows down to each one would take 11 runs
    assert runs <= 6
