"""/healthz answers while the loop runs; /readyz follows the state store and the catalog."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from tests.fixtures.egress import PG_ADMIN_URL
from tests.fixtures.fake_apis import FakeRestApi
from tests.fixtures.world import World
from tests.integration.daemon.conftest import StartDaemon, destination, write_config
from tests.integration.daemon.harness import DaemonProcess, free_port


def _admin(sql: str) -> None:
    conn = psycopg2.connect(PG_ADMIN_URL)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


@pytest.fixture
def pg_name() -> Iterator[str]:
    """A PostgreSQL database name the test creates and drops itself."""
    name = f"floe_test_{uuid.uuid4().hex[:12]}"
    yield name
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.postgres
async def test_readyz_is_503_until_the_state_store_answers_and_again_once_it_is_gone(
    world: World, api: FakeRestApi, start_daemon: StartDaemon, pg_name: str
) -> None:
    state_url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{pg_name}"
    daemon = await start_daemon(
        world, [destination(api.url)], state_url=state_url, wait_ready=False
    )
    assert await daemon.wait_status("/healthz", 200) == {"status": "alive"}
    body = await daemon.wait_status("/readyz", 503, where=lambda b: "state_store" in b["checks"])
    assert body["checks"]["state_store"] != "ok"
    assert pg_name in body["checks"]["state_store"], "the reason names the store"
    assert body["checks"]["catalog"] == "ok"

    _admin(f'CREATE DATABASE "{pg_name}"')
    body = await daemon.wait_status("/readyz", 200, within=15)
    assert body["checks"] == {
        "state_store": "ok",
        "catalog": "ok",
        "work_dir": "ok",
        "scheduler": "ok",
    }

    _admin(f'DROP DATABASE "{pg_name}" WITH (FORCE)')
    body = await daemon.wait_status("/readyz", 503, within=10)
    assert body["checks"]["state_store"] != "ok"
    assert (await daemon.get("/healthz"))[0] == 200, "alive while not ready"


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs (this machine's tests run as root, as its CI does)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"mounting a tmpfs needs root: {done.stderr}"
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_readyz_says_when_the_work_directory_is_full(
    world: World, api: FakeRestApi, tmp_path: Path, small_filesystem: Path
) -> None:
    port = free_port()
    config = write_config(world, tmp_path / "floe.yaml", [destination(api.url)], port=port)
    daemon = await DaemonProcess.start(config, port=port, work_dir=small_filesystem / "work")
    try:
        await daemon.wait_ready()
        filler = small_filesystem / "filler"
        await asyncio.to_thread(
            subprocess.run, ["dd", "if=/dev/zero", f"of={filler}", "bs=1M"], capture_output=True
        )
        body = await daemon.wait_status("/readyz", 503, within=10)
        assert "KiB free" in body["checks"]["work_dir"]
        assert str(small_filesystem / "work") in body["checks"]["work_dir"]
        filler.unlink()
        await daemon.wait_status("/readyz", 200, within=10)
    finally:
        await daemon.kill()
