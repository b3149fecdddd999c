"""`rest_api`: any JSON-over-HTTP endpoint.

Responses:
- 2xx: every record delivered, except those listed in a per-record error body (with
  200 or 207): `{"errors": [{"index": <position in the request's records>,
  "message": "...", "status": <optional int>}]}`. Ids come from `record_ids_path`.
- 404/410 to a delete: already gone, delivered.
- Other 4xx: the request is split in halves until the refused records stand alone;
  each becomes a FailedRow with the server's message. 401/403 fail the whole batch as
  bad credentials; 405/406/411/414/415 (and 404 to a batch) mean the endpoint does not
  take this request at all and fail the whole batch too.
- 429/503/5xx/timeouts: retried by the client (see client.py).

The envelope's op says what the mode means: "upsert" and "delete" in upsert and mirror
modes, "insert" in insert mode and "update" in update mode (so the API can refuse to
overwrite, or to create), each sent to its route when one is configured, else to `url`.

A `{field}` placeholder is filled with the value as one path segment (`path_segment`:
`.`, `/`, `?`, `#` and `%` percent-encoded too) and the URL goes out as built, never
normalised; a row whose value is empty or null is a FailedRow, not sent to the URL
without that segment.

In append mode every change is an event: rows of all ops go through the upsert route,
the envelope's op is "append" and each record is `{"op", "snapshot_id", "record"}`.

`record_template` and `body_template` (top level or per route) replace those shapes
(shaping.py): records are rendered before they are batched, so a record that fails to
render is a failed row alone; a body is rendered per request and sent as rendered.
`rejected_values` names lists in a 2xx answer that refuse records by a field's value.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from yarl import URL

from floe_egress.errors import PermanentSinkError
from floe_egress.sinks.base import FailedRow
from floe_egress.sinks.http.client import HttpClient, Request, Response
from floe_egress.sinks.http.convert import JsonRecord, dumps
from floe_egress.sinks.http.limits import BudgetSpec, account_key
from floe_egress.sinks.http.receipts import OrderKey, Receipts
from floe_egress.sinks.http.rest_config import (
    PLACEHOLDER,
    RestApiConfig,
    Route,
    RouteName,
    auth_parts,
    template_reference_problems,
)
from floe_egress.sinks.http.shaping import (
    Shape,
    body_failures,
    extract_ids,
    render_body,
    shape_rows,
    shaped_record,
    shapes,
    value_rejections,
)
from floe_egress.sinks.http.sink import (
    HttpSink,
    Rejected,
    Row,
    chunks,
    rejected,
    run_all,
    send_splitting,
)
from floe_egress.sinks.http.templates import Compiled, TemplateError
from floe_egress.sinks.http.urls import (
    address_policy,
    plain_http_problems,
    plain_http_warnings,
)
from floe_egress.sinks.http.wire import without_query
from floe_egress.sinks.registry import BuildRequest, SinkType, register

_SHAPE_STATUSES = frozenset({405, 406, 411, 414, 415})
_MARK = "zzfloeegressplaceholder"
_MARKED = re.compile(rf"{_MARK}(\d+){_MARK}")


class RestApiSink(HttpSink):
    sink_type_name = "rest_api"

    def __init__(self, request: BuildRequest, config: RestApiConfig, client: HttpClient) -> None:
        super().__init__(request, client)
        self.config = config
        self.decimals = config.decimals
        self.batch_size = config.max_records_per_request or request.batch_size or 100
        self.shapes: dict[RouteName, Shape] = shapes(config)

    async def check(self) -> None:
        request = Request(self.config.check_method, self.config.probe_url())
        response = await self.client.probe(request)
        if response.status in (401, 403):
            raise self.refused(f"the credential check ({request.label})", response)

    def _route_name(self, row: Row) -> RouteName:
        return route_name(self.mode, self.config, row.op)

    async def deliver(self, rows: list[Row], receipts: Receipts) -> None:
        groups: dict[RouteName, list[Row]] = {}
        for row in rows:
            name = self._route_name(row)
            if self.config.single and (problem := self._unfillable(name, row)) is not None:
                receipts.failed(FailedRow(row.key, row.op, problem))
                continue
            groups.setdefault(name, []).append(row)
        snapshot = receipts.context.to_snapshot
        for name, members in groups.items():
            if (template := self.shapes[name].record) is not None:
                record_of = functools.partial(self._record, name)
                # Rendering is CPU work (up to its budget per record): off the event loop.
                shaped, failed = await asyncio.to_thread(
                    shape_rows, self.name, template, members, record_of, self._op, snapshot
                )
                groups[name] = shaped
                for refused in failed:
                    receipts.failed(refused)
        sends = []
        for name, members in groups.items():
            size = 1 if self.config.single else self.batch_size
            for part in chunks(members, size):
                attempt = self._attempt(name, receipts)
                sends.append(send_splitting(part, receipts.next_order(), attempt, receipts))
        await run_all(sends)

    def _attempt(self, name: RouteName, receipts: Receipts) -> Any:
        route = self.config.route(name)

        async def attempt(rows: Sequence[Row], order: OrderKey) -> Rejected | None:
            try:
                body = await self._body(name, route, rows, receipts)
            except TemplateError as exc:
                for failed in body_failures(self.name, rows, exc):
                    receipts.failed(failed)
                return None
            request = self._request(name, route, rows, order, receipts, body)
            response = await self.client.send(request, receipts)
            return self._account(name, rows, order, response, receipts)

        return attempt

    def _op(self, row: Row) -> str:
        return row.op

    def _record(self, name: RouteName, row: Row) -> JsonRecord:
        """What a record template sees as `record`: the key record for a delete."""
        return self.key_record(row) if name == "delete" and self.mode != "append" else row.record

    def _payload(self, name: RouteName, row: Row, snapshot: int | None) -> Any:
        if row.shaped is not None:
            return shaped_record(row)
        if self.mode == "append":
            return {"op": row.op, "snapshot_id": snapshot, "record": row.record}
        if name == "delete":
            return self.key_record(row)
        return row.record

    async def _body(
        self, name: RouteName, route: Route, rows: Sequence[Row], receipts: Receipts
    ) -> bytes | None:
        snapshot = receipts.context.to_snapshot
        op = "append" if self.mode == "append" else name
        body_template = self.shapes[name].body
        if self.config.single and route.method == "DELETE":
            return None
        if body_template is not None:
            # Rendering is CPU work (up to its budget): off the event loop, like records.
            return await asyncio.to_thread(
                self._render_body, name, body_template, rows, op, snapshot
            )
        if self.config.single:
            one = rows[0]
            return one.shaped.encode() if one.shaped else dumps(self._payload(name, one, snapshot))
        envelope = {
            "destination": receipts.context.destination,
            "snapshot_id": snapshot,
            "op": op,
            "records": [self._payload(name, r, snapshot) for r in rows],
        }
        return dumps(envelope)

    def _render_body(
        self,
        name: RouteName,
        template: Compiled,
        rows: Sequence[Row],
        op: str,
        snapshot: int | None,
    ) -> bytes:
        try:
            records = [self._payload(name, r, snapshot) for r in rows]
            return render_body(self.name, template, records, op, snapshot)
        except TemplateError:
            raise
        except Exception as exc:  # whatever went wrong, it fails this request's records only
            raise TemplateError(template.key, f"{type(exc).__name__}: {exc}") from None

    def _request(
        self,
        name: RouteName,
        route: Route,
        rows: Sequence[Row],
        order: OrderKey,
        receipts: Receipts,
        body: bytes | None,
    ) -> Request:
        url = route.url or self.config.url
        encoded = False
        if self.config.single:
            url = self._fill(url, rows[0])
            encoded = True
        key = receipts.register(order, body if body is not None else url.encode())
        headers = {"Idempotency-Key": key}
        return Request(route.method, url, body, headers=headers, encoded=encoded)

    def _value(self, field: str, row: Row) -> str:
        """The text a `{field}` placeholder stands for in `row` ("" for null)."""
        if field in row.record:
            found = row.record[field]
        elif field in row.key:
            found = row.record.get(self.key_fields[self.key.index(field)])
        else:
            raise PermanentSinkError(
                f"destination {self.name!r}: URL placeholder {{{field}}} names no "
                f"mapped field or key column (fields: {sorted(row.record)})"
            )
        return "" if found is None else str(found)

    def _unfillable(self, name: RouteName, row: Row) -> str | None:
        """Why `row` cannot be sent to its route's URL: a placeholder with no value
        would drop a path segment and address another resource (the collection)."""
        template = self.config.route(name).url or self.config.url
        for match in PLACEHOLDER.finditer(template):
            if not self._value(match.group(1), row):
                return (
                    f"URL placeholder {{{match.group(1)}}} is empty for this row, so "
                    f"{without_query(template)} would address another resource; the row "
                    "is not sent"
                )
        return None

    def _fill(self, template: str, row: Row) -> str:
        """`template` percent-encoded, each placeholder filled with one path segment."""
        values: list[str] = []

        def mark(match: re.Match[str]) -> str:
            values.append(path_segment(self._value(match.group(1), row)))
            return f"{_MARK}{len(values) - 1}{_MARK}"

        # yarl encodes the template's own text; the values are encoded here, whole.
        encoded = str(URL(PLACEHOLDER.sub(mark, template)))
        return _MARKED.sub(lambda m: values[int(m.group(1))], encoded)

    def _account(
        self,
        name: RouteName,
        rows: Sequence[Row],
        order: OrderKey,
        response: Response,
        receipts: Receipts,
    ) -> Rejected | None:
        status = response.status
        if response.ok:
            self._account_ok(rows, order, response, receipts)
            return None
        if name == "delete" and status in (404, 410):
            receipts.delivered("delete", len(rows))
            return None
        if status in _SHAPE_STATUSES or (status == 404 and not self.config.single):
            raise self.refused(f"{response.status} to {name} request", response)
        return rejected(response)

    def _account_ok(
        self, rows: Sequence[Row], order: OrderKey, response: Response, receipts: Receipts
    ) -> None:
        data = response.json()
        errors = per_record_errors(data, len(rows), response.status)
        for index, why in value_rejections(data, self.config.rejected_values, rows).items():
            errors.setdefault(index, (why, response.status))
        for index, row in enumerate(rows):
            if index in errors:
                message, status = errors[index]
                receipts.failed(FailedRow(row.key, row.op, message, status))
            else:
                receipts.delivered(row.op)
        if self.config.record_ids_path and data is not None:
            receipts.record_ids(order, extract_ids(data, self.config.record_ids_path))


def route_name(mode: str, config: RestApiConfig, op: str) -> RouteName:
    """The route a change of `op` takes in `mode`."""
    if mode == "append":
        return "upsert"
    if op == "delete":
        return "delete"
    if op == "insert" and ("insert" in config.routes or mode == "insert"):
        return "insert"
    if op == "update" and ("update" in config.routes or mode == "update"):
        return "update"
    return "upsert"


def path_segment(value: str) -> str:
    """`value` as one URL path segment that no server or client can read as anything
    else: every character but letters, digits, `-`, `_` and `~` percent-encoded, `.`
    included (`.` and `..` are steps in a path), `/`, `?`, `#` and `%` too."""
    return quote(value, safe="").replace(".", "%2E")


def per_record_errors(data: Any, count: int, status: int) -> dict[int, tuple[str, int]]:
    """`{"errors": [{"index": i, "message": m, "status": s?}]}` -> {i: (m, s)}; the
    message may be under `error` or `type` instead (Braze: `{"type": ..., "index": i}`)."""
    if not isinstance(data, dict) or not isinstance(data.get("errors"), list):
        return {}
    found: dict[int, tuple[str, int]] = {}
    for error in data["errors"]:
        if not isinstance(error, dict):
            continue
        index = error.get("index", 0 if count == 1 else None)
        if not isinstance(index, int) or not 0 <= index < count:
            continue
        said = error.get("message") or error.get("error") or error.get("type")
        message = said or "rejected by the destination"
        code = error.get("status")
        found[index] = (str(message), code if isinstance(code, int) else status)
    return found


def build(request: BuildRequest) -> RestApiSink:
    config = request.sink_config
    if not isinstance(config, RestApiConfig):
        config = RestApiConfig.model_validate(config.model_dump())
    policy = address_policy(request.destination, request.allow_private_network, config)
    headers, params, credential = auth_parts(config.auth)
    headers = {**config.headers, **headers}
    credential = credential or config.headers.get("Authorization")
    spec = BudgetSpec.from_rate_limit(
        account_key(request.rate_limit, config.url, credential), request.rate_limit
    )
    client = HttpClient(
        destination=request.destination,
        policy=policy,
        retry=request.retry,
        budget=spec,
        timeout_seconds=config.timeout_seconds,
        verify_tls=config.verify_tls,
        headers=headers,
        params=params,
    )
    return RestApiSink(request, config, client)


SINK_TYPE = register(
    SinkType(
        name="rest_api",
        config_model=RestApiConfig,
        modes=frozenset({"upsert", "update", "insert", "mirror", "append"}),
        build=build,
        description="Any JSON-over-HTTP API: batched envelopes or one request per record",
        default_batch_size=100,
        check_item=lambda item: [
            *plain_http_problems(item, RestApiConfig),
            *template_reference_problems(item),
        ],
        warn_item=lambda item: plain_http_warnings(item, RestApiConfig),
    )
)
