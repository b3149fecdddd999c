"""Fixtures for the daemon tests: a World, a fake REST API and real daemon processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.fake_apis import FakeRestApi
from tests.fixtures.world import World, rest_destination
from tests.integration.daemon.harness import DaemonProcess, free_port

API_TOKEN = "Bearer good"
StartDaemon = Callable[..., Awaitable[DaemonProcess]]


def destination(api_url: str, name: str = "crm", **overrides: Any) -> dict[str, Any]:
    """A rest_api destination of gold.customers polled every second."""
    dest = rest_destination(api_url + "/v1/contacts", name=name)
    dest["schedule"] = {"interval_seconds": 1}
    dest.update(overrides)
    return dest


def write_config(
    world: World,
    path: Path,
    destinations: list[dict[str, Any]],
    *,
    port: int,
    state_url: str | None = None,
    **server: Any,
) -> Path:
    """floe.yaml for one daemon: the world's catalog and state, the daemon's own port."""
    doc: dict[str, Any] = {
        "apiVersion": "floe.dev/v1",
        "kind": "FloeSpec",
        "metadata": {"name": "daemon-test"},
        "catalog": {"name": "gold", **world.catalog_props},
        "state": {"url": state_url or world.state_url},
        "server": {"host": "127.0.0.1", "port": port, "shutdown_grace_seconds": 5, **server},
        "ingestion": {"destinations": destinations},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path / "world", f"sqlite:///{tmp_path / 'state' / 'state.db'}")


@pytest.fixture
async def api() -> AsyncIterator[FakeRestApi]:
    server = await FakeRestApi(token=API_TOKEN).start()
    yield server
    await server.stop()


@pytest.fixture
async def start_daemon(tmp_path: Path) -> AsyncIterator[StartDaemon]:
    """Start `floe-egress run` processes; any still running afterwards are killed."""
    started: list[DaemonProcess] = []

    async def start(
        world: World,
        destinations: list[dict[str, Any]],
        *,
        name: str = "daemon",
        env: dict[str, str] | None = None,
        wait_ready: bool = True,
        options: tuple[str, ...] = (),
        **config: Any,
    ) -> DaemonProcess:
        port = free_port()
        path = write_config(world, tmp_path / name / "floe.yaml", destinations, port=port, **config)
        daemon = await DaemonProcess.start(
            path,
            port=port,
            work_dir=tmp_path / name / "work",
            env=env,
            name=name,
            options=options,
        )
        started.append(daemon)
        if wait_ready:
            await daemon.wait_ready()
        return daemon

    yield start
    for daemon in started:
        await daemon.kill()


def expected_records(world: World) -> dict[str, dict[str, Any]]:
    """What the fake API holds once it mirrors the table (rest_destination's mapping)."""
    return {
        str(k): {"external_id": k, "email": r["email"], "plan_tier": r["plan"]}
        for k, r in world.rows().items()
    }
