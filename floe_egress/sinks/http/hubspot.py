"""`hubspot`: CRM v3 objects (contacts, companies, deals, tickets, custom objects).

Modes and the endpoints they use (all under /crm/v3/objects/{object_type}/batch/):
- upsert (and mirror's inserts/updates): `upsert`, matching on `id_property` (a unique
  property; default the mapped key field), 100 inputs a request
- update: `update` with idProperty; keys HubSpot does not have are skipped
- insert: `create`; records whose unique value already exists (CONFLICT) are skipped
- mirror's deletes: `read` by id_property to find HubSpot's internal ids, then
  `archive` them; keys HubSpot does not have count as deleted
- append: not offered (a CRM object holds current state, not events)

Each input carries `objectWriteTraceId` = its position in the request, so 207
multi-status errors are matched back to rows (also by `context.ids`). A whole-request
400/409/422 is split in halves to isolate bad records. A 429 waits out `Retry-After`
(1 s for the SECONDLY and TEN_SECONDLY_ROLLING policies when absent); a DAILY policy
429 fails the batch for a later run. Property values are sent as strings (null: "",
which clears the property), as HubSpot stores them. Auth: a private app's
`access_token`, or a public app's `oauth` refresh token, from which the sink gets
30-minute access tokens and renews them on the first 401.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from floe_egress.config.fields import HeaderValue, Text, TimeoutSeconds
from floe_egress.config.models import RateLimit
from floe_egress.errors import SinkError, TransientSinkError
from floe_egress.sinks.base import FailedRow
from floe_egress.sinks.http.client import (
    HttpClient,
    Request,
    Response,
    Retry,
    bearer_client,
    default_classifier,
    error_message,
)
from floe_egress.sinks.http.convert import as_text, dumps
from floe_egress.sinks.http.oauth import OAuthTokens
from floe_egress.sinks.http.receipts import OrderKey, Receipts
from floe_egress.sinks.http.sink import (
    HttpSink,
    Rejected,
    Row,
    chunks,
    match_field_problems,
    rejected,
    run_all,
    send_splitting,
)
from floe_egress.sinks.http.urls import (
    HttpSinkConfig,
    SinkUrl,
    UrlSetting,
    address_policy,
    plain_http_problems,
    plain_http_warnings,
)
from floe_egress.sinks.http.wire import retry_after
from floe_egress.sinks.registry import BuildRequest, SinkType, register

Action = Literal["upsert", "update", "create", "archive"]
MAX_INPUTS = 100
DEFAULT_RATE = RateLimit(requests_per_second=9, burst=10)
"""Under the private-app limit of 100 requests per 10 s (Free/Starter portals)."""
_SKIP: dict[Action, tuple[str, int]] = {  # (category, status) that mean "nothing to do"
    "create": ("CONFLICT", 409),
    "update": ("OBJECT_NOT_FOUND", 404),
}


class HubSpotOAuth(BaseModel):
    """A public app's refresh token: the sink gets access tokens (30 minutes) itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    client_id: Annotated[str, Field(min_length=1)]
    client_secret: Annotated[str, Field(min_length=1)]
    refresh_token: Annotated[str, Field(min_length=1)]
    token_url: SinkUrl | None = None
    """Default: {base_url}/oauth/v1/token."""


class HubSpotConfig(HttpSinkConfig):
    object_type: Annotated[Text, Field(min_length=1)]
    """contacts, companies, deals, tickets, ... or a custom objectTypeId (2-1234567)."""
    access_token: Annotated[HeaderValue, Field(min_length=1)] | None = None
    """A private app token with the object's read and write scopes. Or `oauth`."""
    oauth: HubSpotOAuth | None = None
    id_property: Annotated[Text, Field(min_length=1)] | None = None
    """The unique property records are matched on (default: the mapped key field)."""
    base_url: SinkUrl = "https://api.hubapi.com"
    timeout_seconds: TimeoutSeconds | None = None
    verify_tls: bool = True
    max_records_per_request: Annotated[int, Field(ge=1, le=MAX_INPUTS)] = MAX_INPUTS

    @model_validator(mode="after")
    def _one_credential(self) -> HubSpotConfig:
        if (self.access_token is None) == (self.oauth is None):
            raise ValueError("give either access_token (a private app) or oauth (a public app)")
        return self

    def url_settings(self) -> list[UrlSetting]:
        found = [UrlSetting(("base_url",), self.base_url, credentials=True)]
        if self.oauth is not None and self.oauth.token_url is not None:
            found.append(UrlSetting(("oauth", "token_url"), self.oauth.token_url, credentials=True))
        return found


