"""The one door from flows to the outbox: write the message row once, then ask for it to be sent.

The outbox (app.messaging.outbox) belongs to another part of the service; if its entry point changes,
this is the only function to re-point. Without it (an older checkout) the row is written here directly
and the `messages.send` job is enqueued if some module registered it.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.jobs import registry
from app.jobs.queue import enqueue
from app.models import Message, PushSubscription, utcnow

FALLBACK_SEND_JOB = "messages.send"


@dataclass(frozen=True)
class Submitted:
    message_id: int
    created: bool  # False: a message with this dedupe key was already in the outbox


class Refused(ValueError):
    """The outbox will not take the message (no address for the channel, no push subscription...)."""


def submit_message(session: Session, *, shop_id: int, channel: str, kind: str, recipient: str | None, template: str,
                   locale: str, context: dict, dedupe_key: str, customer_id: int | None = None,
                   flow_run_id: int | None = None, due_at: dt.datetime | None = None, gate_trace: list | None = None,
                   exit_conditions: list[dict] | None = None) -> Submitted:
    """Put a message in the outbox in the caller's transaction; a repeat with the same `dedupe_key` is a no-op.

    `exit_conditions` ({"name", "args"}) are re-checked by the outbox right before the send.
    Raises Refused when the message cannot be addressed.
    """
    try:
        from app.messaging.outbox import MessageRefused, schedule_message
    except ImportError:  # pragma: no cover - the outbox is not in this checkout
        return _write_row(session, shop_id=shop_id, channel=channel, kind=kind, recipient=recipient, template=template,
                          locale=locale, context=context, dedupe_key=dedupe_key, customer_id=customer_id,
                          flow_run_id=flow_run_id, due_at=due_at, gate_trace=gate_trace)
    push_subscription_id = None
    if channel == "push":
        push_subscription_id = session.scalars(select(PushSubscription.id).where(
            PushSubscription.shop_id == shop_id, PushSubscription.customer_id == customer_id,
            PushSubscription.status == "active").order_by(PushSubscription.id.desc()).limit(1)).first()
        if push_subscription_id is None:
            raise Refused("the customer has no active push subscription")
        recipient = None
    try:
        scheduled = schedule_message(
            session, shop_id=shop_id, channel=channel, kind=kind, template=template, recipient=recipient,
            customer_id=customer_id, push_subscription_id=push_subscription_id, locale=locale, context=context,
            due_at=due_at, dedupe_key=dedupe_key, flow_run_id=flow_run_id, exit_conditions=exit_conditions or None)
    except MessageRefused as exc:
        raise Refused(str(exc)) from None
    if scheduled.created and gate_trace:
        session.execute(update(Message).where(Message.shop_id == shop_id, Message.id == scheduled.message_id)
                        .values(gate_trace=list(gate_trace)).execution_options(synchronize_session=False))
    return Submitted(scheduled.message_id, scheduled.created)


def _write_row(session: Session, *, shop_id: int, channel: str, kind: str, recipient: str | None, template: str,
               locale: str, context: dict, dedupe_key: str, customer_id: int | None, flow_run_id: int | None,
               due_at: dt.datetime | None, gate_trace: list | None) -> Submitted:
    if not recipient:
        raise Refused(f"no {channel} address")
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    now = utcnow()
    message_id = session.execute(dialect_insert(Message.__table__).values(
        shop_id=shop_id, channel=channel, kind=kind, recipient=recipient, customer_id=customer_id,
        flow_run_id=flow_run_id, template=template, locale=locale, context=context, dedupe_key=dedupe_key,
        status="scheduled", due_at=due_at or now, gate_trace=gate_trace or [], created_at=now,
    ).on_conflict_do_nothing(index_elements=["shop_id", "dedupe_key"]).returning(Message.__table__.c.id)).scalar_one_or_none()
    if message_id is None:
        existing = session.scalars(select(Message.id).where(Message.shop_id == shop_id, Message.dedupe_key == dedupe_key)).one()
        return Submitted(existing, False)
    if FALLBACK_SEND_JOB in registry.all_kinds():
        enqueue(session, FALLBACK_SEND_JOB, shop_id=shop_id, due_at=due_at or now,
                dedupe_key=f"{FALLBACK_SEND_JOB}:{shop_id}:{message_id}", message_id=message_id)
    return Submitted(message_id, True)
