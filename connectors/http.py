"""Outbound HTTP for connectors: timeouts always, no redirects, and tenant URLs checked against SSRF."""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from connectors.errors import UnsafeURL

DEFAULT_TIMEOUT = (5.0, 30.0)  # (connect, read) seconds


@dataclass(frozen=True)
class UrlPolicy:
    """Where tenant-supplied URLs may point. Production refuses anything that is not a public address."""

    allow_private: bool = False
    allow_plain_http: bool = True

    def check(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or (parts.scheme == "http" and not self.allow_plain_http):
            raise UnsafeURL(f"{url!r}: only https{' or http' if self.allow_plain_http else ''} URLs are allowed")
        if not parts.hostname:
            raise UnsafeURL(f"{url!r}: no host")
        if parts.username or parts.password:
            raise UnsafeURL(f"{url!r}: credentials in the URL are not allowed")
        if self.allow_private:
            return
        for address in _resolve(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)):
            if not address.is_global:
                raise UnsafeURL(f"{parts.hostname!r} resolves to {address}, which is not a public address")


def _resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnsafeURL(f"{host!r} cannot be resolved: {exc.strerror}") from None
    return [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]


class SafeSession(requests.Session):
    """A requests session that never follows redirects, always times out, and checks tenant URLs."""

    def __init__(self, policy: UrlPolicy | None = None, timeout: tuple[float, float] = DEFAULT_TIMEOUT, user_agent: str = "store-companion"):
        super().__init__()
        self.policy = policy
        self.timeout = timeout
        self.headers["User-Agent"] = user_agent

    def request(self, method, url, **kwargs):
        if self.policy is not None:
            self.policy.check(url)
        kwargs.setdefault("timeout", self.timeout)
        kwargs["allow_redirects"] = False
        return super().request(method, url, **kwargs)
