"""Exceptions every connector raises, so callers can catch them at the right level."""
from __future__ import annotations


class ConnectorError(Exception):
    """Talking to a platform or courier failed."""


class AuthError(ConnectorError):
    """Credentials were refused or revoked; retrying will not help until someone re-authorises."""


class NotFound(ConnectorError):
    pass


class RateLimited(ConnectorError):
    """The remote side asked us to slow down; nothing was processed, so retrying later is safe."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


class TemporaryError(ConnectorError):
    """The remote side failed before acting (connection refused, 5xx on an idempotent call); retry later."""


class AmbiguousOutcome(ConnectorError):
    """A non-idempotent call may or may not have taken effect (timeout after sending, 5xx on a create)."""


class InvalidPayload(ConnectorError):
    """A webhook or API response does not have the documented shape."""


class UnsafeURL(ConnectorError):
    """A tenant-supplied URL points somewhere we refuse to call (private, loopback, bad scheme)."""


class SignatureError(ConnectorError):
    """A signature (webhook HMAC, OAuth query HMAC, session token) did not verify; the reason says which check failed."""
