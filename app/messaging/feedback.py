"""What comes back from recipients and providers: unsubscribes, preferences, SMS keywords, delivery status, opens, clicks."""
from __future__ import annotations

import unicodedata

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from app.messaging.links import UnsubscribeTarget
from app.messaging.send import suppress
from app.models import Consent, Customer, Message, MessagePreference, Suppression, utcnow

PREFERENCE_CHANNELS = ("email", "sms")
PREFERENCE_KINDS = ("shipping", "recovery", "promotional")  # transactional messages cannot be switched off
MARKETING_KINDS = ("recovery", "promotional")

STOP_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT",
              "REZYGNUJ", "WYPISZ", "ANULUJ", "KONIEC",  # Polish
              "DEZABONARE", "DEZABONEAZA", "OPRESTE", "RENUNT"}  # Romanian
START_WORDS = {"START", "UNSTOP", "YES", "ZAPISZ", "ABONARE"}
HELP_WORDS = {"HELP", "INFO", "POMOC", "AJUTOR"}
HELP_TEXT = {
    "pl": "{shop}: powiadomienia SMS. Aby zrezygnować, odpisz STOP. Aby wznowić, odpisz START.",
    "ro": "{shop}: notificari SMS. Pentru dezabonare raspunde STOP. Pentru reabonare raspunde START.",
    "en": "{shop}: SMS notifications. Reply STOP to unsubscribe, START to resubscribe.",
}
# Twilio's callback statuses that end a message's journey; earlier ones may arrive late and change nothing.
TWILIO_DELIVERED = {"delivered", "read"}
TWILIO_ACCEPTED = {"accepted", "scheduled", "queued", "sending", "sent"}  # Twilio holds the message
TWILIO_FAILED = {"undelivered", "failed", "canceled"}
PRIVACY_PROXIES = ("GoogleImageProxy", "YahooMailProxy", "Gmail", "via ggpht.com")


def _revoke(session: Session, shop_id: int, customer_id: int, channel: str, source: str, ip: str | None,
            user_agent: str | None) -> None:
    session.add(Consent(shop_id=shop_id, customer_id=customer_id, channel=channel, state="revoked", source=source,
                        ip_address=ip, user_agent=(user_agent or "")[:512] or None, recorded_at=utcnow()))


def current_consents(session: Session, customer_id: int) -> dict[str, str | None]:
    states: dict[str, str | None] = {}
    for channel in PREFERENCE_CHANNELS:
        states[channel] = session.execute(
            select(Consent.state).where(Consent.customer_id == customer_id, Consent.channel == channel)
            .order_by(Consent.recorded_at.desc(), Consent.id.desc()).limit(1)).scalar_one_or_none()
    return states


def unsubscribe(session: Session, target: UnsubscribeTarget, *, ip: str | None = None, user_agent: str | None = None) -> None:
    """One-click unsubscribe: revoke the customer's consent on that channel, or suppress an address we cannot tie to one.

    Repeating it changes nothing that matters: the newest row still says revoked.
    """
    if target.customer_id is not None and session.get(Customer, target.customer_id) is not None:
        states = current_consents(session, target.customer_id) if target.channel in PREFERENCE_CHANNELS else {}
        if states.get(target.channel) != "revoked":
            _revoke(session, target.shop_id, target.customer_id, target.channel, "unsubscribe_link", ip, user_agent)
    else:
        suppress(session, target.shop_id, target.channel, target.address, "unsubscribed")


def current_kind_choices(session: Session, customer_id: int) -> dict[tuple[str, str], bool]:
    """Per (channel, kind): does the customer want these messages? True unless their newest choice says no."""
    rows = session.execute(
        select(MessagePreference.channel, MessagePreference.kind, MessagePreference.wanted)
        .where(MessagePreference.customer_id == customer_id)
        .order_by(MessagePreference.recorded_at, MessagePreference.id)).all()
    choices = {(channel, kind): True for channel in PREFERENCE_CHANNELS for kind in PREFERENCE_KINDS}
    for channel, kind, wanted in rows:  # oldest first: the newest row per pair wins
        choices[(channel, kind)] = bool(wanted)
    return choices


