"""`salesforce`: sObject Collections of the REST API (up to 200 records a request).

Modes and requests (under {instance_url}/services/data/{api_version}):
- upsert (and mirror's inserts/updates): `PATCH composite/sobjects/{sObject}/{extId}`
  with `{"allOrNone": false, "records": [{"attributes": {"type": ...}, extId: ..., ...}]}`
- insert: `POST composite/sobjects`; DUPLICATE_VALUE results are skipped (the record
  exists), provided the external id field is marked unique
- update: Salesforce ids are looked up by external id with SOQL, then
  `PATCH composite/sobjects` by id; keys Salesforce does not have are skipped
- mirror's deletes: the same SOQL lookup, then
  `DELETE composite/sobjects?ids=...&allOrNone=false`; keys not found (or
  ENTITY_IS_DELETED) count as deleted. Looking ids up at delete time, rather than
  remembering the ids of earlier upserts, keeps no state and finds records created by
  anyone.
- append: not offered.

Results are per record, in request order; a failed record becomes a FailedRow with
`STATUS_CODE: message (fields: ...)`. A whole-request 400 is split in halves. 401
INVALID_SESSION_ID fails fast with a fixed `access_token`; with `oauth` (a connected app's
refresh-token or client-credentials grant) the sink gets its own token and renews it on
the first 401, then repeats the request. 403 REQUEST_LIMIT_EXCEEDED for the org's rolling 24-hour
allocation (TotalRequests) fails the batch at once as transient (nothing can succeed
until the window frees up); the concurrent-request variant and 503 are retried.
Nested values are sent as JSON strings (sObject fields are scalars).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from floe_egress.config.fields import HeaderValue, TimeoutSeconds
from floe_egress.errors import PermanentSinkError, SinkError, TransientSinkError
from floe_egress.sinks.base import FailedRow
from floe_egress.sinks.http.client import (
    HttpClient,
    Request,
    Response,
    Retry,
    bearer_client,
    default_classifier,
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
from floe_egress.sinks.registry import BuildRequest, SinkType, register

Action = Literal["upsert", "create", "update", "delete"]
MAX_RECORDS = 200
_NAME = r"^[A-Za-z][A-Za-z0-9_]*$"
_SKIP = {"create": {"DUPLICATE_VALUE", "DUPLICATE_EXTERNAL_ID"}}
_GONE = {"ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY"}


class SalesforceOAuth(BaseModel):
    """A connected app's OAuth grant, for sessions that renew themselves."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    grant_type: Literal["refresh_token", "client_credentials"] = "refresh_token"
    client_id: Annotated[str, Field(min_length=1)]
    """The connected app's consumer key."""
    client_secret: Annotated[str, Field(min_length=1)] | None = None
    """The consumer secret (required for client_credentials)."""
    refresh_token: Annotated[str, Field(min_length=1)] | None = None
    """Required for grant_type refresh_token."""
    token_url: SinkUrl | None = None
    """Default: {instance_url}/services/oauth2/token (My Domain)."""

    @model_validator(mode="after")
    def _grant_has_what_it_needs(self) -> SalesforceOAuth:
        if self.grant_type == "refresh_token" and self.refresh_token is None:
            raise ValueError("grant_type refresh_token needs refresh_token")
        if self.grant_type == "client_credentials" and self.client_secret is None:
            raise ValueError("grant_type client_credentials needs client_secret")
        return self


class SalesforceConfig(HttpSinkConfig):
    instance_url: SinkUrl
    """https://MyDomainName.my.salesforce.com"""
    access_token: Annotated[HeaderValue, Field(min_length=1)] | None = None
    """A session token as is; it fails once it expires. Or `oauth`."""
    oauth: SalesforceOAuth | None = None
    """A connected app grant: the sink gets a token and renews it when it expires."""
    sobject: Annotated[str, Field(pattern=_NAME)]
    """Account, Contact, Customer__c, ..."""
    external_id_field: Annotated[str, Field(pattern=_NAME)] | None = None
    """An External ID field of the sObject (default: the mapped key field)."""
    api_version: Annotated[str, Field(pattern=r"^v\d+\.\d$")] = "v60.0"
    timeout_seconds: TimeoutSeconds | None = None
    verify_tls: bool = True
    max_records_per_request: Annotated[int, Field(ge=1, le=MAX_RECORDS)] = MAX_RECORDS
    decimals: Literal["string", "number"] = "number"
    """Number, Currency and Percent fields take JSON numbers (float64: ~15 digits)."""

    @model_validator(mode="after")
    def _one_credential(self) -> SalesforceConfig:
        if (self.access_token is None) == (self.oauth is None):
            raise ValueError("give either access_token or oauth (a connected app grant)")
        return self

    def url_settings(self) -> list[UrlSetting]:
        found = [UrlSetting(("instance_url",), self.instance_url, credentials=True)]
        if self.oauth is not None and self.oauth.token_url is not None:
            found.append(UrlSetting(("oauth", "token_url"), self.oauth.token_url, credentials=True))
        return found


