"""Where the HTTP sinks may send requests: the destination address policy.

- Link-local addresses (169.254.0.0/16, fe80::/10) and cloud metadata addresses: never.
- Loopback, private (RFC 1918, fc00::/7), shared (100.64.0.0/10), unspecified,
  multicast and reserved addresses: only when the destination sets
  `allow_private_network: true`.
- Plain http://: only with `sink_config.allow_http: true` or `allow_private_network`.

The policy judges the address a connection is about to be made to, not the URL's text:
host names go through `PolicyResolver` (the connector's resolver), so a name that
resolves, or later rebinds, to a refused address is refused with nothing sent. aiohttp
does not hand IP literals to the resolver: `AddressPolicy.check_request` (a client
middleware, run before every connection of every hop) judges them and the scheme.
`redirect_guard` refuses redirects to another origin, to which aiohttp would replay the
body and every header except Authorization (an `X-API-Key`, for one).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Literal

import aiohttp
import structlog
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from floe_egress.errors import PermanentSinkError

log = structlog.get_logger(__name__)

Verdict = Literal["public", "private", "never"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean
        "169.254.170.2",  # AWS ECS task credentials
        "fd00:ec2::254",  # AWS instance metadata over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (classic)
        "168.63.129.16",  # Azure WireServer
    )
)
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
_RFC1918 = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
_HOW_TO_ALLOW = (
    "HTTP destinations reach only public addresses unless the destination sets "
    "allow_private_network: true"
)
_NEVER = "link-local and cloud metadata addresses are never allowed"


def _embedded(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4), else itself."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if ip.sixtofour is not None:
            return ip.sixtofour
    return ip


def classify(address: str) -> tuple[Verdict, str]:
    """What the policy makes of a connection to `address`, and what kind of address it is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "never", "not an IP address"
    inner = _embedded(ip)
    if ip in METADATA_ADDRESSES or inner in METADATA_ADDRESSES:
        return "never", "a cloud metadata address"
    if inner.is_link_local:
        return "never", "a link-local address"
    kind = _private_kind(inner)
    return ("public", "a public address") if kind is None else ("private", kind)


def _private_kind(ip: IPAddress) -> str | None:
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    if ip in _SHARED:
        return "a shared address (100.64.0.0/10, carrier-grade NAT)"
    if any(ip in network for network in _RFC1918):
        return "a private address (RFC 1918)"
    if ip in _UNIQUE_LOCAL:
        return "a unique local address (fc00::/7)"
    if ip.is_reserved:
        return "a reserved address"
    if ip.is_private or not ip.is_global:
        return "a non-public address"
    return None


def _ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_loopback_host(host: str) -> bool:
    """`localhost` or a loopback IP literal: traffic that never leaves the machine."""
    name = host.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    return _ip_literal(name) and ipaddress.ip_address(name).is_loopback


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Where one destination's requests may go."""

    destination: str
    allow_private_network: bool = False
    allow_http: bool = False

    @property
    def http_allowed(self) -> bool:
        return self.allow_http or self.allow_private_network

    def allows(self, verdict: Verdict) -> bool:
        return verdict == "public" or (verdict == "private" and self.allow_private_network)

    def admit(self, host: str, found: Sequence[ResolveResult]) -> list[ResolveResult]:
        """The resolved addresses of `host` a connection may go to; raises when none."""
        if not found:
            raise OSError(f"{host} resolved to no address")
        judged = [(r, *classify(r["host"])) for r in found]
        kept = [r for r, verdict, _ in judged if self.allows(verdict)]
        refused = [(r["host"], v, kind) for r, v, kind in judged if not self.allows(v)]
        if not kept:
            raise self.refused(host, refused)
        if refused:
            log.warning(
                "destination_addresses_refused",
                destination=self.destination,
                host=host,
                refused=[address for address, _, _ in refused],
            )
        return kept

    def refused(self, host: str, refused: Sequence[tuple[str, Verdict, str]]) -> PermanentSinkError:
        reasons = "; ".join(f"{address} is {kind}" for address, _, kind in refused)
        hints = []
        if any(verdict == "private" for _, verdict, _ in refused):
            hints.append(_HOW_TO_ALLOW)
        if any(verdict == "never" for _, verdict, _ in refused):
            hints.append(_NEVER)
        return PermanentSinkError(
            f"destination {self.destination!r}: refused to connect to {host} ({reasons}); "
            + "; ".join(hints)
        )

    def check_url(self, url: URL) -> None:
        """The scheme, and the address when the host is an IP literal (which aiohttp
        connects to without asking the resolver)."""
        host = url.host or ""
        if _ip_literal(host):
            verdict, kind = classify(host)
            if not self.allows(verdict):
                raise self.refused(host, [(host, verdict, kind)])
        if url.scheme != "https" and not (url.scheme == "http" and self.http_allowed):
            raise PermanentSinkError(
                f"destination {self.destination!r}: refused to send a request to {host} "
                f"over {url.scheme}://: use https://, or set sink_config.allow_http: true "
                "(or allow_private_network: true, for an API on your own network)"
            )

    async def check_request(
        self, request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        """Client middleware: runs before the connector, for every hop of a request."""
        self.check_url(request.url)
        return await handler(request)


class PolicyResolver(AbstractResolver):
    """The connector's resolver: the addresses of a name that the policy refuses are
    dropped, and a name left with none is a PermanentSinkError."""

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner if inner is not None else aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return self.policy.admit(host, await self._inner.resolve(host, port, family))

    async def close(self) -> None:
        await self._inner.close()


def redirect_guard(policy: AddressPolicy) -> aiohttp.TraceConfig:
    """Refuses a redirect to another origin before aiohttp follows it."""

    async def on_redirect(
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestRedirectParams,
    ) -> None:
        try:
            origin = params.url.origin()
            target = params.url.join(URL(params.response.headers.get("Location", ""))).origin()
        except ValueError:
            return  # not a usable URL: aiohttp refuses it itself
        if target != origin:
            raise PermanentSinkError(
                f"destination {policy.destination!r}: {params.method} "
                f"{params.url.with_query(None)} was redirected (HTTP {params.response.status}) "
                f"to another origin, {target}; redirects to another origin are not followed "
                "(the request's body and headers would go there): configure the URL the "
                "API answers at"
            )

    config = aiohttp.TraceConfig()
    config.on_request_redirect.append(on_redirect)
    return config


__all__ = [
    "METADATA_ADDRESSES",
    "AddressPolicy",
    "PolicyResolver",
    "classify",
    "is_loopback_host",
    "redirect_guard",
]
