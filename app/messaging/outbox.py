"""The outbox: a message is a row before it is anything else; sending it is a job; every attempt is a row.

`schedule_message` writes the row (a deterministic dedupe key under a unique constraint) and its send job in
the caller's transaction. The send job re-runs the gates, records their verdicts in the row's gate trace,
marks the row `sending` in a committed step of its own, calls the channel's notifier, and records the outcome.
A row found still `sending` belongs to a worker that died mid-send: it becomes `unknown`, never sent again.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.jobs.queue import enqueue
from app.messaging import exits
from app.messaging.gates import KINDS, PRIORITY
from app.models import Customer, Message, PushSubscription, Shop, utcnow
from app.notifiers.sms import InvalidPhoneNumber, to_e164

CHANNELS = ("email", "sms", "push")
SEND_JOB_KINDS = {"email": "messages.send_email", "sms": "messages.send_sms", "push": "messages.send_push"}
FINAL_STATUSES = ("sent", "failed", "unknown", "suppressed", "cancelled")
PUSH_URGENCY = {"transactional": "high", "shipping": "normal", "recovery": "normal", "promotional": "low"}
PUSH_TTL = {"transactional": 86_400, "shipping": 86_400, "recovery": 86_400, "promotional": 3_600}

messages_table = Message.__table__


class MessageRefused(ValueError):
    """The message cannot be scheduled as asked (unknown channel or kind, no address for the customer)."""


@dataclass(frozen=True)
class ScheduledMessage:
    message_id: int
    created: bool  # False when a message with the same dedupe key already existed
    dedupe_key: str


def shop_region(shop: Shop) -> str:
    """The country national phone numbers are read in: the shop's setting, else its currency or locale."""
    country = (shop.settings or {}).get("country")
    if country:
        return str(country).upper()
    return {"PLN": "PL", "RON": "RO"}.get(shop.currency) or {"pl": "PL", "ro": "RO"}.get(shop.locale) or "PL"


def dedupe_key_for(shop_id: int, channel: str, recipient: str, template: str, parts: tuple | list) -> str:
    """The same shop, recipient, template and parts (flow, step, cart or order version) give the same key."""
    material = json.dumps([shop_id, channel, recipient, template, [str(p) for p in parts]], separators=(",", ":"))
    return f"{template[:60]}:{hashlib.sha256(material.encode()).hexdigest()[:48]}"


def schedule_message(
    session: Session,
    *,
    shop_id: int,
    channel: str,
    kind: str,
    template: str,
    recipient: str | None = None,
    customer_id: int | None = None,
    push_subscription_id: int | None = None,
    locale: str | None = None,
    context: dict[str, Any] | None = None,
    due_at: dt.datetime | None = None,
    dedupe_parts: tuple | list = (),
    dedupe_key: str | None = None,
    flow_run_id: int | None = None,
    exit_conditions: list[dict] | None = None,
    push_topic: str | None = None,
) -> ScheduledMessage:
    """Write a message row and its send job in the caller's transaction; a repeat with the same key is a no-op.

    `exit_conditions` are `{"name": ..., "args": {...}}` checked right before the send (see app.messaging.exits).
    `context` holds the template's variables as plain JSON (amounts as strings, times as ISO 8601 with zone).
    """
    if channel not in CHANNELS:
        raise MessageRefused(f"channel must be one of {CHANNELS}")
    if kind not in KINDS:
        raise MessageRefused(f"kind must be one of {KINDS}")
    try:
        exits.validate(exit_conditions or [])
    except exits.UnknownExitCondition as exc:
        raise MessageRefused(str(exc)) from None
    shop = session.get(Shop, shop_id)
    customer = session.get(Customer, customer_id) if customer_id is not None else None
    recipient, extra = _recipient(session, shop, channel, recipient, customer, push_subscription_id, kind, push_topic)
    locale = locale or (customer.locale if customer and customer.locale else None) or shop.locale or "en"
    stored_context = {**(context or {}), **extra}
    if exit_conditions:
        stored_context["_exit_conditions"] = exit_conditions
    key = dedupe_key or dedupe_key_for(shop_id, channel, recipient, template, dedupe_parts)
    due_at = due_at or utcnow()
    values = dict(shop_id=shop_id, channel=channel, kind=kind, recipient=recipient, customer_id=customer_id,
                  flow_run_id=flow_run_id, template=template, locale=locale[:5], context=stored_context,
                  dedupe_key=key, status="scheduled", due_at=due_at, gate_trace=[], created_at=utcnow())
    message_id = session.execute(
        _insert_ignoring_duplicates(session).values(**values).returning(messages_table.c.id)
    ).scalar_one_or_none()
    if message_id is None:
        existing = session.execute(
            select(messages_table.c.id).where(messages_table.c.shop_id == shop_id, messages_table.c.dedupe_key == key)
        ).scalar_one()
        return ScheduledMessage(existing, False, key)
    enqueue_send(session, shop_id, message_id, channel, due_at)
    return ScheduledMessage(message_id, True, key)


