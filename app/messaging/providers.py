"""Which notifier sends for a shop: its own relay and sender when it set them, else the service's; reused per thread."""
from __future__ import annotations

import threading
from urllib.parse import urlsplit

from app.config import Settings
from app.models import Shop
from app.notifiers.base import Notifier
from app.notifiers.email import EmailNotifier, SmtpRelay
from app.notifiers.push import PushNotifier, PushSettings, load_or_create_vapid_key
from app.notifiers.sms import SmsNotifier, TwilioAccount

_local = threading.local()
_vapid_lock = threading.Lock()
_vapid_keys: dict = {}


class ChannelNotConfigured(Exception):
    """The shop cannot use this channel: no SMS sender, for instance. Nothing was sent."""


def smtp_relay_for(shop: Shop, settings: Settings) -> SmtpRelay:
    messaging = settings.messaging
    email = (shop.settings or {}).get("email") or {}
    own = email.get("smtp") or {}
    secrets = shop.credentials.reveal() if shop.credentials is not None else {}
    if own.get("host"):
        return SmtpRelay(
            host=own["host"], port=int(own.get("port") or 587),
            from_address=email.get("from_address") or messaging.email_from,
            from_name=email.get("from_name") or shop.name or "",
            reply_to=email.get("reply_to"),
            username=own.get("username"), password=(secrets or {}).get("smtp_password"),
            security=own.get("security") or "starttls", timeout=messaging.smtp_timeout,
        )
    return SmtpRelay(
        host=messaging.smtp_host, port=messaging.smtp_port,
        from_address=email.get("from_address") or messaging.email_from,
        from_name=email.get("from_name") or shop.name or messaging.email_from_name,
        reply_to=email.get("reply_to"),
        username=messaging.smtp_username or None, password=messaging.smtp_password or None,
        security=messaging.smtp_security, timeout=messaging.smtp_timeout,
    )


def twilio_account_for(shop: Shop, settings: Settings) -> TwilioAccount:
    messaging = settings.messaging
    sms = (shop.settings or {}).get("sms") or {}
    if not (messaging.twilio_account_sid and messaging.twilio_auth_token):
        raise ChannelNotConfigured("no Twilio account is configured (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN)")
    service = sms.get("messaging_service_sid") or (None if sms.get("from_number") else messaging.twilio_messaging_service_sid)
    sender = sms.get("from_number") or messaging.twilio_from_number
    if not (service or sender):
        raise ChannelNotConfigured("no Messaging Service or sender number for this shop")
    return TwilioAccount(account_sid=messaging.twilio_account_sid, auth_token=messaging.twilio_auth_token,
                         messaging_service_sid=service or None, from_number=None if service else sender,
                         api_base_url=messaging.twilio_api_base_url or None, timeout=messaging.twilio_timeout)


def vapid_key(settings: Settings):
    key = (str(settings.instance_dir), settings.messaging.vapid_private_key)
    with _vapid_lock:
        if key not in _vapid_keys:
            _vapid_keys[key] = load_or_create_vapid_key(settings.instance_dir, settings.messaging.vapid_private_key or None)
        return _vapid_keys[key]


def notifier_for(shop: Shop, channel: str, settings: Settings) -> Notifier:
    """A notifier for this shop and channel, kept per thread so connections are reused between messages."""
    cache: dict = getattr(_local, "notifiers", None) or {}
    _local.notifiers = cache
    if channel == "email":
        relay = smtp_relay_for(shop, settings)
        key = ("email", relay)
        if key not in cache:
            cache[key] = EmailNotifier(relay)
        return cache[key]
    if channel == "sms":
        account = twilio_account_for(shop, settings)
        key = ("sms", account)
        if key not in cache:
            cache[key] = SmsNotifier(account)
        return cache[key]
    if channel == "push":
        key = ("push", settings.messaging.vapid_subject, settings.messaging.push_timeout, str(settings.instance_dir))
        if key not in cache:
            cache[key] = PushNotifier(vapid_key(settings), PushSettings(subject=settings.messaging.vapid_subject,
                                                                       timeout=settings.messaging.push_timeout))
        return cache[key]
    raise ChannelNotConfigured(f"no channel {channel!r}")


def close_notifiers() -> None:
    cache: dict = getattr(_local, "notifiers", None) or {}
    for notifier in cache.values():
        notifier.close()
    cache.clear()


def sender_domain(shop: Shop, settings: Settings) -> str:
    address = ((shop.settings or {}).get("email") or {}).get("from_address") or settings.messaging.email_from
    domain = address.rsplit("@", 1)[1].lower()
    # Message-ID and the mailto: unsubscribe address must be ASCII: an IDN shop domain goes as punycode.
    return domain.encode("idna").decode("ascii")


def public_host(settings: Settings) -> str:
    return urlsplit(settings.public_url).hostname or "localhost"
