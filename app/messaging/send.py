"""The send job: gates again, a committed `sending` mark, one notifier call, and the outcome recorded."""
from __future__ import annotations

import datetime as dt
import email.utils
import logging
from urllib.parse import quote

from jinja2 import TemplateError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.config import Settings
from app.jobs.registry import job_kind
from app.jobs.runner import JobContext
from app.messaging import exits, gates, links
from app.messaging.outbox import SEND_JOB_KINDS, claim_for_sending, enqueue_send, higher_priority_due, recent_capped_sends
from app.messaging.providers import ChannelNotConfigured, notifier_for, sender_domain
from app.messaging.render import Brand, TemplateMissing, render_message
from app.models import Consent, Customer, DeliveryAttempt, Message, PushSubscription, Shop, Suppression, utcnow
from app.notifiers.base import ACCEPTED, FAILED_PERMANENTLY, RETRY_LATER, Envelope, SendOutcome
from app.notifiers.sms import count_segments, transliterate

log = logging.getLogger(__name__)

MAX_SEND_ATTEMPTS = 8


def send_message(ctx: JobContext, message_id: int) -> None:
    """Send one outbox message, at most once. Safe to run twice: a settled row is left alone."""
    session = ctx.session
    message = session.get(Message, message_id)
    if message is None:
        return
    now = utcnow()
    if message.status == "sending":
        _settle_lost_send(session, message, now)
        return
    if message.status != "scheduled" or message.due_at > now + dt.timedelta(seconds=1):
        return  # settled already, or moved to a later time whose own job will come
    shop = session.get(Shop, message.shop_id)
    customer = session.get(Customer, message.customer_id) if message.customer_id is not None else None

    verdicts = evaluate_gates(session, message, shop, customer, now)
    message.gate_trace = [*message.gate_trace, *(v.trace(now) for v in verdicts)]
    stop = next((v for v in verdicts if v.result != gates.PASS), None)
    if stop is not None:
        if stop.result == gates.DEFER:
            reschedule(session, message, stop.until)
        else:
            message.status = stop.status or "suppressed"
            message.error = stop.detail[:1000]
        return
    busy_until = _shop_rate_limited(session, message, ctx.settings, now)
    if busy_until is not None:
        message.gate_trace = [*message.gate_trace, gates.Verdict(
            "rate_limit", gates.DEFER, "shop's sends per minute reached", until=busy_until).trace(now)]
        reschedule(session, message, busy_until)
        return

    try:
        envelope = compose(message, shop, customer, ctx.settings, now)
        notifier = notifier_for(shop, message.channel, ctx.settings)
    except (TemplateMissing, ChannelNotConfigured, TemplateError, ValueError, LookupError, ArithmeticError) as exc:
        # The message cannot be built as it stands (a variable missing, a bad amount): no retry would help.
        message.status = "failed"
        message.error = f"{type(exc).__name__}: {exc}"[:1000]
        return

    if message.channel == "sms":
        segments = envelope.payload["segments"]
        message.context = {**message.context, "_sms": {"segments": segments, "encoding": envelope.payload["encoding"]}}
        budget = gates.sms_budget_gate(message.kind, _sms_segments_this_month(session, message, shop, now), segments,
                                       ((shop.settings or {}).get("sms") or {}).get("monthly_segment_budget"))
        message.gate_trace = [*message.gate_trace, budget.trace(now)]
        if budget.result != gates.PASS:
            message.status, message.error = budget.status, budget.detail
            return

    if not claim_for_sending(session, message.id):
        return
    message.status = "sending"  # the row already says so; keep the loaded object in step
    attempt_no = (session.execute(select(func.max(DeliveryAttempt.attempt)).where(
        DeliveryAttempt.message_id == message.id)).scalar_one() or 0) + 1
    attempt = DeliveryAttempt(shop_id=message.shop_id, message_id=message.id, attempt=attempt_no,
                              provider=notifier.provider, outcome="pending", started_at=now)
    session.add(attempt)
    # The mark must be durable before anything leaves: a worker that dies now leaves `sending` behind.
    session.commit()

    outcome = notifier.send(envelope)
    record_outcome(session, message.id, attempt.id, outcome, attempt_no)
    # Durable now, whatever becomes of this job's lease: the outcome is a fact about the world.
    session.commit()