def _insert_ignoring_duplicates(session: Session):
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return dialect_insert(messages_table).on_conflict_do_nothing(index_elements=["shop_id", "dedupe_key"])


def _recipient(session, shop, channel, recipient, customer, push_subscription_id, kind, push_topic):
    if channel == "email":
        address = recipient or (customer.email if customer else None)
        if not address or "@" not in address:
            raise MessageRefused("no email address for this message")
        return address.strip().lower(), {}
    if channel == "sms":
        phone = recipient or (customer.phone if customer else None)
        if not phone:
            raise MessageRefused("no phone number for this message")
        try:
            return to_e164(phone, shop_region(shop)), {}
        except InvalidPhoneNumber as exc:
            raise MessageRefused(f"cannot send an SMS to {phone!r}: {exc}") from None
    if push_subscription_id is None:
        raise MessageRefused("a push message needs push_subscription_id")
    subscription = session.get(PushSubscription, push_subscription_id)
    if subscription is None:
        raise MessageRefused(f"no push subscription {push_subscription_id}")
    push = {"subscription_id": subscription.id, "ttl": PUSH_TTL[kind], "urgency": PUSH_URGENCY[kind]}
    if push_topic:
        push["topic"] = push_topic
    return subscription.endpoint, {"_push": push}


def enqueue_send(session: Session, shop_id: int, message_id: int, channel: str, due_at: dt.datetime) -> int | None:
    """The send job for a message at `due_at`; one job per message and due time, however often asked."""
    stamp = int(due_at.timestamp())
    return enqueue(session, SEND_JOB_KINDS[channel], shop_id=shop_id, due_at=due_at,
                   dedupe_key=f"message:{shop_id}:{message_id}:{stamp}", message_id=message_id)


def cancel_message(session: Session, message_id: int, reason: str) -> bool:
    """Stop a message that has not started sending; False when it already left (or is leaving)."""
    now = utcnow()
    message = session.get(Message, message_id)
    if message is None or message.status != "scheduled":
        return False
    message.status = "cancelled"
    message.error = reason[:1000]
    message.gate_trace = [*message.gate_trace, {"gate": "cancelled", "verdict": "block", "detail": reason,
                                                 "at": now.isoformat()}]
    return True


def recent_capped_sends(session: Session, message: Message, since: dt.datetime) -> list[dt.datetime]:
    """When this recipient got capped (non-transactional) messages on this channel since `since`."""
    same_person = (Message.customer_id == message.customer_id) if message.customer_id is not None \
        else (Message.recipient == message.recipient)
    when = func.coalesce(Message.sent_at, Message.due_at)
    rows = session.execute(
        select(when).where(Message.channel == message.channel, same_person, Message.id != message.id,
                           Message.kind != "transactional", Message.status.in_(("sent", "sending", "unknown")),
                           when > since)
    ).scalars().all()
    return [row if row.tzinfo else row.replace(tzinfo=dt.timezone.utc) for row in rows]


def higher_priority_due(session: Session, message: Message, now: dt.datetime) -> int:
    """Capped messages for the same person and channel, due now, that outrank this one."""
    higher = [kind for kind, rank in PRIORITY.items() if 0 < rank < PRIORITY[message.kind]]
    if not higher:
        return 0
    same_person = (Message.customer_id == message.customer_id) if message.customer_id is not None \
        else (Message.recipient == message.recipient)
    return session.execute(
        select(func.count()).select_from(Message).where(
            Message.channel == message.channel, same_person, Message.id != message.id, Message.status == "scheduled",
            Message.kind.in_(higher), Message.due_at <= now)
    ).scalar_one()