def set_preferences(session: Session, target: UnsubscribeTarget, wanted: dict[str, bool], *, ip: str | None,
                    user_agent: str | None, form_text_version: str,
                    kinds: dict[tuple[str, str], bool] | None = None) -> None:
    """The preferences page: per channel, keep or withdraw consent (granting anew needs the sign-up's double opt-in);
    and per channel and kind of message, on or off (`kinds`, when the page showed those choices).

    Only changes are written, each as a row with the page's wording version, IP and browser as proof.
    """
    if target.customer_id is None:
        return
    now = utcnow()
    agent = (user_agent or "")[:512] or None
    states = current_consents(session, target.customer_id)
    for channel, keep in wanted.items():
        if channel in PREFERENCE_CHANNELS and not keep and states.get(channel) == "granted":
            session.add(Consent(shop_id=target.shop_id, customer_id=target.customer_id, channel=channel,
                                state="revoked", source="preferences_page", form_text_version=form_text_version,
                                ip_address=ip, user_agent=agent, recorded_at=now))
    if kinds is None:
        return
    choices = current_kind_choices(session, target.customer_id)
    for (channel, kind), want in kinds.items():
        if (channel, kind) in choices and choices[(channel, kind)] != want:
            session.add(MessagePreference(shop_id=target.shop_id, customer_id=target.customer_id, channel=channel,
                                          kind=kind, wanted=want, source="preferences_page", ip_address=ip,
                                          user_agent=agent, recorded_at=now))


def keyword_of(body: str) -> str:
    plain = unicodedata.normalize("NFKD", body or "").encode("ascii", "ignore").decode()
    return "".join(ch for ch in plain.strip().upper() if ch.isalnum())


def handle_sms_keyword(session: Session, shop_id: int, phone: str, body: str, opt_out_type: str | None = None) -> str | None:
    """STOP (and its Polish/Romanian words) suppresses the number and revokes SMS consent; START lifts the
    suppression (marketing still needs consent anew); HELP answers. Returns the kind of keyword, or None."""
    # With Advanced Opt-Out, Twilio names the keyword class itself (it may know words we do not).
    word = {"STOP": "STOP", "START": "START", "HELP": "HELP"}.get((opt_out_type or "").upper()) or keyword_of(body)
    customers = session.scalars(select(Customer).where(or_(Customer.phone == phone, Customer.phone == phone.lstrip("+")))).all()
    if word in STOP_WORDS:
        suppress(session, shop_id, "sms", phone, "sms_stop")
        for customer in customers:
            _revoke(session, shop_id, customer.id, "sms", "sms_keyword", None, None)
        return "stop"
    if word in START_WORDS:
        session.execute(delete(Suppression).where(
            Suppression.shop_id == shop_id, Suppression.channel == "sms", Suppression.address == phone,
            Suppression.reason.in_(("sms_stop", "sms_opted_out"))))
        return "start"
    if word in HELP_WORDS:
        return "help"
    return None


