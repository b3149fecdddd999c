"""One HTTP session per destination, with the account budget, retries and backoff.

Retry policy (per request):
- 429 and 503 wait out `Retry-After` (delta-seconds or an HTTP-date); a 429 also holds
  the whole account budget for that long, since every other request would be refused
  too: a request looks at the hold right before it is sent (after its slot, its OAuth
  token and the rate limit), so none reaches the account inside the window. Without
  the header they back off like the rest.
- 408, other 5xx, connection errors and timeouts back off exponentially with full
  jitter: uniform(0, min(max_backoff, initial * 2**(attempt-1))).
- A `Retry-After` beyond `max_backoff_seconds`, or `max_attempts` used up, raises
  TransientSinkError for the whole batch: the cycle retries it on a later run.
- 401 and 403 raise PermanentSinkError naming the destination; with OAuth tokens
  (oauth.py) a 401 first renews the token once and repeats the request.
- Redirects are not followed: a 3xx raises PermanentSinkError (wire.py), and so does a
  2xx body too large to read whole.
Everything else (2xx, other 4xx) goes back to the sink, which decides per record.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog
from yarl import URL

from floe_egress.config.models import RateLimit, RetryConfig
from floe_egress.config.secrets import redact
from floe_egress.errors import PermanentSinkError, SinkError, TransientSinkError
from floe_egress.sinks.http.addresses import AddressPolicy, PolicyResolver, redirect_guard
from floe_egress.sinks.http.limits import Budget, BudgetSpec, account_key, budget_for
from floe_egress.sinks.http.oauth import OAuthTokens
from floe_egress.sinks.http.receipts import Receipts
from floe_egress.sinks.http.wire import (
    Body,
    cut_note,
    read_body,
    redirect_error,
    retry_after,
    too_large_error,
    without_query,
)

USER_AGENT = "floe-egress/0.1"
log = structlog.get_logger(__name__)
_RETRY_STATUSES = frozenset({408, 500, 502, 504})


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    url: str
    body: bytes | None = None
    params: Sequence[tuple[str, str]] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    encoded: bool = False
    """`url` is already percent-encoded exactly as it must go out: sent as is, never
    requoted or normalised (a key `..` in a path stays `%2E%2E`, not a step up)."""

    @property
    def label(self) -> str:
        """`METHOD url` without the query string, which may carry an API key."""
        return f"{self.method} {without_query(self.url)}"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes
    sent_authorization: str | None = field(default=None, repr=False)
    """The Authorization header the request went with (to tell a stale token)."""
    cut_at: int | None = None
    """The cap an error body went over: `body` is only its beginning (wire.py)."""

    def json(self) -> Any:
        """The decoded JSON body, or None when the body is empty or not JSON."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class Retry:
    """Try the request again after `after` seconds (None: exponential backoff)."""

    reason: str
    after: float | None = None
    rate_limited: bool = False


Classifier = Callable[[Request, Response], "Retry | SinkError | None"]
Jitter = Callable[[float], float]
"""Picks the wait before a retry (seconds) from the backoff cap, between 0 and the cap."""


def full_jitter(cap: float) -> float:
    """Any wait up to `cap`, uniformly: clients that failed together retry apart."""
    return random.uniform(0, cap)


def error_message(response: Response, limit: int = 500) -> str:
    """The server's own words from an error body (JSON `message`-like fields, else text),
    with every credential the product sends masked before it is shortened (an API may
    echo them, and half a secret cut at `limit` would no longer be recognised)."""
    if response.cut_at is not None:
        text = redact(response.body.decode("utf-8", errors="replace").strip())
        return f"HTTP {response.status}{cut_note(response.cut_at)}: {text[:limit]}"
    found = _find_message(response.json())
    if found:
        return redact(found)[:limit]
    text = redact(response.body.decode("utf-8", errors="replace").strip())
    return text[:limit] if text else f"HTTP {response.status}"


def _find_message(data: Any) -> str | None:
    if isinstance(data, list) and data:
        return _find_message(data[0])
    if not isinstance(data, dict):
        return None
    for key in ("message", "error_description", "detail", "error", "title"):
        value = data.get(key)
        if isinstance(value, str) and value:
            code = data.get("errorCode") or data.get("category")
            return f"{code}: {value}" if isinstance(code, str) and code else value
        if isinstance(value, dict | list):
            nested = _find_message(value)
            if nested:
                return nested
    errors = data.get("errors")
    return _find_message(errors) if isinstance(errors, list) else None


