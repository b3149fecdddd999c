"""The destination address policy on real connections: which addresses are refused,
that a refused address never sees a connection, and that redirects to another origin
carry neither the batch nor the credentials there."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Sequence

import aiohttp
import pyarrow as pa
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from structlog.testing import capture_logs

from floe_egress.errors import ConfigError, PermanentSinkError, SinkError
from floe_egress.sinks.http import hubspot, rest_api, salesforce
from floe_egress.sinks.http.addresses import AddressPolicy, PolicyResolver, redirect_guard
from floe_egress.sinks.registry import SinkType
from tests.fixtures.connects import hosts, recording
from tests.fixtures.fake_apis import FakeHubSpot, FakeRestApi, Fault
from tests.integration.sinks_http.conftest import SinkFactory, changes, context

SECRET = "k-3f9a2c77d1e5"
MAPPING = {"customer_id": "external_id", "email": "email"}
SCHEMA = pa.schema([("customer_id", pa.int64()), ("email", pa.string())])
NO_CONTENT = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def batch() -> pa.Table:
    return changes([{"customer_id": 1, "email": "one@x.io", "op": "insert"}], SCHEMA)


def rest(url: str, **extra: object) -> dict[str, object]:
    """A rest_api sink_config whose requests carry an X-API-Key."""
    return {"url": url, "auth": {"type": "api_key", "value": SECRET}, **extra}


class Listener:
    """A bare TCP server on 127.0.0.1 that counts connections (and answers 204)."""

    def __init__(self) -> None:
        self.connections = 0
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> Listener:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(NO_CONTENT)
            await writer.drain()
        writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    server = await Listener().start()
    yield server
    await server.stop()


@pytest.fixture
async def elsewhere() -> AsyncIterator[FakeRestApi]:
    """Another origin: where a redirect points."""
    server = await FakeRestApi().start()
    yield server
    await server.stop()


# --- loopback and private addresses: only with allow_private_network ---------------------


@pytest.mark.parametrize(
    ("host", "refused"),
    [
        ("127.0.0.1", r"refused to connect to 127\.0\.0\.1 \(127\.0\.0\.1 is a loopback address\)"),
        # A name goes through the connector's resolver: judged by what it resolves to.
        ("localhost", r"refused to connect to localhost \((::1|127\.0\.0\.1) is a loopback"),
    ],
)
async def test_a_server_on_this_machine_is_refused_without_allow_private_network(
    make_sink: SinkFactory, listener: Listener, host: str, refused: str
) -> None:
    url = f"http://{host}:{listener.port}/v1/contacts"
    sink = make_sink(rest_api.SINK_TYPE, rest(url, allow_http=True), allow_private_network=False)

    with recording() as connects:
        with pytest.raises(PermanentSinkError, match=refused) as checked:
            await sink.check()
        with pytest.raises(PermanentSinkError, match=refused):
            await sink.write(batch(), context())

    assert str(checked.value).startswith("destination 'crm': ")
    assert str(checked.value).endswith(
        "HTTP destinations reach only public addresses unless the destination sets "
        "allow_private_network: true"
    )
    assert connects == []
    assert listener.connections == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_allow_private_network_lets_the_sink_reach_this_machine(
    make_sink: SinkFactory, rest_server: FakeRestApi, host: str
) -> None:
    url = rest_server.url.replace("127.0.0.1", host) + "/v1/contacts"
    config = {"url": url, "headers": {"Authorization": "Bearer good"}}
    sink = make_sink(rest_api.SINK_TYPE, config, mapping=MAPPING, allow_private_network=True)

    await sink.check()
    report = await sink.write(batch(), context())

    assert report.delivered == {"insert": 1}
    assert rest_server.records == {"1": {"external_id": 1, "email": "one@x.io"}}


def test_the_recorder_sees_the_connects_that_happen() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with recording() as connects, socket.create_connection(("127.0.0.1", port)):
            pass

    assert connects == [("127.0.0.1", port)]


# --- link-local and metadata addresses: never ---------------------------------------------


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("169.254.169.254", "169.254.169.254 is a cloud metadata address"),
        ("169.254.10.1", "169.254.10.1 is a link-local address"),
        ("100.100.100.200", "100.100.100.200 is a cloud metadata address"),
        ("[fd00:ec2::254]", "fd00:ec2::254 is a cloud metadata address"),
        ("[fe80::1]", "fe80::1 is a link-local address"),
        ("[::ffff:169.254.169.254]", "::ffff:a9fe:a9fe is a cloud metadata address"),
    ],
)
async def test_metadata_and_link_local_addresses_are_refused_even_with_allow_private_network(
    make_sink: SinkFactory, host: str, kind: str
) -> None:
    sink = make_sink(
        rest_api.SINK_TYPE, rest(f"https://{host}/v1/contacts"), allow_private_network=True
    )

    with recording() as connects, pytest.raises(PermanentSinkError) as caught:
        await sink.check()

    assert f"({kind}); link-local and cloud metadata addresses are never allowed" in str(
        caught.value
    )
    assert "allow_private_network" not in str(caught.value)
    assert connects == []


class StaticResolver(AbstractResolver):
    """DNS as a test writes it: each lookup of a name takes the next answer."""

    def __init__(self, answers: dict[str, list[Sequence[str]]]) -> None:
        self.answers = answers

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = self.answers[host].pop(0)
        return [
            ResolveResult(
                hostname=host,
                host=a,
                port=port,
                family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for a in addresses
        ]

    async def close(self) -> None:
        pass


def guarded_session(policy: AddressPolicy, dns: StaticResolver) -> aiohttp.ClientSession:
    """A session built as HttpClient builds it, over a scripted DNS, with no DNS cache
    and no kept-alive connections: every request resolves and connects anew."""
    connector = aiohttp.TCPConnector(
        resolver=PolicyResolver(policy, dns), use_dns_cache=False, force_close=True
    )
    return aiohttp.ClientSession(
        connector=connector,
        middlewares=(policy.check_request,),
        trace_configs=[redirect_guard(policy)],
    )


async def test_a_name_is_judged_by_every_address_it_resolves_to(listener: Listener) -> None:
    policy = AddressPolicy("crm", allow_private_network=True, allow_http=True)
    dns = StaticResolver({"api.example.test": [["169.254.169.254", "127.0.0.1"]]})
    url = f"http://api.example.test:{listener.port}/v1/contacts"

    with recording() as connects:
        async with guarded_session(policy, dns) as session, session.post(url) as response:
            assert response.status == 204

    assert hosts(connects) == {"127.0.0.1"}
    assert listener.connections == 1


async def test_a_name_that_rebinds_to_a_metadata_address_is_refused(listener: Listener) -> None:
    policy = AddressPolicy("crm", allow_private_network=True, allow_http=True)
    dns = StaticResolver({"api.example.test": [["127.0.0.1"], ["169.254.169.254"]]})
    url = f"http://api.example.test:{listener.port}/v1/contacts"

    with recording() as connects:
        async with guarded_session(policy, dns) as session:
            async with session.post(url) as first:
                assert first.status == 204
            with pytest.raises(PermanentSinkError, match=r"169\.254\.169\.254 is a cloud metadata"):
                await session.post(url)

    assert hosts(connects) == {"127.0.0.1"}
    assert listener.connections == 1


# --- plain http:// -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sink_type", "config", "key"),
    [
        (rest_api.SINK_TYPE, rest("http://api.example.com/v1"), "sink_config.url"),
        (
            rest_api.SINK_TYPE,
            rest("https://api.example.com/v1", check_url="http://api.example.com/ping"),
            "sink_config.check_url",
        ),
        (
            hubspot.SINK_TYPE,
            {"object_type": "contacts", "access_token": "t", "base_url": "http://hs.example"},
            "sink_config.base_url",
        ),
        (
            salesforce.SINK_TYPE,
            {"instance_url": "http://sf.example", "access_token": "t", "sobject": "Contact"},
            "sink_config.instance_url",
        ),
    ],
)
def test_plain_http_is_refused_at_build_without_an_opt_in(
    make_sink: SinkFactory, sink_type: SinkType, config: dict[str, object], key: str
) -> None:
    with pytest.raises(ConfigError, match=rf"destination 'crm': {key}: plain http:// is refused"):
        make_sink(sink_type, config, allow_private_network=False)


def test_credentials_over_plain_http_to_another_machine_are_logged(
    make_sink: SinkFactory,
) -> None:
    with capture_logs() as logs:
        make_sink(rest_api.SINK_TYPE, rest("http://10.1.2.3/v1", allow_http=True))
        make_sink(rest_api.SINK_TYPE, rest("http://localhost:8080/v1", allow_http=True))
        make_sink(rest_api.SINK_TYPE, rest("https://api.example.com/v1"))

    warnings = [e for e in logs if e["event"] == "credentials_over_plain_http"]
    assert [(w["destination"], w["setting"], w["host"]) for w in warnings] == [
        ("crm", "sink_config.url", "10.1.2.3")
    ]
    assert warnings[0]["log_level"] == "warning"


# --- redirects to another origin -----------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_to_another_origin_delivers_neither_the_batch_nor_the_api_key(
    make_sink: SinkFactory, rest_server: FakeRestApi, elsewhere: FakeRestApi, status: int
) -> None:
    away = Fault(status=status, headers={"Location": f"{elsewhere.url}/v1/contacts"})
    rest_server.fail(*[away] * 10)
    sink = make_sink(rest_api.SINK_TYPE, rest(f"{rest_server.url}/v1/contacts"), mapping=MAPPING)

    with pytest.raises(SinkError):
        await sink.write(batch(), context())

    assert elsewhere.log == []
    assert rest_server.requests("/v1/contacts", "POST")[0].headers["X-API-Key"] == SECRET


async def test_an_oauth_token_request_is_not_redirected_to_another_origin(
    make_sink: SinkFactory, hubspot_server: FakeHubSpot, elsewhere: FakeRestApi
) -> None:
    away = Fault(status=307, headers={"Location": f"{elsewhere.url}/oauth/v1/token"})
    hubspot_server.fail(*[away] * 10)
    grant = {
        "client_id": hubspot_server.client_id,
        "client_secret": hubspot_server.client_secret,
        "refresh_token": hubspot_server.refresh_token,
    }
    config = {"object_type": "contacts", "base_url": hubspot_server.url, "oauth": grant}
    sink = make_sink(hubspot.SINK_TYPE, config)

    with pytest.raises(SinkError):
        await sink.check()

    assert elsewhere.log == []
