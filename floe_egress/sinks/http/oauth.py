"""OAuth 2.0 access tokens that renew themselves (RFC 6749 §6 refresh, §4.4 client
credentials), for SaaS sinks whose sessions expire.

The token endpoint takes a form-encoded POST (`grant_type`, `client_id`, `client_secret`,
`refresh_token`) and answers JSON with `access_token` (Salesforce adds `instance_url`,
`issued_at`, `signature`; an app with refresh-token rotation adds a new
`refresh_token`). A 400/401 answer (`{"error": "invalid_grant", "error_description":
...}`) means the grant itself is no longer good: a PermanentSinkError that says which
setting to renew. Network errors and 5xx are transient. Token requests go through the
destination's own session (`HttpClient`), so its address policy and its refusal of
redirects to another origin (addresses.py) hold for the client secret too.

One refresh at a time: requests that saw the same stale token wait for the refresh one
of them started and then use its token. Tokens are registered with the redaction
(`mask_values`), so they never reach a log line or an error.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

import aiohttp
import structlog

from floe_egress.config.secrets import mask_values, unmask_values
from floe_egress.errors import PermanentSinkError, TransientSinkError
from floe_egress.sinks.http.wire import Body, read_body, redirect_error

log = structlog.get_logger(__name__)


class OAuthTokens:
    """The current access token of one destination, renewed on demand."""

    def __init__(
        self,
        *,
        destination: str,
        vendor: str,
        token_url: str,
        grant_type: Literal["refresh_token", "client_credentials"],
        client_id: str,
        client_secret: str | None = None,
        refresh_token: str | None = None,
    ) -> None:
        self.destination = destination
        self.vendor = vendor
        self.token_url = token_url
        self._form = {"grant_type": grant_type, "client_id": client_id}
        if client_secret is not None:
            self._form["client_secret"] = client_secret
        if refresh_token is not None:
            self._form["refresh_token"] = refresh_token
        # The setting a refused grant asks the user to renew.
        self._setting = (
            "sink_config.oauth.refresh_token"
            if grant_type == "refresh_token"
            else "sink_config.oauth.client_id/client_secret"
        )
        self._token: str | None = None
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._masked: list[str] = []

    @property
    def grant_type(self) -> str:
        return self._form["grant_type"]

    def _get_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    async def current(self, session: aiohttp.ClientSession) -> str:
        """The token to send; fetched on first use."""
        if self._token is not None:
            return self._token
        return await self.renew(None, session)

    async def renew(self, stale: str | None, session: aiohttp.ClientSession) -> str:
        """A new token, unless another request already replaced `stale`."""
        async with self._get_lock():
            if self._token is not None and self._token != stale:
                return self._token
            self._token = await self._request(session)
            return self._token

    async def _request(self, session: aiohttp.ClientSession) -> str:
        where = f"destination {self.destination!r}: the {self.vendor} token endpoint"
        try:
            async with session.post(
                self.token_url,
                data=self._form,
                headers={"Accept": "application/json"},
                allow_redirects=False,
            ) as resp:
                status, location = resp.status, resp.headers.get("Location")
                body = Body(b"") if 300 <= status < 400 else await read_body(resp)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientSinkError(
                f"{where} is unreachable ({type(exc).__name__}: {exc})"
            ) from exc
        if 300 <= status < 400:
            raise redirect_error(where, "POST", self.token_url, status, location)
        data = _json(body.data)
        if status >= 500 or status == 429:
            raise TransientSinkError(f"{where} answered HTTP {status}; the batch is left for later")
        # HubSpot's newer token endpoints answer in camelCase.
        if "access_token" not in data and "accessToken" in data:
            data = {"access_token": data["accessToken"], "refresh_token": data.get("refreshToken")}
        if status != 200 or not isinstance(data.get("access_token"), str):
            # RFC 6749: error/error_description; HubSpot: status/message.
            error = data.get("error") or data.get("status") or f"HTTP {status}"
            detail = data.get("error_description") or data.get("message") or ""
            raise PermanentSinkError(
                f"{where} refused the {self.grant_type} grant ({error}"
                f"{': ' + str(detail) if detail else ''}); renew {self._setting}"
            )
        token: str = data["access_token"]
        mask_values([token])
        # The current token and its predecessor (requests may still be in flight with
        # it) stay masked; older ones are forgotten, or a daemon renewing every 30
        # minutes would grow the mask set, and the cost of every redaction, for ever.
        self._masked.append(token)
        if len(self._masked) > 2:
            unmask_values([self._masked.pop(0)])
        rotated = data.get("refresh_token")
        if isinstance(rotated, str) and rotated != self._form.get("refresh_token"):
            mask_values([rotated])
            self._form["refresh_token"] = rotated
            log.warning(
                "oauth_refresh_token_rotated",
                destination=self.destination,
                detail=(
                    "the app rotates refresh tokens: the new one is kept in memory only, so "
                    f"after a restart the configured one is refused; turn rotation off for "
                    f"this app or renew {self._setting} after each restart"
                ),
            )
        log.info("oauth_token_renewed", destination=self.destination, grant=self.grant_type)
        return token


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
