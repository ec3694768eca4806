"""Settings read from environment variables only, validated once at start-up."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable and the problem."""


def _int(env: dict, name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    return value


def _float(env: dict, name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    return value


def _bool(env: dict, name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} must be true or false")


def _choice(env: dict, name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name) or default
    if raw not in choices:
        raise ConfigError(f"{name}={raw!r} must be one of: {', '.join(choices)}")
    return raw


@dataclass(frozen=True)
class Settings:
    """Every knob of the service; `from_env` is the only constructor used outside tests."""

    instance_dir: Path
    database_url: str
    secret_key: str = field(repr=False)
    fernet_keys: tuple[str, ...] = field(repr=False)
    executor: str
    broker_url: str | None
    celery_queue: str
    job_lease_seconds: int
    job_max_attempts: int
    job_backoff_base: float
    job_backoff_max: float
    job_poll_interval: float
    job_redispatch_after: int
    clock_lock_seconds: int
    log_level: str
    log_format: str
    environment: str
    public_url: str
    shopify: "ShopifyAppSettings"
    allow_private_store_urls: bool
    testing: bool = False
    redis_url: str | None = None
    trusted_proxy_count: int = 0
    storefront: "StorefrontSettings" = field(default_factory=lambda: StorefrontSettings())
    messaging: "MessagingSettings" = field(default_factory=lambda: MessagingSettings())

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def from_env(cls, env: dict | None = None, *, testing: bool = False) -> "Settings":
        env = dict(os.environ if env is None else env)
        instance_dir = Path(env.get("INSTANCE_DIR") or PROJECT_ROOT / "instance")
        database_url = env.get("DATABASE_URL") or f"sqlite:///{instance_dir / 'companion.db'}"
        database_url = _normalise_database_url(database_url)
        environment = _choice(env, "APP_ENV", "development", ("development", "production", "test"))
        executor = _choice(env, "JOB_EXECUTOR", "local", ("local", "celery"))
        broker_url = env.get("CELERY_BROKER_URL") or None
        if executor == "celery" and not broker_url:
            raise ConfigError("CELERY_BROKER_URL is required when JOB_EXECUTOR=celery (e.g. redis://127.0.0.1:6379/0)")
        if broker_url and not broker_url.split("://", 1)[0] in ("redis", "rediss", "amqp", "amqps", "pyamqp"):
            raise ConfigError(f"CELERY_BROKER_URL={broker_url!r} must be a redis:// or amqp:// URL")
        secret_key = env.get("SECRET_KEY") or ""
        fernet_raw = env.get("FERNET_KEYS") or ""
        if environment == "production":
            if not secret_key:
                raise ConfigError("SECRET_KEY is required when APP_ENV=production")
            if not fernet_raw:
                raise ConfigError("FERNET_KEYS is required when APP_ENV=production (comma-separated Fernet keys, newest first)")
        if not secret_key or not fernet_raw:
            from app.instance_keys import load_or_create_instance_keys

            generated = load_or_create_instance_keys(instance_dir)
            secret_key = secret_key or generated["secret_key"]
            fernet_raw = fernet_raw or generated["fernet_key"]
        fernet_keys = tuple(k.strip() for k in fernet_raw.split(",") if k.strip())
        _check_fernet_keys(fernet_keys)
        return cls(
            instance_dir=instance_dir,
            database_url=database_url,
            secret_key=secret_key,
            fernet_keys=fernet_keys,
            executor=executor,
            broker_url=broker_url,
            celery_queue=env.get("CELERY_QUEUE") or "companion",
            job_lease_seconds=_int(env, "JOB_LEASE_SECONDS", 300, minimum=1),
            job_max_attempts=_int(env, "JOB_MAX_ATTEMPTS", 8, minimum=1),
            job_backoff_base=_float(env, "JOB_BACKOFF_BASE_SECONDS", 10.0),
            job_backoff_max=_float(env, "JOB_BACKOFF_MAX_SECONDS", 3600.0),
            job_poll_interval=_float(env, "JOB_POLL_INTERVAL_SECONDS", 0.5, minimum=0.01),
            job_redispatch_after=_int(env, "JOB_REDISPATCH_AFTER_SECONDS", 300, minimum=1),
            clock_lock_seconds=_int(env, "CLOCK_LOCK_SECONDS", 30, minimum=2),
            log_level=_choice(env, "LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
            log_format=_choice(env, "LOG_FORMAT", "json", ("json", "text")),
            environment=environment,
            public_url=_public_url(env),
            shopify=ShopifyAppSettings.from_env(env),
            allow_private_store_urls=_bool(env, "ALLOW_PRIVATE_STORE_URLS", False),
            testing=testing,
            redis_url=_redis_url(env),
            trusted_proxy_count=_int(env, "TRUSTED_PROXY_COUNT", 0),
            storefront=StorefrontSettings.from_env(env),
            messaging=MessagingSettings.from_env(env),
        )


def _redis_url(env: dict) -> str | None:
    url = env.get("REDIS_URL") or None
    if url and url.split("://", 1)[0] not in ("redis", "rediss", "unix"):
        raise ConfigError(f"REDIS_URL={url!r} must be a redis:// URL")
    return url


@dataclass(frozen=True)
class StorefrontSettings:
    """Limits of the public `/s/...` endpoints the storefront snippet calls."""

    visitor_requests_per_minute: int = 120
    ip_requests_per_minute: int = 600
    max_body_bytes: int = 64 * 1024
    max_events_per_batch: int = 100
    confirm_link_days: int = 14
    event_retention_days: int = 180

    @classmethod
    def from_env(cls, env: dict) -> "StorefrontSettings":
        return cls(
            visitor_requests_per_minute=_int(env, "STOREFRONT_VISITOR_REQUESTS_PER_MINUTE", 120, minimum=1),
            ip_requests_per_minute=_int(env, "STOREFRONT_IP_REQUESTS_PER_MINUTE", 600, minimum=1),
            max_body_bytes=_int(env, "STOREFRONT_MAX_BODY_BYTES", 64 * 1024, minimum=1024),
            max_events_per_batch=_int(env, "STOREFRONT_MAX_EVENTS_PER_BATCH", 100, minimum=1),
            confirm_link_days=_int(env, "STOREFRONT_CONFIRM_LINK_DAYS", 14, minimum=1),
            event_retention_days=_int(env, "STOREFRONT_EVENT_RETENTION_DAYS", 180),
        )


@dataclass(frozen=True)
class MessagingSettings:
    """The global email relay, Twilio account and web push identity; a shop may bring its own relay and sender."""

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_security: str = "none"
    smtp_timeout: float = 10.0
    email_from: str = "no-reply@localhost"
    email_from_name: str = ""
    twilio_account_sid: str = ""
    twilio_auth_token: str = field(default="", repr=False)
    twilio_messaging_service_sid: str = ""
    twilio_from_number: str = ""
    twilio_api_base_url: str = ""  # tests only: a local fake of Twilio's REST API
    twilio_timeout: float = 10.0
    vapid_private_key: str = field(default="", repr=False)
    vapid_subject: str = "mailto:no-reply@localhost"
    push_timeout: float = 10.0
    shop_sends_per_minute: int = 600

    @classmethod
    def from_env(cls, env: dict) -> "MessagingSettings":
        email_from = env.get("EMAIL_FROM") or "no-reply@localhost"
        if "@" not in email_from:
            raise ConfigError(f"EMAIL_FROM={email_from!r} must be an email address")
        if bool(env.get("TWILIO_ACCOUNT_SID")) != bool(env.get("TWILIO_AUTH_TOKEN")):
            missing = "TWILIO_AUTH_TOKEN" if env.get("TWILIO_ACCOUNT_SID") else "TWILIO_ACCOUNT_SID"
            raise ConfigError(f"{missing} is required when the other of TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN is set")
        subject = env.get("VAPID_SUBJECT") or f"mailto:{email_from}"
        if not subject.startswith(("mailto:", "https://")):
            raise ConfigError(f"VAPID_SUBJECT={subject!r} must be a mailto: or https: URL")
        return cls(
            smtp_host=env.get("SMTP_HOST") or "127.0.0.1",
            smtp_port=_int(env, "SMTP_PORT", 1025, minimum=1),
            smtp_username=env.get("SMTP_USERNAME") or "",
            smtp_password=env.get("SMTP_PASSWORD") or "",
            smtp_security=_choice(env, "SMTP_SECURITY", "none", ("none", "starttls", "ssl")),
            smtp_timeout=_float(env, "SMTP_TIMEOUT_SECONDS", 10.0, minimum=0.1),
            email_from=email_from,
            email_from_name=env.get("EMAIL_FROM_NAME") or "",
            twilio_account_sid=env.get("TWILIO_ACCOUNT_SID") or "",
            twilio_auth_token=env.get("TWILIO_AUTH_TOKEN") or "",
            twilio_messaging_service_sid=env.get("TWILIO_MESSAGING_SERVICE_SID") or "",
            twilio_from_number=env.get("TWILIO_FROM_NUMBER") or "",
            twilio_api_base_url=(env.get("TWILIO_API_BASE_URL") or "").rstrip("/"),
            twilio_timeout=_float(env, "TWILIO_TIMEOUT_SECONDS", 10.0, minimum=0.1),
            vapid_private_key=env.get("VAPID_PRIVATE_KEY") or "",
            vapid_subject=subject,
            push_timeout=_float(env, "PUSH_TIMEOUT_SECONDS", 10.0, minimum=0.1),
            shop_sends_per_minute=_int(env, "MESSAGES_PER_SHOP_PER_MINUTE", 600, minimum=1),
        )


@dataclass(frozen=True)
class ShopifyAppSettings:
    """The Shopify app's identity (from the Partner Dashboard); empty when Shopify is not used."""

    api_key: str = ""
    api_secret: str = field(default="", repr=False)
    previous_api_secret: str = field(default="", repr=False)
    scopes: tuple[str, ...] = ()
    api_version: str = "2026-01"
    admin_base_url: str = ""  # tests only: send every shop's Admin API calls here instead of https://{shop}

    @property
    def configured(self) -> bool:
        return bool(self.api_key and self.api_secret)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The current secret first, then the previous one while a rotation settles."""
        return tuple(s for s in (self.api_secret, self.previous_api_secret) if s)

    @classmethod
    def from_env(cls, env: dict) -> "ShopifyAppSettings":
        api_key, api_secret = env.get("SHOPIFY_API_KEY") or "", env.get("SHOPIFY_API_SECRET") or ""
        if bool(api_key) != bool(api_secret):
            missing = "SHOPIFY_API_SECRET" if api_key else "SHOPIFY_API_KEY"
            raise ConfigError(f"{missing} is required when the other of SHOPIFY_API_KEY/SHOPIFY_API_SECRET is set")
        version = env.get("SHOPIFY_API_VERSION") or "2026-01"
        if not re.fullmatch(r"\d{4}-(01|04|07|10)", version):
            raise ConfigError(f"SHOPIFY_API_VERSION={version!r} must be a stable quarterly version like 2026-01")
        scopes = env.get("SHOPIFY_SCOPES") or DEFAULT_SHOPIFY_SCOPES
        return cls(
            api_key=api_key,
            api_secret=api_secret,
            previous_api_secret=env.get("SHOPIFY_PREVIOUS_API_SECRET") or "",
            scopes=tuple(s.strip() for s in scopes.split(",") if s.strip()),
            api_version=version,
            admin_base_url=(env.get("SHOPIFY_ADMIN_BASE_URL") or "").rstrip("/"),
        )


DEFAULT_SHOPIFY_SCOPES = (
    "read_orders,read_customers,write_customers,read_products,write_merchant_managed_fulfillment_orders,"
    "write_discounts,read_returns"
)


def _public_url(env: dict) -> str:
    url = (env.get("PUBLIC_URL") or "http://127.0.0.1:5000").rstrip("/")
    if not re.fullmatch(r"https?://[^/\s]+(/[^\s]*)?", url):
        raise ConfigError(f"PUBLIC_URL={url!r} must be an absolute http(s) URL, e.g. https://companion.example.com")
    return url


def _normalise_database_url(url: str) -> str:
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if not (url.startswith("sqlite") or url.startswith("postgresql+psycopg://")):
        raise ConfigError(f"DATABASE_URL must be a sqlite:/// or postgresql:// URL, got scheme {url.split(':', 1)[0]!r}")
    return url


def _check_fernet_keys(keys: tuple[str, ...]) -> None:
    from cryptography.fernet import Fernet

    if not keys:
        raise ConfigError("FERNET_KEYS is empty: give at least one key (python -m app keys generate)")
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ConfigError(f"FERNET_KEYS key #{position} is not a valid Fernet key (32 url-safe base64 bytes)") from None
