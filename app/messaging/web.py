"""Public messaging endpoints (`/m/...`): unsubscribe and preferences, open pixel, click redirect, Twilio callbacks.

No login anywhere: each link carries a signed token that names exactly one customer and channel, or one message.
Views parse and check; app.messaging.feedback decides.
"""
from __future__ import annotations

import base64

from flask import Blueprint, Response, abort, current_app, redirect, render_template_string, request
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from app import db
from app.messaging import feedback, links
from app.models import Customer, Shop
from app.notifiers.sms import InvalidPhoneNumber, to_e164
from app.messaging.outbox import shop_region
from app.tenancy import shop_context

messaging_public = Blueprint("messaging_public", __name__, url_prefix="/m")

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
PREFERENCES_TEXT_VERSION = "preferences-2026-11"

WORDS = {
    "pl": {"title": "Ustawienia wiadomości", "unsubscribe": "Wypisz mnie z wiadomości {channel}",
           "done": "Wypisano. Nie wyślemy już wiadomości marketingowych kanałem {channel}.",
           "keep": "Chcę nadal otrzymywać", "save": "Zapisz", "email": "e-mail", "sms": "SMS", "push": "push",
           "saved": "Zapisano ustawienia.", "kinds": "Co chcesz otrzymywać",
           "shipping": "Informacje o wysyłce zamówień", "recovery": "Przypomnienia o porzuconym koszyku",
           "promotional": "Promocje i nowości"},
    "ro": {"title": "Preferințe mesaje", "unsubscribe": "Dezabonează-mă de la mesajele {channel}",
           "done": "Te-ai dezabonat. Nu vei mai primi mesaje de marketing prin {channel}.",
           "keep": "Vreau să primesc în continuare", "save": "Salvează", "email": "e-mail", "sms": "SMS",
           "push": "push", "saved": "Preferințele au fost salvate.", "kinds": "Ce vrei să primești",
           "shipping": "Informații despre livrarea comenzilor", "recovery": "Mementouri pentru coșul abandonat",
           "promotional": "Promoții și noutăți"},
    "en": {"title": "Message preferences", "unsubscribe": "Unsubscribe me from {channel} messages",
           "done": "You are unsubscribed. No more marketing messages by {channel}.",
           "keep": "I still want to receive", "save": "Save", "email": "email", "sms": "SMS", "push": "push",
           "saved": "Your preferences are saved.", "kinds": "What you want to receive",
           "shipping": "Order shipping updates", "recovery": "Reminders about a cart you left",
           "promotional": "Promotions and news"},
}

PAGE = """<!DOCTYPE html>
<html lang="{{ locale }}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{{ w.title }} · {{ shop_name }}</title></head>
<body style="font-family: Arial, sans-serif; max-width: 480px; margin: 40px auto; padding: 0 16px;">
<h1 style="font-size: 20px;">{{ shop_name }}</h1>
{% if notice %}<p role="status"><b>{{ notice }}</b></p>{% endif %}
{% if not done %}
<form method="post" action="{{ action }}">
  <input type="hidden" name="List-Unsubscribe" value="One-Click">
  <button type="submit">{{ w.unsubscribe.format(channel=w[channel]) }}</button>
</form>
{% endif %}
{% if states %}
<h2 style="font-size: 16px;">{{ w.title }}</h2>
<form method="post" action="{{ action }}/preferences">
  <input type="hidden" name="kinds_shown" value="1">
  {% for ch, state in states.items() %}
  <fieldset style="margin: 0 0 16px; border: 1px solid #ddd;">
  <legend>{{ w[ch] }}</legend>
  <p><label><input type="checkbox" name="keep_{{ ch }}" value="1" {% if state == "granted" %}checked{% else %}disabled{% endif %}>
     {{ w.keep }}: {{ w[ch] }}</label></p>
  <p>{{ w.kinds }}:</p>
  {% for kind in kinds %}
  <p><label><input type="checkbox" name="want_{{ ch }}_{{ kind }}" value="1"
     {% if choices[(ch, kind)] %}checked{% endif %} {% if not choosable(ch, kind) %}disabled{% endif %}>
     {{ w[kind] }}</label></p>
  {% endfor %}
  </fieldset>
  {% endfor %}
  <button type="submit">{{ w.save }}</button>
</form>
{% endif %}
</body></html>"""


def _settings():
    return current_app.extensions["companion"].settings


def _target(token: str) -> links.UnsubscribeTarget:
    try:
        return links.read_unsubscribe_token(_settings(), token)
    except links.InvalidLink:
        abort(404, description="this link is not valid")


def _page(target: links.UnsubscribeTarget, token: str, *, notice: str | None = None, done: bool = False):
    session = db()
    shop = session.get(Shop, target.shop_id)
    if shop is None:
        abort(404, description="this link is not valid")
    customer = session.get(Customer, target.customer_id) if target.customer_id is not None else None
    locale = (customer.locale if customer and customer.locale else None) or shop.locale or "en"
    locale = locale if locale in WORDS else "en"
    states = feedback.current_consents(session, customer.id) if customer else {}
    choices = feedback.current_kind_choices(session, customer.id) if customer else {}
    html = render_template_string(PAGE, locale=locale, w=WORDS[locale], shop_name=shop.name or shop.domain,
                                  channel=target.channel, action=f"/m/u/{token}", states=states, notice=notice, done=done,
                                  kinds=feedback.PREFERENCE_KINDS, choices=choices,
                                  choosable=lambda ch, kind: _choosable(states, ch, kind))
    return Response(html, 200, {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store",
                                "Referrer-Policy": "no-referrer"})


