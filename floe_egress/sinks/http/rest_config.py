"""sink_config of `rest_api`: a generic JSON-over-HTTP destination.

Default wire format: POST `url` with
`{"destination": ..., "snapshot_id": <to_snapshot>, "op": "upsert"|"delete", "records": [...]}`
and an `Idempotency-Key` header; delete records carry the key fields only.
`record_template`/`body_template` (Jinja2, templates.py) reshape records and bodies;
each is compiled here, so `validate` shows a syntax error at its key with its line.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from yarl import URL

from floe_egress.config.fields import (
    HeaderName,
    HeaderValue,
    Text,
    TimeoutSeconds,
)
from floe_egress.config.secrets import has_references, mask_values
from floe_egress.sinks.http.templates import TemplateError, compile_template
from floe_egress.sinks.http.urls import HttpSinkConfig, SinkUrl, UrlSetting, credential_header

RouteName = Literal["upsert", "insert", "update", "delete"]
Method = Literal["POST", "PUT", "PATCH", "DELETE"]
PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
_IDS_PATH = re.compile(r"[A-Za-z0-9_\-]+(\[\])?(\.[A-Za-z0-9_\-]+(\[\])?)*")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BearerAuth(_Model):
    type: Literal["bearer"]
    token: Annotated[HeaderValue, Field(min_length=1)]


class BasicAuth(_Model):
    type: Literal["basic"]
    username: str
    password: str


class ApiKeyAuth(_Model):
    type: Literal["api_key"]
    value: Annotated[HeaderValue, Field(min_length=1)]
    name: Annotated[Text, Field(min_length=1)] = "X-API-Key"
    location: Literal["header", "query"] = "header"


Auth = Annotated[BearerAuth | BasicAuth | ApiKeyAuth, Field(discriminator="type")]


def auth_parts(auth: Auth | None) -> tuple[dict[str, str], list[tuple[str, str]], str | None]:
    """Headers, query parameters and the credential (for the account key) of `auth`.

    The forms of a credential made here are masked from now on, as its value is where
    it was resolved: the base64 of user:password a Basic header carries, and an API
    key as the query string encodes it (an API may echo either in its error text).
    """
    if auth is None:
        return {}, [], None
    if isinstance(auth, BearerAuth):
        return {"Authorization": f"Bearer {auth.token}"}, [], auth.token
    if isinstance(auth, BasicAuth):
        raw = base64.b64encode(f"{auth.username}:{auth.password}".encode()).decode()
        mask_values([raw])
        return {"Authorization": f"Basic {raw}"}, [], f"{auth.username}:{auth.password}"
    if auth.location == "query":
        encoded = URL.build(query={auth.name: auth.value}).raw_query_string.partition("=")[2]
        if encoded != auth.value:
            mask_values([encoded])
        return {}, [(auth.name, auth.value)], auth.value
    return {auth.name: auth.value}, [], auth.value


def _compiles(value: str | None) -> str | None:
    """A template setting: compiled here so that `validate` shows a syntax error at its
    key, with the template's line."""
    if value is not None:
        try:
            compile_template("template", value)
        except TemplateError as exc:
            where = f"line {exc.line}: " if exc.line is not None else ""
            raise ValueError(f"the template does not compile: {where}{exc.problem}") from None
    return value


def _ids_path(value: str) -> str:
    if not _IDS_PATH.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a record id path: use dotted names, `[]` after a list "
            "(e.g. `ids`, `results[].id`, `data.items[].key`)"
        )
    return value


Template = Annotated[str, AfterValidator(_compiles)]
IdsPath = Annotated[str, AfterValidator(_ids_path)]


class Route(_Model):
    """Where one kind of change goes; `url` may hold `{field}` placeholders."""

    method: Method = "POST"
    url: SinkUrl | None = None
    record_template: Template | None = None
    body_template: Template | None = None


class RejectedValues(_Model):
    """A list in a 2xx response naming refused records by a field's value (Iterable's
    `invalidEmails`): the records whose `field` holds a listed value are failed rows."""

    path: IdsPath
    field: Annotated[str, Field(min_length=1)]


TemplateKind = Literal["record_template", "body_template"]


