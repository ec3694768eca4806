"""Sign-up with double opt-in and web push opt-in: what the visitor agreed to, and the proof of it.

The confirmation email is the outbox's work. A sign-up enqueues the job kind `storefront.send_double_opt_in`
(argument `double_opt_in_id`) when some module registers it; until then the row waits with status `unsent`,
and the sender picks up every `unsent` row once it exists. The sender builds the link with
`confirmation_url(settings, row)` and sets the status to `sent`.
"""
from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.automations import signals
from app.config import Settings
from app.jobs import registry
from app.jobs.queue import enqueue
from app.models import Consent, PushOptIn, PushSubscription, utcnow
from app.models.storefront import DoubleOptIn
from app.storefront.capture import customer_for_contact, visitor

SEND_JOB_KIND = "storefront.send_double_opt_in"
TOKEN_SALT = "storefront.double-opt-in"
RESEND_AFTER = dt.timedelta(minutes=10)


@dataclass(frozen=True)
class Proof:
    ip_address: str | None
    user_agent: str | None


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key, salt=TOKEN_SALT)


def confirmation_token(settings: Settings, row: DoubleOptIn) -> str:
    return _serializer(settings).dumps([row.shop_id, row.id, row.nonce])


def confirmation_url(settings: Settings, row: DoubleOptIn) -> str:
    return f"{settings.public_url}/s/confirm/{confirmation_token(settings, row)}"