def default_classifier(destination: str) -> Classifier:
    def classify(request: Request, response: Response) -> Retry | SinkError | None:
        status = response.status
        if status in (429, 503):
            return Retry(
                f"HTTP {status}: {error_message(response, 200)}",
                after=retry_after(response.headers),
                rate_limited=status == 429,
            )
        if status in _RETRY_STATUSES or status >= 500:
            return Retry(f"HTTP {status}: {error_message(response, 200)}")
        if status in (401, 403):
            return PermanentSinkError(
                f"destination {destination!r}: {request.label} was refused with HTTP "
                f"{status} ({error_message(response, 300)}); check the credentials and "
                "their permissions in sink_config"
            )
        return None

    return classify


class HttpClient:
    """Sends requests for one destination; every attempt draws on the account budget."""

    def __init__(
        self,
        *,
        destination: str,
        policy: AddressPolicy,
        retry: RetryConfig,
        budget: BudgetSpec,
        timeout_seconds: float | None = None,
        verify_tls: bool = True,
        headers: Mapping[str, str] | None = None,
        params: Sequence[tuple[str, str]] = (),
        classifier: Classifier | None = None,
        tokens: OAuthTokens | None = None,
        jitter: Jitter = full_jitter,
    ) -> None:
        self.destination = destination
        self.policy = policy
        self.tokens = tokens
        self.jitter = jitter
        self.retry = retry
        self.budget_spec = budget
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds or retry.timeout_seconds)
        self._verify_tls = verify_tls
        self._headers = {"User-Agent": USER_AGENT, **(headers or {})}
        self._params = list(params)
        self.classify = classifier or default_classifier(destination)
        """Decides what a response means: go on (None), retry, or fail."""
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            # The address policy (addresses.py) holds for OAuth token requests too.
            resolver = PolicyResolver(self.policy)
            connector = aiohttp.TCPConnector(ssl=self._verify_tls, resolver=resolver)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                headers=self._headers,
                middlewares=(self.policy.check_request,),
                trace_configs=[redirect_guard(self.policy)],
            )
            self._session_loop = loop
        return self._session

    async def _request_headers(self, request: Request) -> dict[str, str]:
        headers = dict(request.headers)
        if request.body is not None:
            headers.setdefault("Content-Type", "application/json")
        if self.tokens is not None:
            token = await self.tokens.current(self._get_session())
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def _once(self, request: Request, headers: Mapping[str, str]) -> Response:
        session = self._get_session()
        url = URL(request.url, encoded=True) if request.encoded else request.url
        async with session.request(
            request.method,
            url,
            data=request.body,
            params=[*self._params, *request.params] or None,
            headers=headers,
            allow_redirects=False,
        ) as resp:
            body = Body(b"") if 300 <= resp.status < 400 else await read_body(resp)
            sent = headers.get("Authorization")
            return Response(resp.status, resp.headers, body.data, sent, body.cut_at)

    def _refuse(self, request: Request, response: Response) -> None:
        """Raise for what is never handed on: a redirect, a 2xx too large to read whole."""
        where = f"destination {self.destination!r}"
        if 300 <= response.status < 400:
            location = response.headers.get("Location")
            raise redirect_error(where, request.method, request.url, response.status, location)
        if response.ok and response.cut_at is not None:
            raise too_large_error(where, request.label, response.status)

    async def _renewed(self, response: Response, renewed: set[str]) -> bool:
        """On a 401 with OAuth tokens: renew the token the request went with (once per
        token, so a refused fresh token is an error, not a loop); True to repeat it."""
        if response.status != 401 or self.tokens is None:
            return False
        stale = (response.sent_authorization or "").removeprefix("Bearer ")
        if stale in renewed:
            return False
        renewed.add(stale)
        await self.tokens.renew(stale, self._get_session())
        return True

    def _backoff(self, attempt: int) -> float:
        cap = min(
            self.retry.max_backoff_seconds,
            self.retry.initial_backoff_seconds * 2 ** (attempt - 1),
        )
        return self.jitter(cap)

    async def send(self, request: Request, receipts: Receipts) -> Response:
        """Send with retries; returns 2xx and per-record 4xx responses, raises the rest."""
        budget = budget_for(self.budget_spec)
        sent = len(request.body or b"")
        attempt = 0
        renewed: set[str] = set()
        while True:
            attempt += 1
            outcome: Retry | SinkError | None
            async with budget.slot():
                headers = await self._request_headers(request)
                # Last look at the account's hold: a 429 may have paused it while this
                # request waited for its slot, its token or the rate limit.
                waited = await budget.take()
                try:
                    response = await self._once(request, headers)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    receipts.http(None, sent, waited)
                    outcome = Retry(f"{type(exc).__name__}: {exc}".rstrip(": "))
                else:
                    receipts.http(response.status, sent, waited)
                    self._refuse(request, response)
                    if await self._renewed(response, renewed):
                        attempt -= 1
                        continue
                    outcome = self.classify(request, response)
                    if outcome is None:
                        return response
            if isinstance(outcome, SinkError):
                raise outcome
            await self._wait(outcome, attempt, request, budget, receipts)

    async def _wait(
        self, outcome: Retry, attempt: int, request: Request, budget: Budget, receipts: Receipts
    ) -> None:
        if attempt >= self.retry.max_attempts:
            raise TransientSinkError(
                f"destination {self.destination!r}: {request.label} still failing after "
                f"{attempt} attempts ({outcome.reason})",
                retry_after=outcome.after,
            )
        if outcome.after is not None and outcome.after > self.retry.max_backoff_seconds:
            raise TransientSinkError(
                f"destination {self.destination!r}: {request.label} asked to retry after "
                f"{outcome.after:.0f} s, more than max_backoff_seconds "
                f"({self.retry.max_backoff_seconds:g}); leaving the batch for a later run "
                f"({outcome.reason})",
                retry_after=outcome.after,
            )
        delay = outcome.after if outcome.after is not None else self._backoff(attempt)
        log.info(
            "http_retry",
            destination=self.destination,
            request=request.label,
            attempt=attempt,
            delay_seconds=round(delay, 3),
            reason=outcome.reason,
        )
        if outcome.rate_limited:
            budget.hold(delay)
            receipts.waited(delay)
        await asyncio.sleep(delay)

    async def probe(self, request: Request) -> Response:
        """One attempt, for `check()`: an unreachable API is a TransientSinkError (it may
        answer on the next try); the sink's check judges the response."""
        budget = budget_for(self.budget_spec)
        renewed: set[str] = set()
        while True:
            async with budget.slot():
                headers = await self._request_headers(request)
                await budget.take()
                try:
                    response = await self._once(request, headers)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    raise TransientSinkError(
                        f"destination {self.destination!r}: {request.label} is unreachable "
                        f"({type(exc).__name__}: {exc})"
                    ) from exc
            self._refuse(request, response)
            if not await self._renewed(response, renewed):
                return response

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is None or session.closed:
            return
        try:
            same_loop = asyncio.get_running_loop() is self._session_loop
        except RuntimeError:
            same_loop = False
        if same_loop:
            await session.close()


def bearer_client(
    destination: str,
    policy: AddressPolicy,
    retry: RetryConfig,
    *,
    base_url: str,
    token: str | None,
    rate_limit: RateLimit | None,
    timeout_seconds: float | None,
    verify_tls: bool,
    classifier: Classifier,
    tokens: OAuthTokens | None = None,
    account: str | None = None,
) -> HttpClient:
    """A client for a SaaS API with a bearer token (fixed, or renewed by `tokens`); its
    budget is the account of the token (or of `account`, an OAuth app's client id)."""
    spec = BudgetSpec.from_rate_limit(
        account_key(rate_limit, base_url, account or token), rate_limit
    )
    return HttpClient(
        destination=destination,
        policy=policy,
        retry=retry,
        budget=spec,
        timeout_seconds=timeout_seconds,
        verify_tls=verify_tls,
        headers={"Authorization": f"Bearer {token}"} if token is not None else None,
        classifier=classifier,
        tokens=tokens,
    )
