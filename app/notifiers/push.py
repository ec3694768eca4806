"""Web push with pywebpush and VAPID: fresh claims per send, explicit TTL/Urgency/Topic, one reused session."""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import requests
from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid02
from pywebpush import WebPushException, webpush

from app import crypto
from app.instance_keys import load_or_create_json
from app.notifiers.base import Envelope, SendOutcome, parse_retry_after
from app.notifiers.sms import never_connected

VAPID_FILE = "vapid.json"
URGENCIES = ("very-low", "low", "normal", "high")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def load_or_create_vapid_key(instance_dir: Path, configured: str | None = None) -> Vapid02:
    """The installation's VAPID signing key: VAPID_PRIVATE_KEY if set, else one generated once and kept encrypted.

    Several processes start together; the first to link the file wins and the others read what it wrote.
    The file holds the key as a Fernet token, so it is as safe as the shops' credentials.
    """
    if configured:
        return Vapid02.from_string(configured)

    def fresh() -> dict:
        vapid = Vapid02()
        vapid.generate_keys()
        return {"private_key": crypto.encrypt(vapid.private_pem().decode())}

    stored = load_or_create_json(instance_dir / VAPID_FILE, fresh)
    return Vapid02.from_pem(crypto.decrypt(stored["private_key"]).encode())


def application_server_key(vapid: Vapid02) -> str:
    """The public key a browser passes to pushManager.subscribe(), base64url of the uncompressed point."""
    raw = vapid.public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return _b64url(raw)


@dataclass(frozen=True)
class PushSettings:
    subject: str  # mailto: or https: contact for the push services (RFC 8292)
    timeout: float = 10.0
    default_ttl: int = 86_400


@dataclass(frozen=True)
class PushResponse:
    """What pywebpush and we read of a push service's answer."""

    status_code: int
    reason: str
    headers: object  # urllib3's HTTPHeaderDict: case-insensitive
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


class PooledPoster:
    """The one method pywebpush calls on its session (`post`), on urllib3's connection pools.

    Connections to each push service are kept and reused. requests' per-request work (hooks, cookies, reading the
    proxy environment every time) cost more than the push itself; the environment is read once here
    (HTTP(S)_PROXY, REQUESTS_CA_BUNDLE), and NO_PROXY once per push service, with requests' own rules (suffixes,
    host:port, IP ranges in CIDR notation, `*`). No redirects are followed, nothing is retried: a send is retried
    only by the outbox, and only when nothing left. Transport errors come out as requests' exceptions, as before.
    """

    ROUTES_KEPT = 1024  # push service origins whose proxy decision is remembered

    def __init__(self):
        import os
        import urllib.request

        import certifi
        import urllib3

        ca_certs = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
        proxies = urllib.request.getproxies()
        self._direct = {scheme: urllib3.PoolManager(num_pools=16, maxsize=2, retries=False, ca_certs=ca_certs)
                        for scheme in ("http", "https")}
        self._proxied = {scheme: urllib3.ProxyManager(proxies[scheme], num_pools=16, maxsize=2, retries=False,
                                                      ca_certs=ca_certs)
                         for scheme in ("http", "https") if proxies.get(scheme)}
        self._routes: dict[tuple[str, str], object] = {}  # (scheme, host:port) -> the manager that reaches it

    def _manager_for(self, url: str):
        from urllib.parse import urlsplit

        from requests.utils import should_bypass_proxies

        parts = urlsplit(url)
        scheme = "https" if parts.scheme == "https" else "http"
        route = (scheme, parts.netloc)
        manager = self._routes.get(route)
        if manager is None:
            proxied = self._proxied.get(scheme)
            # no_proxy=None: requests reads NO_PROXY itself and leaves the environment alone (threads share it).
            direct = proxied is None or should_bypass_proxies(url, no_proxy=None)
            if len(self._routes) >= self.ROUTES_KEPT:
                self._routes.clear()
            manager = self._routes[route] = self._direct[scheme] if direct else proxied
        return manager

    def post(self, url: str, data=None, headers=None, timeout: float | None = None) -> PushResponse:
        import urllib3
        from urllib3 import exceptions as errors

        manager = self._manager_for(url)
        try:
            answer = manager.request("POST", url, body=data, headers={k: str(v) for k, v in (headers or {}).items()},
                                     timeout=urllib3.Timeout(connect=timeout, read=timeout), redirect=False,
                                     retries=False)
        except errors.ConnectTimeoutError as exc:
            raise requests.ConnectTimeout(exc) from exc
        except (errors.HTTPError, OSError) as exc:  # refused (NewConnectionError) or broken off after sending
            raise requests.ConnectionError(exc) from exc
        return PushResponse(answer.status, answer.reason or "", answer.headers, answer.data)

    def close(self) -> None:
        for manager in (*self._direct.values(), *self._proxied.values()):
            manager.clear()


class PushNotifier:
    """Sends encrypted web push messages signed with the installation's VAPID key."""

    channel = "push"
    provider = "webpush"

    def __init__(self, vapid: Vapid02, settings: PushSettings, session: requests.Session | PooledPoster | None = None):
        self.vapid = vapid
        self.settings = settings
        self.session = session or PooledPoster()

    def send(self, envelope: Envelope) -> SendOutcome:
        payload = envelope.payload
        subscription = payload["subscription"]
        urgency = payload.get("urgency", "normal")
        if urgency not in URGENCIES:
            raise ValueError(f"urgency must be one of {URGENCIES}")
        headers = {"Urgency": urgency}
        if payload.get("topic"):
            headers["Topic"] = _topic(payload["topic"])
        body = json.dumps(payload.get("data") or {"title": envelope.subject, "body": envelope.text},
                          ensure_ascii=False, separators=(",", ":"))
        try:
            response = webpush(
                subscription_info=subscription,
                data=body,
                vapid_private_key=self.vapid,
                # pywebpush writes aud and exp into the dict it is given: a fresh one for every send.
                vapid_claims={"sub": self.settings.subject},
                ttl=int(payload.get("ttl", self.settings.default_ttl)),
                headers=headers,
                timeout=self.settings.timeout,
                requests_session=self.session,
            )
        except WebPushException as exc:
            return _classify(exc)
        except requests.RequestException as exc:
            if never_connected(exc):
                return SendOutcome.retry(60, f"cannot reach the push service: {exc}")
            return SendOutcome.unknown(f"push request broke off after it was sent: {exc}")
        return SendOutcome.accepted(response.headers.get("Location"), f"{response.status_code}")

    def close(self) -> None:
        self.session.close()


def _topic(value: str) -> str:
    """RFC 8030 Topic: at most 32 characters of the URL-safe base64 alphabet."""
    cleaned = "".join(ch for ch in value if ch.isalnum() or ch in "-_")
    if len(cleaned) > 32 or cleaned != value:
        import hashlib

        cleaned = _b64url(hashlib.sha256(value.encode()).digest())[:32]
    return cleaned


def _classify(exc: WebPushException) -> SendOutcome:
    status = exc.status_code
    text = ""
    if exc.response is not None:
        text = (getattr(exc.response, "text", "") or "")[:200]
    detail = f"push service answered {status}: {text}"
    if status in (404, 410):
        return SendOutcome.failed(detail, subscription_gone=True)
    if status == 429 or (status is not None and status >= 500):
        return SendOutcome.retry(parse_retry_after(exc.retry_after), detail)
    if status is None:
        return SendOutcome.unknown(f"push failed without a response: {exc.message}")
    return SendOutcome.failed(detail)