class InvalidConfirmation(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason  # "invalid" | "expired"


def read_confirmation_token(settings: Settings, token: str) -> tuple[int, int, str]:
    try:
        shop_id, row_id, nonce = _serializer(settings).loads(token, max_age=settings.storefront.confirm_link_days * 86400)
    except SignatureExpired:
        raise InvalidConfirmation("expired") from None
    except (BadSignature, ValueError, TypeError):
        raise InvalidConfirmation("invalid") from None
    if not (isinstance(shop_id, int) and isinstance(row_id, int) and isinstance(nonce, str)):
        raise InvalidConfirmation("invalid")
    return shop_id, row_id, nonce


def newest_consent(session: Session, customer_id: int, channel: str) -> Consent | None:
    return session.scalars(
        select(Consent).where(Consent.customer_id == customer_id, Consent.channel == channel)
        .order_by(Consent.recorded_at.desc(), Consent.id.desc()).limit(1)
    ).first()


def form_problem(storefront_settings: dict, form_id: str, form_text_version: str) -> str | None:
    """Why a sign-up cannot be taken for this form: `unknown_form`, `consent_text_changed`, or None.

    The visitor must have seen the form's current consent wording; an older page left open gets a 409
    and the snippet's next config fetch shows the new wording.
    """
    forms = {f.get("id"): f for f in storefront_settings.get("forms") or [] if isinstance(f, dict)}
    if form_id not in forms:
        return "unknown_form"
    if forms[form_id].get("consent_version") != form_text_version:
        return "consent_text_changed"
    return None


def request_sign_up(session: Session, shop_id: int, *, email: str, form_id: str, form_text_version: str, locale: str,
                    visitor_id: str | None, proof: Proof) -> DoubleOptIn | None:
    """Record a pending email consent and the confirmation to send; None when nothing new is needed.

    Nothing new is needed when the customer already granted consent, or asked less than RESEND_AFTER ago;
    the caller answers the same either way, so the response never tells whether the address is known.
    """
    customer = customer_for_contact(session, shop_id, email, None)
    if visitor_id:
        seen = visitor(session, shop_id, visitor_id)
        seen.customer_id, seen.contact_at = customer.id, utcnow()
    current = newest_consent(session, customer.id, "email")
    if current is not None and current.state == "granted":
        return None
    recent = session.scalars(select(DoubleOptIn).where(
        DoubleOptIn.customer_id == customer.id, DoubleOptIn.confirmed_at.is_(None),
        DoubleOptIn.requested_at > utcnow() - RESEND_AFTER)).first()
    if recent is not None:
        return None
    now = utcnow()
    consent = Consent(shop_id=shop_id, customer_id=customer.id, channel="email", state="pending",
                      source=f"storefront:{form_id}"[:32], form_text_version=form_text_version,
                      ip_address=proof.ip_address, user_agent=proof.user_agent, recorded_at=now)
    session.add(consent)
    signals.note_consent(session, shop_id, consent)
    row = DoubleOptIn(shop_id=shop_id, customer_id=customer.id, consent_id=consent.id, channel="email",
                      nonce=secrets.token_hex(16), form_id=form_id, form_text_version=form_text_version,
                      locale=locale, visitor_id=visitor_id, status="unsent", requested_at=now,
                      requested_ip=proof.ip_address, requested_user_agent=proof.user_agent)
    session.add(row)
    session.flush()
    if SEND_JOB_KIND in registry.all_kinds():
        enqueue(session, SEND_JOB_KIND, shop_id=shop_id, dedupe_key=f"double_opt_in:{row.id}", double_opt_in_id=row.id)
        row.status = "queued"
    return row


def confirm_sign_up(session: Session, row_id: int, nonce: str, proof: Proof) -> DoubleOptIn | None:
    """Record the granted consent with its proof (time, IP, user agent, wording version); idempotent.

    Returns the row, or None when no such pending sign-up exists (erased, or a forged id).
    """
    row = session.scalars(select(DoubleOptIn).where(DoubleOptIn.id == row_id, DoubleOptIn.nonce == nonce)).first()
    if row is None or row.confirmed_at is not None:
        return row
    now = utcnow()
    granted = Consent(shop_id=row.shop_id, customer_id=row.customer_id, channel=row.channel, state="granted",
                      source="storefront:double_opt_in", form_text_version=row.form_text_version,
                      ip_address=proof.ip_address, user_agent=proof.user_agent, recorded_at=now)
    session.add(granted)
    signals.note_consent(session, row.shop_id, granted)
    row.confirmed_at, row.status = now, "confirmed"
    return row


def subscribe_push(session: Session, shop_id: int, *, visitor_id: str, endpoint: str, p256dh: str, auth: str,
                   form_text_version: str, proof: Proof) -> PushSubscription:
    """Store (or revive) a browser's push subscription together with the consent it was given under."""
    seen = visitor(session, shop_id, visitor_id)
    subscription = session.scalars(select(PushSubscription).where(PushSubscription.endpoint == endpoint)).first()
    if subscription is None:
        subscription = PushSubscription(shop_id=shop_id, endpoint=endpoint, p256dh=p256dh, auth=auth)
        session.add(subscription)
    subscription.p256dh, subscription.auth, subscription.status = p256dh, auth, "active"
    subscription.visitor_id = visitor_id
    subscription.customer_id = seen.customer_id or subscription.customer_id
    session.flush()
    opt_in = session.scalars(select(PushOptIn).where(PushOptIn.push_subscription_id == subscription.id)).first()
    if opt_in is None:
        opt_in = PushOptIn(shop_id=shop_id, push_subscription_id=subscription.id)
        session.add(opt_in)
    opt_in.visitor_id, opt_in.form_text_version = visitor_id, form_text_version
    opt_in.ip_address, opt_in.user_agent = proof.ip_address, proof.user_agent
    opt_in.granted_at, opt_in.revoked_at = utcnow(), None
    return subscription


def unsubscribe_push(session: Session, endpoint: str) -> bool:
    """The browser dropped the subscription (the visitor blocked notifications, or the site data was cleared)."""
    subscription = session.scalars(select(PushSubscription).where(PushSubscription.endpoint == endpoint)).first()
    if subscription is None:
        return False
    subscription.status = "unsubscribed"
    opt_in = session.scalars(select(PushOptIn).where(PushOptIn.push_subscription_id == subscription.id)).first()
    if opt_in is not None and opt_in.revoked_at is None:
        opt_in.revoked_at = utcnow()
    return True