@messaging_public.get("/u/<token>")
def preferences_page(token: str):
    """A GET never unsubscribes: mail scanners open links. It shows the page with the button."""
    target = _target(token)
    with shop_context(target.shop_id):
        return _page(target, token)


@messaging_public.post("/u/<token>")
def one_click_unsubscribe(token: str):
    """RFC 8058: a POST to the signed URL unsubscribes at once, without login, redirect or confirmation."""
    target = _target(token)
    with shop_context(target.shop_id):
        session = db()
        feedback.unsubscribe(session, target, ip=request.remote_addr, user_agent=request.headers.get("User-Agent"))
        session.commit()
        shop = session.get(Shop, target.shop_id)
        customer = session.get(Customer, target.customer_id) if target.customer_id is not None else None
        locale = (customer.locale if customer and customer.locale else None) or (shop.locale if shop else "en")
        words = WORDS.get(locale, WORDS["en"])
        return _page(target, token, notice=words["done"].format(channel=words.get(target.channel, target.channel)),
                     done=True)


def _choosable(states: dict, channel: str, kind: str) -> bool:
    """Marketing kinds are offered only on a channel the customer consented to; shipping updates always."""
    return kind not in feedback.MARKETING_KINDS or states.get(channel) == "granted"


@messaging_public.post("/u/<token>/preferences")
def save_preferences(token: str):
    target = _target(token)
    with shop_context(target.shop_id):
        session = db()
        wanted = {channel: request.form.get(f"keep_{channel}") == "1" for channel in feedback.PREFERENCE_CHANNELS}
        kinds = None
        if request.form.get("kinds_shown") == "1" and target.customer_id is not None:
            # A disabled checkbox is not sent at all: only the choices the page offered are read.
            states = feedback.current_consents(session, target.customer_id)
            kinds = {(channel, kind): request.form.get(f"want_{channel}_{kind}") == "1"
                     for channel in feedback.PREFERENCE_CHANNELS for kind in feedback.PREFERENCE_KINDS
                     if _choosable(states, channel, kind)}
        feedback.set_preferences(session, target, wanted, ip=request.remote_addr,
                                 user_agent=request.headers.get("User-Agent"), form_text_version=PREFERENCES_TEXT_VERSION,
                                 kinds=kinds)
        session.commit()
        shop = session.get(Shop, target.shop_id)
        return _page(target, token, notice=WORDS.get(shop.locale if shop else "en", WORDS["en"])["saved"])


@messaging_public.get("/o/<token>.gif")
def open_pixel(token: str):
    try:
        shop_id, message_id = links.read_open_token(_settings(), token)
    except links.InvalidLink:
        shop_id = None
    if shop_id is not None:
        with shop_context(shop_id):
            session = db()
            feedback.record_open(session, message_id, request.headers.get("User-Agent"))
            session.commit()
    return Response(PIXEL, 200, {"Content-Type": "image/gif", "Cache-Control": "no-store, private"})


@messaging_public.get("/c/<token>")
def click(token: str):
    """Redirects only to the URL inside the signature; anything else is refused, never followed."""
    try:
        shop_id, message_id, url = links.read_click_token(_settings(), token)
    except links.InvalidLink:
        abort(404, description="this link is not valid")
    with shop_context(shop_id):
        session = db()
        feedback.record_click(session, message_id)
        session.commit()
    return redirect(url, code=302)


def _verified_twilio_form() -> dict:
    """The callback's form, once X-Twilio-Signature proves Twilio signed exactly this URL and these fields."""
    token = _settings().messaging.twilio_auth_token
    if not token:
        abort(404)
    # Twilio signs the URL it was given, which is our public one, not whatever a proxy hands Flask.
    url = _settings().public_url + request.path
    if request.query_string:
        url += "?" + request.query_string.decode()
    form = request.form.to_dict(flat=True)
    if not RequestValidator(token).validate(url, form, request.headers.get("X-Twilio-Signature", "")):
        abort(403, description="signature does not match")
    return form


@messaging_public.post("/twilio/status/<int:shop_id>")
@messaging_public.post("/twilio/status/<int:shop_id>/<int:message_id>")
def twilio_status(shop_id: int, message_id: int | None = None):
    """Delivery status. The URL names the message (we set it per send), so a send whose reply we never got
    (`unknown`) is settled by Twilio's word; the signature covers the URL, so the id cannot be swapped."""
    form = _verified_twilio_form()
    with shop_context(shop_id):
        session = db()
        feedback.apply_twilio_status(session, shop_id, form, message_id)
        session.commit()
    return Response("", 204)


@messaging_public.post("/twilio/inbound/<int:shop_id>")
def twilio_inbound(shop_id: int):
    form = _verified_twilio_form()
    reply = MessagingResponse()
    with shop_context(shop_id):
        session = db()
        shop = session.get(Shop, shop_id)
        if shop is None:
            abort(404)
        try:
            phone = to_e164(form.get("From", ""), shop_region(shop))
        except InvalidPhoneNumber:
            return Response(str(reply), 200, {"Content-Type": "text/xml"})
        keyword = feedback.handle_sms_keyword(session, shop_id, phone, form.get("Body", ""), form.get("OptOutType"))
        session.commit()
        if keyword == "help":
            text = feedback.HELP_TEXT.get(shop.locale, feedback.HELP_TEXT["en"]).format(shop=shop.name or shop.domain)
            reply.message(text)
    return Response(str(reply), 200, {"Content-Type": "text/xml"})