def apply_twilio_status(session: Session, shop_id: int, form: dict, message_id: int | None = None) -> bool:
    """Record a Twilio status callback on its message; False when it matches no message.

    The message is found by its SID, or else by the message id in the callback URL we gave Twilio: a send whose
    reply never reached us (`unknown`) has no SID on our side, and this callback is how we learn what became of it.
    """
    sid = form.get("MessageSid") or form.get("SmsSid")
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
    message = session.scalars(select(Message).where(Message.provider_message_id == sid)).first() if sid else None
    if message is None and message_id is not None:
        message = _message_named_in_callback(session, shop_id, message_id, sid, form.get("To"))
    if message is None:
        return False
    now = utcnow()
    entry = {"gate": "provider_status", "verdict": status, "detail": f"Twilio {status}", "at": now.isoformat()}
    if message.status == "unknown" and sid and status in TWILIO_ACCEPTED | TWILIO_DELIVERED:
        # Twilio has the message: the ambiguous send did leave, once.
        message.status = "sent"
        message.sent_at = message.sent_at or now
        message.provider_message_id = sid
        message.error = None
        entry["detail"] = f"Twilio {status}: the send whose outcome was unknown reached Twilio ({sid})"
    if status in TWILIO_DELIVERED and message.delivered_at is None:
        message.delivered_at = now
    elif status in TWILIO_FAILED:
        code = form.get("ErrorCode")
        if message.status == "unknown" and sid:
            message.provider_message_id = sid
        message.status = "failed"
        message.error = f"Twilio reported {status}, error {code}"
        entry["detail"] = message.error
        if code == "21610":
            suppress(session, shop_id, "sms", message.recipient, "sms_opted_out")
    message.gate_trace = [*message.gate_trace, entry]
    return True


def _message_named_in_callback(session: Session, shop_id: int, message_id: int, sid: str | None,
                               to: str | None) -> Message | None:
    """The SMS the callback URL names, if the callback is about it (same shop, same number, no other SID)."""
    message = session.get(Message, message_id)
    if message is None or message.shop_id != shop_id or message.channel != "sms":
        return None
    if message.provider_message_id not in (None, sid):
        return None
    if to and to != message.recipient:
        return None
    return message


RESOLUTIONS = ("sent", "not_sent")


class NotUnknown(ValueError):
    """Only a message whose outcome is unknown can be settled by the owner's word."""


def resolve_unknown(session: Session, message: Message, outcome: str, *, note: str | None = None,
                    resend: bool = False) -> None:
    """The shop owner's word on an ambiguous send: it reached the recipient (sent) or it did not (failed,
    or scheduled again with `resend`, when the send gates run again before it leaves)."""
    if message.status != "unknown":
        raise NotUnknown(f"message {message.id} is {message.status}, not unknown")
    if outcome not in RESOLUTIONS:
        raise ValueError(f"outcome must be one of {RESOLUTIONS}")
    now = utcnow()
    detail = f"resolved by the shop owner: {outcome.replace('_', ' ')}" + (f" ({note.strip()[:500]})" if note else "")
    entry = {"gate": "owner_resolution", "verdict": outcome, "detail": detail, "at": now.isoformat()}
    if outcome == "sent":
        message.status, message.error = "sent", None
        message.sent_at = message.sent_at or now
    elif resend:
        from app.jobs.queue import enqueue
        from app.messaging.outbox import SEND_JOB_KINDS

        message.status, message.error, message.due_at = "scheduled", None, now
        entry["detail"] += "; sent again"
        # Its own job key: the usual one (message and second) may belong to the send that just ended.
        resolutions = sum(1 for e in message.gate_trace if e.get("gate") == "owner_resolution")
        enqueue(session, SEND_JOB_KINDS[message.channel], shop_id=message.shop_id, due_at=now,
                dedupe_key=f"message:{message.shop_id}:{message.id}:owner-resend:{resolutions + 1}",
                message_id=message.id)
    else:
        message.status, message.error = "failed", detail
    message.gate_trace = [*message.gate_trace, entry]


def record_open(session: Session, message_id: int, user_agent: str | None) -> None:
    message = session.get(Message, message_id)
    if message is None:
        return
    if user_agent and any(marker in user_agent for marker in PRIVACY_PROXIES):
        # A mail provider fetched the pixel for the reader (or for nobody): an open we cannot vouch for.
        if not message.context.get("_proxy_opened_at"):
            message.context = {**message.context, "_proxy_opened_at": utcnow().isoformat()}
        return
    if message.opened_at is None:
        message.opened_at = utcnow()


def record_click(session: Session, message_id: int) -> None:
    message = session.get(Message, message_id)
    if message is not None and message.clicked_at is None:
        message.clicked_at = utcnow()