class HubSpotSink(HttpSink):
    sink_type_name = "hubspot"

    def __init__(self, request: BuildRequest, config: HubSpotConfig, client: HttpClient) -> None:
        super().__init__(request, client)
        self.config = config
        self.id_property = self.matching_field(
            "id_property", config.id_property, "HubSpot", "matches records on"
        )
        self.objects = f"{config.base_url.rstrip('/')}/crm/v3/objects/{config.object_type}"

    async def check(self) -> None:
        request = Request("GET", self.objects, params=(("limit", "1"),))
        response = await self.client.probe(request)
        if response.status in (401, 403):
            raise self.refused("the token check", response)
        if response.status == 404:
            raise self.refused(f"object type {self.config.object_type!r}", response)

    def _id(self, row: Row) -> str:
        return as_text(row.record.get(self.id_property))

    def _action(self, row: Row) -> Action:
        if row.op == "delete":
            return "archive"
        if self.mode == "update":
            return "update"
        if self.mode == "insert":
            return "create"
        return "upsert"

    async def deliver(self, rows: list[Row], receipts: Receipts) -> None:
        groups: dict[Action, list[Row]] = {}
        for row in rows:
            if row.record.get(self.id_property) is None:
                reason = f"no value for the id property {self.id_property!r}"
                receipts.failed(FailedRow(row.key, row.op, reason))
                continue
            groups.setdefault(self._action(row), []).append(row)
        size = self.config.max_records_per_request
        sends = []
        for action, members in groups.items():
            for part in chunks(members, size):
                if action == "archive":
                    orders = (receipts.next_order(), receipts.next_order())
                    sends.append(self._archive(part, receipts, orders))
                else:
                    attempt = self._writer(action, receipts)
                    sends.append(send_splitting(part, receipts.next_order(), attempt, receipts))
        await run_all(sends)

    def _input(self, action: Action, index: int, row: Row) -> dict[str, Any]:
        props = {k: as_text(v) for k, v in row.record.items()}
        trace = str(index)
        if action == "create":
            return {"properties": props, "objectWriteTraceId": trace}
        props.pop(self.id_property, None)
        return {
            "idProperty": self.id_property,
            "id": self._id(row),
            "properties": props,
            "objectWriteTraceId": trace,
        }

    def _writer(self, action: Action, receipts: Receipts) -> Any:
        url = f"{self.objects}/batch/{action}"

        async def attempt(rows: Sequence[Row], order: OrderKey) -> Rejected | None:
            body = dumps({"inputs": [self._input(action, i, r) for i, r in enumerate(rows)]})
            key = receipts.register(order, body)
            request = Request("POST", url, body, headers={"Idempotency-Key": key})
            response = await self.client.send(request, receipts)
            if response.ok:
                self._account(action, rows, order, response, receipts)
                return None
            if len(rows) == 1 and _nothing_to_do(action, response):
                receipts.skip(rows[0].op)
                return None
            if response.status == 404 and action != "update":
                raise self.refused(f"batch/{action} on {self.config.object_type!r}", response)
            return rejected(response)

        return attempt

    def _account(
        self, action: Action, rows: Sequence[Row], order: OrderKey, r: Response, receipts: Receipts
    ) -> None:
        data = _body(r)
        ids: dict[str, str] = {}
        for result in data.get("results") or []:
            hubspot_id = str(result.get("id"))
            trace = result.get("objectWriteTraceId")
            if trace is not None:
                ids[f"t:{trace}"] = hubspot_id
            value = (result.get("properties") or {}).get(self.id_property)
            if value is not None:
                ids[f"v:{as_text(value)}"] = hubspot_id
        errors, loose = _errors_by_ref(data.get("errors") or [])
        skip_category = _SKIP[action][0] if action in _SKIP else None
        found: list[str] = []
        for index, row in enumerate(rows):
            refs = (f"t:{index}", f"v:{self._id(row)}")
            error = next((errors[ref] for ref in refs if ref in errors), None)
            if error is None and loose and not any(ref in ids for ref in refs):
                error = loose[0]
            if error is None:
                receipts.delivered(row.op)
                hit = next((ids[ref] for ref in refs if ref in ids), None)
                if hit is not None:
                    found.append(hit)
            elif error[0] == skip_category:
                receipts.skip(row.op)
            else:
                receipts.failed(FailedRow(row.key, row.op, error[1], r.status))
        receipts.record_ids(order, found)

    async def _archive(
        self, rows: Sequence[Row], receipts: Receipts, orders: tuple[OrderKey, OrderKey]
    ) -> None:
        """Look up HubSpot's internal ids by id property, then archive those found."""
        body = dumps(
            {
                "idProperty": self.id_property,
                "inputs": [{"id": self._id(r)} for r in rows],
                "properties": [self.id_property],
            }
        )
        read_order, archive_order = orders
        key = receipts.register(read_order, body)
        request = Request(
            "POST", f"{self.objects}/batch/read", body, headers={"Idempotency-Key": key}
        )
        response = await self.client.send(request, receipts)
        if not response.ok:
            raise self.refused(f"batch/read on {self.config.object_type!r}", response)
        data = _body(response)
        internal = {
            as_text((res.get("properties") or {}).get(self.id_property)): str(res.get("id"))
            for res in data.get("results") or []
        }
        present = [r for r in rows if self._id(r) in internal]
        receipts.delivered("delete", len(rows) - len(present))

        async def attempt(part: Sequence[Row], order: OrderKey) -> Rejected | None:
            inputs = [{"id": internal[self._id(r)]} for r in part]
            body = dumps({"inputs": inputs})
            key = receipts.register(order, body)
            url = f"{self.objects}/batch/archive"
            response = await self.client.send(
                Request("POST", url, body, headers={"Idempotency-Key": key}), receipts
            )
            if response.ok:
                receipts.delivered("delete", len(part))
                return None
            return rejected(response)

        if present:
            await send_splitting(present, archive_order, attempt, receipts)