def _settle_lost_send(session: Session, message: Message, now: dt.datetime) -> None:
    """A previous run marked the row `sending` and never came back: the provider may have the message."""
    message.status = "unknown"
    message.error = "the worker stopped during the send; the provider may or may not have the message"
    message.gate_trace = [*message.gate_trace, {"gate": "send", "verdict": "unknown", "detail": message.error,
                                                 "at": now.isoformat()}]
    session.execute(update(DeliveryAttempt).where(DeliveryAttempt.message_id == message.id,
                                                  DeliveryAttempt.outcome == "pending")
                    .values(outcome="unknown", finished_at=now, response="worker lost during the send"))


def evaluate_gates(session: Session, message: Message, shop: Shop, customer: Customer | None,
                   now: dt.datetime) -> list[gates.Verdict]:
    """Every gate in order, stopping at the first that does not pass."""
    settings = shop.settings or {}
    checks = [
        lambda: gates.exit_gate(exits.check_exits(session, message, message.context.get("_exit_conditions") or [])),
        lambda: gates.consent_gate(message.kind, message.channel, _consent_state(session, message),
                                   push_subscription_active=_push_active(session, message)),
        lambda: gates.suppression_gate(_suppressed(session, message)),
        lambda: gates.quiet_hours_gate(message.kind, now, (customer.timezone if customer and customer.timezone else None)
                                       or shop.timezone or "UTC", _quiet_window(settings)),
        lambda: _cap_verdict(session, message, settings, now),
    ]
    verdicts = []
    for check in checks:
        verdict = check()
        verdicts.append(verdict)
        if verdict.result != gates.PASS:
            break
    return verdicts


def _consent_state(session: Session, message: Message) -> str | None:
    if message.customer_id is None:
        return None
    return session.execute(
        select(Consent.state).where(Consent.customer_id == message.customer_id, Consent.channel == message.channel)
        .order_by(Consent.recorded_at.desc(), Consent.id.desc()).limit(1)
    ).scalar_one_or_none()


def _push_active(session: Session, message: Message) -> bool | None:
    if message.channel != "push":
        return None
    subscription = session.get(PushSubscription, (message.context.get("_push") or {}).get("subscription_id"))
    return subscription is not None and subscription.status == "active"


def _suppressed(session: Session, message: Message) -> str | None:
    return session.execute(
        select(Suppression.reason).where(Suppression.channel == message.channel, Suppression.address == message.recipient)
    ).scalars().first()


def _quiet_window(shop_settings: dict) -> tuple[str, str] | None:
    quiet = shop_settings.get("quiet_hours", {"start": gates.DEFAULT_QUIET_HOURS[0], "end": gates.DEFAULT_QUIET_HOURS[1]})
    if not quiet:
        return None
    return quiet["start"], quiet["end"]


def _cap_verdict(session: Session, message: Message, shop_settings: dict, now: dt.datetime) -> gates.Verdict:
    caps = shop_settings.get("frequency_cap", {})  # None switches the cap off; a missing channel takes the default
    cap = caps.get(message.channel, gates.DEFAULT_CAPS.get(message.channel)) if caps is not None else None
    if isinstance(cap, dict):
        cap = (int(cap["max"]), float(cap["hours"]))
    if message.kind == "transactional" or not cap:
        return gates.frequency_cap_gate(message.kind, now, [], 0, cap)
    since = now - dt.timedelta(hours=cap[1])
    return gates.frequency_cap_gate(message.kind, now, recent_capped_sends(session, message, since),
                                    higher_priority_due(session, message, now), cap)


