"""A Salesforce destination configured with an OAuth grant whose secrets are references,
through the whole cycle: floe.yaml → resolved secrets → token → upserts → renewal."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from floe_egress.daemon.cycle import run_cycle
from floe_egress.daemon.runtime import Runtime
from tests.fixtures.fake_apis import FakeSalesforce
from tests.fixtures.world import World, customers, initial_rows


@pytest.fixture
async def salesforce() -> AsyncIterator[FakeSalesforce]:
    server = await FakeSalesforce().start()
    yield server
    await server.stop()


async def test_oauth_secrets_from_the_environment_and_a_renewal_mid_run(
    world: World,
    salesforce: FakeSalesforce,
    runtimes: list[Runtime],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SF_CLIENT_SECRET", salesforce.client_secret)
    monkeypatch.setenv("SF_REFRESH_TOKEN", salesforce.refresh_token)
    world.table.append(customers(initial_rows(3)))
    dest = {
        "name": "sfdc",
        "source_table": "gold.customers",
        "mode": "mirror",
        "sink_type": "salesforce",
        "allow_private_network": True,
        "sink_config": {
            "instance_url": salesforce.url,
            "sobject": "Contact",
            "oauth": {
                "client_id": salesforce.client_id,
                "client_secret": "${env:SF_CLIENT_SECRET}",
                "refresh_token": "${env:SF_REFRESH_TOKEN}",
            },
        },
        "field_mapping": {"customer_id": "External_Id__c", "email": "Email"},
    }
    loaded = world.load([dest])
    assert loaded.literal_secrets == ()
    runtime = Runtime(loaded.spec)
    runtimes.append(runtime)
    first = await run_cycle(runtime, loaded.spec.ingestion.destinations[0])
    assert (first.status, first.inserted) == ("ok", 3)

    salesforce.expire_session()
    world.reload().delete("customer_id = 2")
    second = await run_cycle(runtime, loaded.spec.ingestion.destinations[0])
    assert (second.status, second.deleted) == ("ok", 1)
    assert sorted(salesforce.table()) == [1, 3]
    assert len(salesforce.tokens_issued) == 2
