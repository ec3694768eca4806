"""Authorization-code install and expiring offline tokens: authorize URL, code exchange, refresh."""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Callable, Sequence
from urllib.parse import urlencode

import requests

from connectors.errors import AuthError, ConnectorError, InvalidPayload, RateLimited, TemporaryError
from connectors.http import DEFAULT_TIMEOUT, SafeSession
from connectors.records import utc
from connectors.shopify.retry import Backoff, retry_after_seconds
from connectors.shopify.shop_domain import normalise_shop_domain

# The errors Shopify answers for a used, revoked or unknown code or refresh token, or an uninstalled app.
_REFUSALS = {"invalid_grant", "invalid_request", "invalid_client", "invalid_subject_token", "unauthorized_client"}


def _shop(shop: str) -> str:
    domain = normalise_shop_domain(shop)
    if domain is None:
        raise ValueError(f"{shop!r} is not a *.myshopify.com shop domain")
    return domain


def authorize_url(shop: str, client_id: str, scopes: Sequence[str], redirect_uri: str, state: str) -> str:
    """Where to send the merchant to approve the install; offline access, so no grant_options[]."""
    query = {"client_id": client_id}
    if scopes:  # without scopes Shopify uses the ones declared in shopify.app.toml
        query["scope"] = ",".join(scopes)
    query.update(redirect_uri=redirect_uri, state=state)
    return f"https://{_shop(shop)}/admin/oauth/authorize?{urlencode(query)}"


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    scope: str
    expires_at: dt.datetime | None
    refresh_token: str | None
    refresh_token_expires_at: dt.datetime | None

    def __repr__(self) -> str:  # tokens end up in logs and tracebacks; never print them
        return (f"TokenSet(access_token='***', scope={self.scope!r}, expires_at={self.expires_at!r}, "
                f"refresh_token={'***' if self.refresh_token else None}, "
                f"refresh_token_expires_at={self.refresh_token_expires_at!r})")

    @classmethod
    def from_response(cls, body: object, now: dt.datetime) -> "TokenSet":
        if not isinstance(body, dict) or not body.get("access_token"):
            raise InvalidPayload("token response has no access_token")

        def after(seconds_key: str) -> dt.datetime | None:
            seconds = body.get(seconds_key)
            return utc(now) + dt.timedelta(seconds=int(seconds)) if seconds not in (None, "") else None

        return cls(access_token=str(body["access_token"]), scope=str(body.get("scope") or ""),
                   expires_at=after("expires_in"), refresh_token=body.get("refresh_token") or None,
                   refresh_token_expires_at=after("refresh_token_expires_in"))


class OAuthClient:
    """Talks to one app's token endpoint on any shop; retries what is safe to retry."""

    def __init__(self, client_id: str, client_secret: str, *, session: requests.Session | None = None,
                 base_url: Callable[[str], str] | None = None, sleep: Callable[[float], None] = time.sleep,
                 max_retries: int = 3, backoff: Backoff = Backoff()):
        self.client_id = client_id
        self._client_secret = client_secret
        self._session = session or SafeSession()
        self._base_url = base_url or (lambda shop: f"https://{shop}")
        self._sleep = sleep
        self._max_retries = max_retries
        self._backoff = backoff

    def __repr__(self) -> str:
        return f"OAuthClient(client_id={self.client_id!r})"

    def exchange_code(self, shop: str, code: str, now: dt.datetime) -> TokenSet:
        """Trade the callback's code for an expiring offline token and its refresh token."""
        return self._token_request(shop, {"code": code, "expiring": 1}, now)

    def refresh(self, shop: str, refresh_token: str, now: dt.datetime) -> TokenSet:
        """A new access token and a new refresh token; store both at once, the old refresh token is spent."""
        return self._token_request(shop, {"grant_type": "refresh_token", "refresh_token": refresh_token}, now)

    def _token_request(self, shop: str, grant: dict, now: dt.datetime) -> TokenSet:
        domain = _shop(shop)
        url = self._base_url(domain).rstrip("/") + "/admin/oauth/access_token"
        body = {"client_id": self.client_id, "client_secret": self._client_secret, **grant}
        failure: ConnectorError = TemporaryError(f"token request to {domain} was not attempted")
        for attempt in range(self._max_retries + 1):
            try:
                response = self._session.post(url, json=body, headers={"Accept": "application/json"},
                                              timeout=DEFAULT_TIMEOUT)
            except requests.RequestException as exc:
                failure, wait = TemporaryError(f"token request to {domain} failed: {type(exc).__name__}"), None
            else:
                if response.status_code == 200:
                    try:
                        return TokenSet.from_response(response.json(), now)
                    except ValueError:
                        raise InvalidPayload(f"token response from {domain} is not JSON") from None
                wait = retry_after_seconds(response)
                if response.status_code == 429:
                    failure = RateLimited(f"token endpoint of {domain} is rate limiting us", wait or 1.0)
                elif response.status_code >= 500:
                    failure = TemporaryError(f"token endpoint of {domain} answered HTTP {response.status_code}")
                else:
                    raise _refusal(domain, response)
            if attempt < self._max_retries:
                self._sleep(wait if wait is not None else self._backoff.delay(attempt))
        raise failure


def _refusal(domain: str, response: requests.Response) -> ConnectorError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    error = str(body.get("error") or "") if isinstance(body, dict) else ""
    description = str(body.get("error_description") or "") if isinstance(body, dict) else ""
    message = f"{domain} refused the token request (HTTP {response.status_code}): {error or 'no error code'}" \
              + (f": {description}" if description else "")
    if error in _REFUSALS or response.status_code in (401, 403):
        return AuthError(message)
    return ConnectorError(message)