def _shop_rate_limited(session: Session, message: Message, settings: Settings, now: dt.datetime) -> dt.datetime | None:
    """Across all workers: this send counted against the shop's per-minute allowance on its channel.

    A fixed-window counter row (the storefront's rate-limit table): one upsert, whatever the volume.
    """
    from app.storefront.ratelimit import WINDOW_SECONDS, count_hits

    key = f"messages:{message.shop_id}:{message.channel}"
    count = count_hits(session.connection(), [key], now=now.timestamp())[key]
    if count <= settings.messaging.shop_sends_per_minute:
        return None
    next_window = (int(now.timestamp()) // WINDOW_SECONDS + 1) * WINDOW_SECONDS
    return dt.datetime.fromtimestamp(next_window, tz=dt.timezone.utc)


def _sms_segments_this_month(session: Session, message: Message, shop: Shop, now: dt.datetime) -> int:
    """Segments of the shop's SMS that left (or may have) since the 1st of this month on the shop's clock."""
    from zoneinfo import ZoneInfo

    local = now.astimezone(ZoneInfo(shop.timezone or "UTC"))
    month_start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0).astimezone(dt.timezone.utc)
    contexts = session.execute(
        select(Message.context).where(Message.channel == "sms", Message.id != message.id,
                                      Message.status.in_(("sent", "sending", "unknown")),
                                      func.coalesce(Message.sent_at, Message.due_at) >= month_start)
    ).scalars()
    return sum(int(((context or {}).get("_sms") or {}).get("segments") or 1) for context in contexts)


def reschedule(session: Session, message: Message, until: dt.datetime) -> None:
    message.status = "scheduled"
    message.due_at = until
    enqueue_send(session, message.shop_id, message.id, message.channel, until)


def compose(message: Message, shop: Shop, customer: Customer | None, settings: Settings, now: dt.datetime) -> Envelope:
    """Render the message for its channel and wrap it with the headers and payload the notifier needs."""
    marketing = message.kind in gates.MARKETING_KINDS
    variables = {k: v for k, v in (message.context or {}).items() if not k.startswith("_")}
    variables.setdefault("first_name", customer.first_name if customer else "")
    unsubscribe = links.unsubscribe_url(settings, links.UnsubscribeTarget(
        message.shop_id, message.customer_id, message.channel, message.recipient, message.id)) if marketing else None
    tracked = message.channel == "email"
    rendered = render_message(
        message.template, message.locale, variables, brand=Brand.from_shop(shop),
        timezone=(customer.timezone if customer and customer.timezone else None) or shop.timezone or "UTC",
        link=(lambda url: links.click_url(settings, message.shop_id, message.id, url)) if tracked else None,
        open_pixel_url=links.open_pixel_url(settings, message.shop_id, message.id) if tracked else None,
        unsubscribe_url=unsubscribe,
    )
    key = f"message:{message.shop_id}:{message.id}"
    if message.channel == "email":
        domain = sender_domain(shop, settings)
        headers = {
            "Message-ID": f"<m{message.id}.s{message.shop_id}@{domain}>",
            "Date": email.utils.format_datetime(now),
        }
        if marketing:
            token = links.unsubscribe_token(settings, links.UnsubscribeTarget(
                message.shop_id, message.customer_id, message.channel, message.recipient, message.id))
            mailto = f"mailto:unsubscribe@{domain}?subject={quote('unsubscribe ' + token)}"
            headers["List-Unsubscribe"] = f"<{unsubscribe}>, <{mailto}>"
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        return Envelope("email", message.recipient, key, subject=rendered.subject, text=rendered.text,
                        html=rendered.html, headers=headers)
    if message.channel == "sms":
        sms_settings = (shop.settings or {}).get("sms") or {}
        text = rendered.sms
        if marketing:
            # One-way senders (alphanumeric IDs, all of Romania) cannot receive STOP: the link is the way out.
            text = f"{text} STOP: {unsubscribe}"
        if sms_settings.get("transliterate"):
            text = transliterate(text)
        segments = count_segments(text)
        return Envelope("sms", message.recipient, key, text=text, payload={
            "status_callback": f"{settings.public_url}/m/twilio/status/{message.shop_id}",
            "segments": segments.segments, "encoding": segments.encoding})
    push = message.context.get("_push") or {}
    subscription = _subscription_info(message, push)
    data = {"title": rendered.push_title, "body": rendered.push_body}
    if variables.get("url"):
        data["url"] = variables["url"]
    return Envelope("push", message.recipient, key, subject=rendered.push_title, text=rendered.push_body, payload={
        "subscription": subscription, "ttl": push.get("ttl", 86_400), "urgency": push.get("urgency", "normal"),
        "topic": push.get("topic"), "data": data})


