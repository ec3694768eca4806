"""What comes back from recipients and providers: unsubscribes, preferences, SMS keywords, delivery status, opens, clicks."""
from __future__ import annotations

import unicodedata

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from app.messaging.links import UnsubscribeTarget
from app.messaging.send import suppress
from app.models import Consent, Customer, Message, Suppression, utcnow

PREFERENCE_CHANNELS = ("email", "sms")

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


def set_preferences(session: Session, target: UnsubscribeTarget, wanted: dict[str, bool], *, ip: str | None,
                    user_agent: str | None, form_text_version: str) -> None:
    """The preferences page: per channel, keep or withdraw consent (granting anew needs the sign-up's double opt-in)."""
    if target.customer_id is None:
        return
    states = current_consents(session, target.customer_id)
    for channel, keep in wanted.items():
        if channel in PREFERENCE_CHANNELS and not keep and states.get(channel) == "granted":
            session.add(Consent(shop_id=target.shop_id, customer_id=target.customer_id, channel=channel,
                                state="revoked", source="preferences_page", form_text_version=form_text_version,
                                ip_address=ip, user_agent=(user_agent or "")[:512] or None, recorded_at=utcnow()))


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


def apply_twilio_status(session: Session, shop_id: int, form: dict) -> bool:
    """Record a Twilio status callback on its message; False when no message has that SID."""
    sid = form.get("MessageSid") or form.get("SmsSid")
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
    message = session.scalars(select(Message).where(Message.provider_message_id == sid)).first() if sid else None
    if message is None:
        return False
    now = utcnow()
    entry = {"gate": "provider_status", "verdict": status, "detail": f"Twilio {status}", "at": now.isoformat()}
    if status in TWILIO_DELIVERED and message.delivered_at is None:
        message.delivered_at = now
    elif status in TWILIO_FAILED:
        code = form.get("ErrorCode")
        message.status = "failed"
        message.error = f"Twilio reported {status}, error {code}"
        entry["detail"] = message.error
        if code == "21610":
            suppress(session, shop_id, "sms", message.recipient, "sms_opted_out")
    message.gate_trace = [*message.gate_trace, entry]
    return True


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
