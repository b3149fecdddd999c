"""The destination address policy's judgement of addresses, URLs and hosts."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError
from yarl import URL

from floe_egress.errors import PermanentSinkError
from floe_egress.sinks.http.addresses import AddressPolicy, classify, is_loopback_host
from floe_egress.sinks.http.urls import SinkUrl


@pytest.mark.parametrize(
    "address",
    ["93.184.216.34", "2606:4700::1111", "64:ff9b::5db8:d822", "2002:5db8:d822::1"],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert classify(address) == ("public", "a public address")


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "a loopback address"),
        ("127.8.9.10", "a loopback address"),
        ("::1", "a loopback address"),
        ("10.0.0.1", "a private address (RFC 1918)"),
        ("172.16.5.4", "a private address (RFC 1918)"),
        ("192.168.1.1", "a private address (RFC 1918)"),
        ("::ffff:10.0.0.1", "a private address (RFC 1918)"),
        ("2002:a00:1::", "a private address (RFC 1918)"),
        ("fd12:3456::1", "a unique local address (fc00::/7)"),
        ("100.64.0.1", "a shared address (100.64.0.0/10, carrier-grade NAT)"),
        ("0.0.0.0", "the unspecified address"),
        ("::", "the unspecified address"),
        ("224.0.0.1", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("240.0.0.1", "a reserved address"),
        ("198.18.0.1", "a non-public address"),
    ],
)
def test_loopback_private_and_reserved_addresses_need_allow_private_network(
    address: str, kind: str
) -> None:
    assert classify(address) == ("private", kind)
    assert not AddressPolicy("crm").allows("private")
    assert AddressPolicy("crm", allow_private_network=True).allows("private")


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("169.254.169.254", "a cloud metadata address"),
        ("169.254.170.2", "a cloud metadata address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("100.100.100.200", "a cloud metadata address"),
        ("192.0.0.192", "a cloud metadata address"),
        ("168.63.129.16", "a cloud metadata address"),
        ("::ffff:169.254.169.254", "a cloud metadata address"),
        ("64:ff9b::a9fe:a9fe", "a cloud metadata address"),
        ("169.254.0.1", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("fe80::1%2", "a link-local address"),
        ("not-an-address", "not an IP address"),
    ],
)
def test_link_local_and_metadata_addresses_are_never_allowed(address: str, kind: str) -> None:
    assert classify(address) == ("never", kind)
    assert not AddressPolicy("crm", allow_private_network=True).allows("never")


@pytest.mark.parametrize(
    ("url", "policy"),
    [
        ("https://93.184.216.34/v1", AddressPolicy("crm")),
        ("https://api.example.com/v1", AddressPolicy("crm")),
        ("http://api.example.com/v1", AddressPolicy("crm", allow_http=True)),
        ("http://10.0.0.5/v1", AddressPolicy("crm", allow_private_network=True)),
    ],
)
def test_a_request_the_policy_allows(url: str, policy: AddressPolicy) -> None:
    policy.check_url(URL(url))


@pytest.mark.parametrize(
    ("url", "policy", "message"),
    [
        (
            "http://api.example.com/v1",
            AddressPolicy("crm"),
            "refused to send a request to api.example.com over http://: use https://",
        ),
        ("ws://api.example.com/v1", AddressPolicy("crm", allow_http=True), "over ws://"),
        (
            "https://10.0.0.5/v1",
            AddressPolicy("crm", allow_http=True),
            "refused to connect to 10.0.0.5 (10.0.0.5 is a private address (RFC 1918)); "
            "HTTP destinations reach only public addresses unless the destination sets "
            "allow_private_network: true",
        ),
        (
            "http://[fd00:ec2::254]/latest",
            AddressPolicy("crm", allow_private_network=True),
            "fd00:ec2::254 is a cloud metadata address",
        ),
    ],
)
def test_a_request_the_policy_refuses(url: str, policy: AddressPolicy, message: str) -> None:
    with pytest.raises(PermanentSinkError) as caught:
        policy.check_url(URL(url))

    assert str(caught.value).startswith("destination 'crm': ")
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST.", True),
        ("api.localhost", True),
        ("127.0.0.1", True),
        ("::1", True),
        ("10.0.0.1", False),
        ("localhost.example.com", False),
        ("api.example.com", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


URL_SETTING: TypeAdapter[str] = TypeAdapter(SinkUrl)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example.com/v1/contacts/{customer_id}",
        "HTTPS://API.EXAMPLE.COM",
        "http://10.0.0.5:8080/v1",
        "https://[2606:4700::1111]/v1",
        "${env:CRM_URL}",
        "https://${env:CRM_HOST}/v1",
    ],
)
def test_url_settings_that_are_accepted(url: str) -> None:
    assert URL_SETTING.validate_python(url) == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "must be an https:// (or http://) URL; got file://"),
        ("ftp://files.example.com/x", "must be an https:// (or http://) URL; got ftp://"),
        ("api.example.com/v1", "must be an https:// (or http://) URL; got no scheme"),
        ("https:///v1/contacts", "must be an https:// (or http://) URL with a host"),
        ("https://[::1/v1", "is not a valid URL"),
    ],
)
def test_url_settings_that_are_refused(url: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        URL_SETTING.validate_python(url)

    assert caught.value.errors()[0]["ctx"]["error"].args[0] == message