def _subscription_info(message: Message, push: dict) -> dict:
    from sqlalchemy.orm import object_session

    subscription = object_session(message).get(PushSubscription, push.get("subscription_id"))
    if subscription is None:
        raise ValueError("the push subscription is gone")
    return {"endpoint": subscription.endpoint, "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth}}


def record_outcome(session: Session, message_id: int, attempt_id: int, outcome: SendOutcome, attempt_no: int) -> None:
    """Write what the provider did: the attempt row, the message status, and any suppression it implies."""
    now = utcnow()
    message = session.get(Message, message_id)
    attempt = session.get(DeliveryAttempt, attempt_id)
    attempt.outcome = "failed" if outcome.status == FAILED_PERMANENTLY else outcome.status  # the column holds 16
    attempt.response = (outcome.detail or "")[:4000]
    attempt.finished_at = now
    trace = {"gate": "send", "verdict": outcome.status, "detail": (outcome.detail or "")[:500], "at": now.isoformat()}
    if outcome.status == ACCEPTED:
        message.status = "sent"
        message.sent_at = now
        message.provider_message_id = outcome.provider_message_id
        message.error = None
    elif outcome.status == RETRY_LATER:
        if attempt_no >= MAX_SEND_ATTEMPTS:
            message.status = "failed"
            message.error = f"gave up after {attempt_no} attempts: {outcome.detail}"[:1000]
        else:
            until = now + dt.timedelta(seconds=outcome.retry_after or 60)
            trace["until"] = until.isoformat()
            message.status = "scheduled"
            message.due_at = until
            message.error = outcome.detail[:1000]
            enqueue_send(session, message.shop_id, message.id, message.channel, until)
    elif outcome.status == FAILED_PERMANENTLY:
        message.status = "failed"
        message.error = outcome.detail[:1000]
        if outcome.suppress:
            suppress(session, message.shop_id, message.channel, message.recipient, _suppression_reason(message, outcome))
        if outcome.subscription_gone:
            _forget_subscription(session, message, outcome.detail)
    else:
        message.status = "unknown"
        message.error = outcome.detail[:1000]
    message.gate_trace = [*message.gate_trace, trace]


def _suppression_reason(message: Message, outcome: SendOutcome) -> str:
    if message.channel == "sms" and "21610" in outcome.detail:
        return "sms_opted_out"
    return "hard_bounce" if message.channel == "email" else "provider_refused"


def suppress(session: Session, shop_id: int, channel: str, address: str, reason: str) -> None:
    """Add the address to the shop's suppression list (once)."""
    exists = session.execute(select(Suppression.id).where(
        Suppression.shop_id == shop_id, Suppression.channel == channel, Suppression.address == address)).first()
    if exists is None:
        session.add(Suppression(shop_id=shop_id, channel=channel, address=address, reason=reason[:64]))
        session.flush()


def _forget_subscription(session: Session, message: Message, detail: str) -> None:
    subscription = session.get(PushSubscription, (message.context.get("_push") or {}).get("subscription_id"))
    if subscription is not None:
        session.delete(subscription)


# The generic name the design uses; rows enqueued under it run the same function, paced by nothing but the shop's share.
job_kind("messages.send", max_attempts=5, lease_seconds=120)(send_message)
for _channel, _kind in SEND_JOB_KINDS.items():
    # One kind per provider so each gets its own pacing; MESSAGES_PER_SHOP_PER_MINUTE adds the per-shop share.
    job_kind(_kind, max_attempts=5, lease_seconds=120, **({"rate_per_second": 50.0} if _channel == "sms" else {}))(send_message)