class SalesforceSink(HttpSink):
    sink_type_name = "salesforce"

    def __init__(self, request: BuildRequest, config: SalesforceConfig, client: HttpClient) -> None:
        super().__init__(request, client)
        self.config = config
        self.decimals = config.decimals
        self.ext = self.matching_field(
            "external_id_field", config.external_id_field, "Salesforce", "upserts on"
        )
        self.base = f"{config.instance_url.rstrip('/')}/services/data/{config.api_version}"
        self.collection = f"{self.base}/composite/sobjects"

    async def check(self) -> None:
        url = f"{self.base}/sobjects/{self.config.sobject}/describe"
        response = await self.client.probe(Request("GET", url))
        limited = self.client.classify(Request("GET", url), response)
        if isinstance(limited, Retry):  # REQUEST_LIMIT_EXCEEDED, 5xx: try again later
            raise TransientSinkError(
                f"destination {self.name!r}: describe of {self.config.sobject!r} answered "
                f"{limited.reason}; trying again later"
            )
        if response.status in (401, 403, 404):
            raise self.refused(f"describe of {self.config.sobject!r}", response)
        data = response.json()
        fields = (
            {f.get("name"): f for f in data.get("fields", [])} if isinstance(data, dict) else {}
        )
        if fields and not fields.get(self.ext, {}).get("externalId", False):
            raise PermanentSinkError(
                f"destination {self.name!r}: {self.config.sobject}.{self.ext} is not an "
                "External ID field; set sink_config.external_id_field to one that is"
            )

    def _action(self, row: Row) -> Action:
        if row.op == "delete":
            return "delete"
        if self.mode == "insert":
            return "create"
        if self.mode == "update":
            return "update"
        return "upsert"

    async def deliver(self, rows: list[Row], receipts: Receipts) -> None:
        groups: dict[Action, list[Row]] = {}
        for row in rows:
            if row.record.get(self.ext) is None:
                reason = f"no value for the external id field {self.ext!r}"
                receipts.failed(FailedRow(row.key, row.op, reason))
                continue
            groups.setdefault(self._action(row), []).append(row)
        sends = []
        for action, members in groups.items():
            for part in chunks(members, self.config.max_records_per_request):
                order = receipts.next_order()
                if action in ("update", "delete"):
                    sends.append(self._by_id(action, part, order, receipts))
                else:
                    sends.append(
                        send_splitting(part, order, self._writer(action, receipts), receipts)
                    )
        await run_all(sends)

    def _record(self, row: Row, sf_id: str | None = None) -> dict[str, Any]:
        fields = {
            k: v if not isinstance(v, dict | list) else as_text(v) for k, v in row.record.items()
        }
        record: dict[str, Any] = {"attributes": {"type": self.config.sobject}}
        if sf_id is not None:
            record["id"] = sf_id
        record.update(fields)
        return record

    def _request(
        self,
        action: Action,
        rows: Sequence[Row],
        order: OrderKey,
        ids: dict[str, str],
        receipts: Receipts,
    ) -> Request:
        if action == "delete":
            id_list = ",".join(ids[self._id(r)] for r in rows)
            # No body: the ids in the query are what this request sends.
            key = receipts.register(order, f"DELETE {self.collection}?ids={id_list}".encode())
            params = (("ids", id_list), ("allOrNone", "false"))
            return Request(
                "DELETE", self.collection, params=params, headers={"Idempotency-Key": key}
            )
        records = [self._record(r, ids.get(self._id(r))) for r in rows]
        body = dumps({"allOrNone": False, "records": records})
        key = receipts.register(order, body)
        if action == "upsert":
            method, url = "PATCH", f"{self.collection}/{self.config.sobject}/{self.ext}"
        else:
            method, url = ("POST" if action == "create" else "PATCH"), self.collection
        return Request(method, url, body, headers={"Idempotency-Key": key})

    def _writer(self, action: Action, receipts: Receipts, ids: dict[str, str] | None = None) -> Any:
        async def attempt(rows: Sequence[Row], order: OrderKey) -> Rejected | None:
            request = self._request(action, rows, order, ids or {}, receipts)
            response = await self.client.send(request, receipts)
            if not response.ok:
                return rejected(response)
            self._account(action, rows, order, response, receipts)
            return None

        return attempt

    def _id(self, row: Row) -> str:
        return as_text(row.record.get(self.ext))

    def _account(
        self, action: Action, rows: Sequence[Row], order: OrderKey, r: Response, receipts: Receipts
    ) -> None:
        results = r.json()
        if not isinstance(results, list) or len(results) != len(rows):
            raise TransientSinkError(
                f"destination {self.name!r}: Salesforce answered {len(rows)} records with "
                f"{len(results) if isinstance(results, list) else 'no'} results"
            )
        ids: list[str] = []
        for row, result in zip(rows, results, strict=True):
            errors = result.get("errors") or []
            codes = {str(e.get("statusCode")) for e in errors}
            if result.get("success") or (action == "delete" and codes & _GONE):
                receipts.delivered(row.op)
                if result.get("id") and action != "delete":
                    ids.append(str(result["id"]))
            elif codes & _SKIP.get(action, set()):
                receipts.skip(row.op)
            else:
                receipts.failed(FailedRow(row.key, row.op, _describe(errors), r.status))
        receipts.record_ids(order, ids)

    async def _by_id(
        self, action: Action, rows: Sequence[Row], order: OrderKey, receipts: Receipts
    ) -> None:
        ids = await self._lookup(rows, receipts)
        present = [r for r in rows if self._id(r) in ids]
        if action == "delete":
            receipts.delivered("delete", len(rows) - len(present))
        else:
            for row in rows:
                if self._id(row) not in ids:
                    receipts.skip(row.op)
        if present:
            await send_splitting(present, order, self._writer(action, receipts, ids), receipts)

    async def _lookup(self, rows: Sequence[Row], receipts: Receipts) -> dict[str, str]:
        """External id value -> Salesforce id, by SOQL."""
        literals = ",".join(_soql_literal(r.record[self.ext]) for r in rows)
        soql = f"SELECT Id, {self.ext} FROM {self.config.sobject} WHERE {self.ext} IN ({literals})"
        found: dict[str, str] = {}
        request = Request("GET", f"{self.base}/query", params=(("q", soql),))
        while True:
            response = await self.client.send(request, receipts)
            if not response.ok:
                raise self.refused(f"the id lookup on {self.config.sobject!r}", response)
            data = response.json() or {}
            for record in data.get("records", []):
                found[as_text(record.get(self.ext))] = str(record["Id"])
            next_url = data.get("nextRecordsUrl")
            if data.get("done", True) or not next_url:
                return found
            request = Request("GET", f"{self.config.instance_url.rstrip('/')}{next_url}")