class RestApiConfig(HttpSinkConfig):
    url: SinkUrl
    """Endpoint; `{field}` placeholders (mapped field or source key names) make each
    record its own request, e.g. https://api.example.com/v1/contacts/{customer_id}."""
    method: Method = "POST"
    routes: dict[RouteName, Route] = Field(default_factory=dict)
    """Per-change overrides. insert/update rows use `insert`/`update` when given, else
    `upsert`; delete rows use `delete` (default: same method and url as upsert)."""
    body: Literal["batch", "single"] | None = None
    """batch: one envelope with many records; single: one record per request, the body
    being the record itself (no body for DELETE). Default: single when a URL has
    placeholders, else batch."""
    max_records_per_request: Annotated[int, Field(ge=1, le=100_000)] | None = None
    record_ids_path: IdsPath | None = None
    """Where the response lists created/updated ids: `ids`, `results[].id`, `id`, ..."""
    record_template: Template | None = None
    """Jinja2 (sandboxed) rendering each record as JSON, from `record`, `op`,
    `destination` and `snapshot_id`; a route's own template wins over this one."""
    body_template: Template | None = None
    """Jinja2 (sandboxed) rendering a request's body as JSON from `records` (the
    records as rendered), `op`, `destination` and `snapshot_id`."""
    rejected_values: list[RejectedValues] = Field(default_factory=list)
    headers: dict[HeaderName, HeaderValue] = Field(default_factory=dict)
    auth: Auth | None = None
    timeout_seconds: TimeoutSeconds | None = None
    verify_tls: bool = True
    decimals: Literal["string", "number"] = "string"
    check_url: SinkUrl | None = None
    """What `check()` requests (default: `url` up to its first placeholder)."""
    check_method: Literal["GET", "HEAD", "OPTIONS"] = "HEAD"

    @model_validator(mode="after")
    def _single_for_templates(self) -> RestApiConfig:
        templated = any(PLACEHOLDER.search(u) for u in self.urls())
        if templated and self.body == "batch":
            raise ValueError(
                "a URL with {field} placeholders addresses one record: use body: single "
                "(or leave body out)"
            )
        return self

    def url_settings(self) -> list[UrlSetting]:
        credentials = self.auth is not None or any(map(credential_header, self.headers))
        found = [UrlSetting(("url",), self.url, credentials)]
        for name, route in self.routes.items():
            if route.url is not None:
                found.append(UrlSetting(("routes", name, "url"), route.url, credentials))
        if self.check_url is not None:
            found.append(UrlSetting(("check_url",), self.check_url, credentials))
        return found

    def urls(self) -> list[str]:
        return [self.url, *(r.url for r in self.routes.values() if r.url)]

    @property
    def single(self) -> bool:
        if self.body is not None:
            return self.body == "single"
        return any(PLACEHOLDER.search(u) for u in self.urls())

    def route(self, name: RouteName) -> Route:
        """The route of `name`, falling back to `upsert`, then to url/method."""
        base = Route(method=self.method, url=self.url)
        upsert = self.routes.get("upsert", base)
        chosen = self.routes.get(name, upsert)
        return Route(method=chosen.method, url=chosen.url or upsert.url or self.url)

    def template(self, name: RouteName, kind: TemplateKind) -> tuple[str, str] | None:
        """The (key, source) of the `kind` template of route `name`: the route's own,
        then (for insert and update) the upsert route's, then the top-level one."""
        chain: list[RouteName] = [name] if name in ("upsert", "delete") else [name, "upsert"]
        for each in chain:
            route = self.routes.get(each)
            source = getattr(route, kind) if route is not None else None
            if source is not None:
                return f"routes.{each}.{kind}", source
        top = getattr(self, kind)
        return None if top is None else (kind, top)

    def probe_url(self) -> str:
        if self.check_url:
            return self.check_url
        return self.url.split("{", 1)[0].rstrip("/") or self.url


def template_reference_problems(item: Mapping[str, Any]) -> list[tuple[tuple[str, ...], str]]:
    """A secret reference in a template would be resolved into its text and sent in
    bodies: refused (on the raw destination mapping, before references are resolved)."""
    config = item.get("sink_config")
    if not isinstance(config, Mapping):
        return []
    places: list[tuple[tuple[str, ...], Any]] = []
    routes = config.get("routes")
    for kind in ("record_template", "body_template"):
        places.append((("sink_config", kind), config.get(kind)))
        for name, route in routes.items() if isinstance(routes, Mapping) else ():
            if isinstance(route, Mapping):
                places.append((("sink_config", "routes", str(name), kind), route.get(kind)))
    message = (
        "a template cannot hold a secret reference (${...}): it would be sent in request "
        "bodies; put secrets in headers or auth"
    )
    return [(path, message) for path, value in places if has_references(value)]
