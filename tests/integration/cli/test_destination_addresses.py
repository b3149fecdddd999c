"""`floe-egress sync` to an API on this machine: refused unless the destination allows
private networks, with an error that says where and how to allow it."""

from __future__ import annotations

from tests.fixtures.crash_harness import ServerThread, expected_records
from tests.fixtures.world import World, customers, initial_rows
from tests.integration.cli.conftest import Cli, destination


def test_an_api_on_loopback_is_a_permanent_failure_without_allow_private_network(
    world: World, server: ServerThread, cli: Cli
) -> None:
    world.table.append(customers(initial_rows(3)))
    sink_config = {
        "url": server.url,
        "allow_http": True,
        "headers": {"Authorization": "Bearer good"},
    }
    config = world.write_config(
        [destination("crm", server, allow_private_network=False, sink_config=sink_config)]
    )

    run = cli("sync", "--config", str(config), "--json")

    assert run.code == 1
    [result] = run.json()
    assert (result["status"], result["error_kind"]) == ("failed", "permanent")
    assert result["error"] == (
        "destination 'crm': refused to connect to 127.0.0.1 (127.0.0.1 is a loopback "
        "address); HTTP destinations reach only public addresses unless the destination "
        "sets allow_private_network: true"
    )
    assert server.snapshot()[1] == [], "nothing reached the API"

    allowed = world.write_config([destination("crm", server, sink_config=sink_config)])
    run = cli("sync", "--config", str(allowed), "--json")
    assert run.code == 0, run.err
    assert server.snapshot()[0] == expected_records(world)