def _nothing_to_do(action: Action, response: Response) -> bool:
    """A create of an existing record or an update of a missing one: skipped, not failed."""
    skip = _SKIP.get(action)
    return skip is not None and (_category(response) == skip[0] or response.status == skip[1])


def _body(response: Response) -> dict[str, Any]:
    data = response.json()
    return data if isinstance(data, dict) else {}


def _category(response: Response) -> str:
    return str(_body(response).get("category", ""))


def _errors_by_ref(
    errors: list[Any],
) -> tuple[dict[str, tuple[str, str]], list[tuple[str, str]]]:
    """Errors keyed by `t:<objectWriteTraceId>` / `v:<id value>`; the unattributed rest."""
    keyed: dict[str, tuple[str, str]] = {}
    loose: list[tuple[str, str]] = []
    for error in errors:
        if not isinstance(error, dict):
            continue
        entry = (str(error.get("category", "")), str(error.get("message") or "rejected"))
        context = error.get("context") or {}
        refs = [f"t:{t}" for t in context.get("objectWriteTraceId") or []]
        refs += [f"v:{v}" for v in (context.get("ids") or context.get("id") or [])]
        for ref in refs:
            keyed[ref] = entry
        if not refs:
            loose.append(entry)
    return keyed, loose


def _classifier(destination: str) -> Any:
    base = default_classifier(destination)

    def classify(request: Request, response: Response) -> Retry | SinkError | None:
        if response.status != 429:
            return base(request, response)
        data = _body(response)
        policy = str(data.get("policyName", ""))
        message = error_message(response, 200)
        if policy == "DAILY":
            return TransientSinkError(
                f"destination {destination!r}: HubSpot's daily API limit is used up "
                f"({message}); the batch is left for a later run"
            )
        after = retry_after(response.headers)
        if after is None and policy in ("SECONDLY", "TEN_SECONDLY_ROLLING"):
            after = 1.0
        return Retry(f"HTTP 429 {policy or 'rate limit'}: {message}", after, rate_limited=True)

    return classify


def build(request: BuildRequest) -> HubSpotSink:
    config = request.sink_config
    if not isinstance(config, HubSpotConfig):
        config = HubSpotConfig.model_validate(config.model_dump())
    policy = address_policy(request.destination, request.allow_private_network, config)
    tokens = None
    if config.oauth is not None:
        tokens = OAuthTokens(
            destination=request.destination,
            vendor="HubSpot",
            token_url=config.oauth.token_url or f"{config.base_url.rstrip('/')}/oauth/v1/token",
            grant_type="refresh_token",
            client_id=config.oauth.client_id,
            client_secret=config.oauth.client_secret,
            refresh_token=config.oauth.refresh_token,
        )
    client = bearer_client(
        request.destination,
        policy,
        request.retry,
        base_url=config.base_url,
        token=config.access_token,
        account=config.oauth.refresh_token if config.oauth is not None else None,
        rate_limit=request.rate_limit or DEFAULT_RATE,
        timeout_seconds=config.timeout_seconds,
        verify_tls=config.verify_tls,
        classifier=_classifier(request.destination),
        tokens=tokens,
    )
    return HubSpotSink(request, config, client)


SINK_TYPE = register(
    SinkType(
        name="hubspot",
        config_model=HubSpotConfig,
        modes=frozenset({"upsert", "update", "insert", "mirror"}),
        build=build,
        description="HubSpot CRM v3 objects: batch upsert/update/create, archive by id property",
        check_item=lambda item: [
            *match_field_problems(item, "id_property", "HubSpot", "matches records on"),
            *plain_http_problems(item, HubSpotConfig),
        ],
        warn_item=lambda item: plain_http_warnings(item, HubSpotConfig),
        default_batch_size=1000,
    )
)