def _describe(errors: list[Any]) -> str:
    parts = []
    for error in errors:
        text = f"{error.get('statusCode', 'ERROR')}: {error.get('message', '')}"
        if error.get("fields"):
            text += f" (fields: {', '.join(map(str, error['fields']))})"
        parts.append(text)
    return "; ".join(parts) or "rejected by Salesforce"


def _soql_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return str(value)
    text = as_text(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def _classifier(destination: str) -> Any:
    base = default_classifier(destination)

    def classify(request: Request, response: Response) -> Retry | SinkError | None:
        data = response.json()
        first = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
        code, message = str(first.get("errorCode", "")), str(first.get("message", ""))
        if response.status == 403 and code == "REQUEST_LIMIT_EXCEEDED":
            if "TotalRequests" in message:
                return TransientSinkError(
                    f"destination {destination!r}: the Salesforce org has used up its 24-hour "
                    f"API request allocation ({code}: {message}); the batch is left for a "
                    "later run"
                )
            return Retry(f"HTTP 403 {code}: {message}")
        if response.status == 401:
            return PermanentSinkError(
                f"destination {destination!r}: Salesforce refused the access token "
                f"({code or 'HTTP 401'}: {message}); renew sink_config.access_token, or "
                "configure sink_config.oauth so that the sink renews it"
            )
        return base(request, response)

    return classify


def build(request: BuildRequest) -> SalesforceSink:
    config = request.sink_config
    if not isinstance(config, SalesforceConfig):
        config = SalesforceConfig.model_validate(config.model_dump())
    policy = address_policy(request.destination, request.allow_private_network, config)
    tokens = None
    if config.oauth is not None:
        oauth = config.oauth
        tokens = OAuthTokens(
            destination=request.destination,
            vendor="Salesforce",
            token_url=oauth.token_url or f"{config.instance_url.rstrip('/')}/services/oauth2/token",
            grant_type=oauth.grant_type,
            client_id=oauth.client_id,
            client_secret=oauth.client_secret,
            refresh_token=oauth.refresh_token,
        )
    client = bearer_client(
        request.destination,
        policy,
        request.retry,
        base_url=config.instance_url,
        token=config.access_token,
        account=config.oauth.client_id if config.oauth is not None else None,
        rate_limit=request.rate_limit,
        timeout_seconds=config.timeout_seconds,
        verify_tls=config.verify_tls,
        classifier=_classifier(request.destination),
        tokens=tokens,
    )
    return SalesforceSink(request, config, client)


SINK_TYPE = register(
    SinkType(
        name="salesforce",
        config_model=SalesforceConfig,
        modes=frozenset({"upsert", "update", "insert", "mirror"}),
        build=build,
        description="Salesforce sObject Collections: upsert by External ID, delete via SOQL ids",
        check_item=lambda item: [
            *match_field_problems(item, "external_id_field", "Salesforce", "upserts on"),
            *plain_http_problems(item, SalesforceConfig),
        ],
        warn_item=lambda item: plain_http_warnings(item, SalesforceConfig),
        default_batch_size=2000,
    )
)
