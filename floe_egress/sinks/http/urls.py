"""The URL settings of the HTTP sink types, as `validate` and a destination's build see them.

Every URL setting (rest_api `url`, `routes.*.url`, `check_url`; hubspot `base_url`,
`oauth.token_url`; salesforce `instance_url`, `oauth.token_url`) must be http:// or
https:// with a host; plain http:// needs an opt-in (`sink_config.allow_http: true`,
or the destination's `allow_private_network: true`), and credentials sent over it to
another machine are a warning. Where requests may connect is judged at connect time
(addresses.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

import structlog
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from floe_egress.config.fields import refuse_control_characters
from floe_egress.config.secrets import has_references
from floe_egress.config.urls import url_problem
from floe_egress.errors import ConfigError
from floe_egress.sinks.http.addresses import AddressPolicy, is_loopback_host

log = structlog.get_logger(__name__)

KeyPath = tuple[str | int, ...]
_CREDENTIAL_HEADER = re.compile(r"auth|key|token|secret|cookie|session", re.IGNORECASE)

_PLAIN_HTTP_REFUSED = (
    "plain http:// is refused: use https://, or set sink_config.allow_http: true (or "
    "allow_private_network: true on the destination, for an API on your own network)"
)


def http_url(value: str) -> str:
    """A URL setting of an HTTP sink: http:// or https:// and a well-formed host and
    port, no control characters. A secret reference is judged once resolved, when the
    destination is built."""
    refuse_control_characters(value)
    if has_references(value):
        return value
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        got = f"{parts.scheme}://" if parts.scheme else "no scheme"
        raise ValueError(f"must be an https:// (or http://) URL; got {got}")
    if not host:
        raise ValueError("must be an https:// (or http://) URL with a host")
    problem = url_problem(value, require_host=True)
    if problem is not None:
        raise ValueError(problem)
    return value


SinkUrl = Annotated[str, AfterValidator(http_url)]


@dataclass(frozen=True, slots=True)
class UrlSetting:
    """One URL of a sink_config, and whether requests to it carry credentials."""

    path: tuple[str, ...]
    """Under sink_config."""
    url: str
    credentials: bool

    @property
    def plain_http(self) -> bool:
        return not has_references(self.url) and urlsplit(self.url).scheme.lower() == "http"

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""


def credential_header(name: str) -> bool:
    """Whether a header named so carries a credential (Authorization, X-API-Key, ...)."""
    return _CREDENTIAL_HEADER.search(name) is not None


class HttpSinkConfig(BaseModel):
    """What the sink_config of every HTTP sink type has: its URLs and `allow_http`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    allow_http: Annotated[bool, Field(strict=True)] = False
    """Let the URLs use plain http:// (also allowed by the destination's
    allow_private_network)."""

    def url_settings(self) -> list[UrlSetting]:
        raise NotImplementedError


def _parsed(item: Mapping[str, Any], model: type[HttpSinkConfig]) -> HttpSinkConfig | None:
    config = item.get("sink_config")
    if not isinstance(config, Mapping):
        return None
    try:
        return model.model_validate(dict(config))
    except ValidationError:
        return None  # reported by the sink_config check, or judged once resolved


def plain_http_problems(
    item: Mapping[str, Any], model: type[HttpSinkConfig]
) -> list[tuple[KeyPath, str]]:
    """`validate`'s check of a raw destination: no http:// URL without an opt-in."""
    config = _parsed(item, model)
    if config is None or config.allow_http or item.get("allow_private_network") is True:
        return []
    return [
        (("sink_config", *s.path), _PLAIN_HTTP_REFUSED)
        for s in config.url_settings()
        if s.plain_http
    ]


def plain_http_warnings(
    item: Mapping[str, Any], model: type[HttpSinkConfig]
) -> list[tuple[KeyPath, str]]:
    """`validate`'s warnings: credentials that would travel over plain http:// to a
    host other than this machine."""
    config = _parsed(item, model)
    if config is None:
        return []
    return [(("sink_config", *s.path), _credentials_message(s)) for s in _exposed(config)]


def _exposed(config: HttpSinkConfig) -> list[UrlSetting]:
    return [
        s
        for s in config.url_settings()
        if s.credentials and s.plain_http and not is_loopback_host(s.host)
    ]


def _credentials_message(setting: UrlSetting) -> str:
    return (
        f"credentials travel unencrypted over plain http:// to {setting.host}: anyone on "
        "the network path can read them; use https://"
    )


def address_policy(
    destination: str, allow_private_network: bool, config: HttpSinkConfig
) -> AddressPolicy:
    """The policy of a destination being built: http:// URLs without an opt-in are a
    ConfigError, credentials over http:// are logged as a warning."""
    policy = AddressPolicy(destination, allow_private_network, config.allow_http)
    if not policy.http_allowed:
        for setting in config.url_settings():
            if setting.plain_http:
                key = ".".join(("sink_config", *setting.path))
                raise ConfigError(f"destination {destination!r}: {key}: {_PLAIN_HTTP_REFUSED}")
    for setting in _exposed(config):
        log.warning(
            "credentials_over_plain_http",
            destination=destination,
            setting=".".join(("sink_config", *setting.path)),
            host=setting.host,
            detail=_credentials_message(setting),
        )
    return policy


__all__ = [
    "HttpSinkConfig",
    "SinkUrl",
    "UrlSetting",
    "address_policy",
    "credential_header",
    "http_url",
    "plain_http_problems",
    "plain_http_warnings",
]
