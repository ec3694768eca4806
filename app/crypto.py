"""Per-shop secrets encrypted at rest with MultiFernet; the newest key encrypts, every key decrypts."""
from __future__ import annotations

import json
from typing import Any, Iterable

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Text, TypeDecorator

_keyring: MultiFernet | None = None


class SecretsNotConfigured(RuntimeError):
    pass


class SecretUnreadable(RuntimeError):
    """A stored secret cannot be decrypted with any configured key."""


def configure_keys(keys: Iterable[str]) -> None:
    global _keyring
    _keyring = MultiFernet([Fernet(key) for key in keys])


def keyring() -> MultiFernet:
    if _keyring is None:
        raise SecretsNotConfigured("encryption keys are not configured; create the app first")
    return _keyring


def encrypt(plaintext: str) -> str:
    return keyring().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return keyring().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable("stored secret cannot be decrypted with the configured FERNET_KEYS") from None


def rotate_token(token: str) -> str:
    """Re-encrypt a stored token under the newest key."""
    try:
        return keyring().rotate(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable("stored secret cannot be decrypted with the configured FERNET_KEYS") from None


class Secret:
    """A decrypted value that will not show itself in reprs, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: Any):
        self._value = value

    def reveal(self) -> Any:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", json.dumps(self._value, sort_keys=True, default=str)))


class EncryptedJSON(TypeDecorator):
    """A JSON document (credentials, tokens) stored as a Fernet token, read back as a `Secret`."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, Secret):
            value = value.reveal()
        return encrypt(json.dumps(value, sort_keys=True))

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return Secret(json.loads(decrypt(value)))


def generate_key() -> str:
    return Fernet.generate_key().decode()
