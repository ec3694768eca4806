"""The preferences page per channel and per kind of message, and the send gate that honours the choices."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app.messaging import gates, links
from app.models import Consent, MessagePreference
from app.tenancy import shop_context
from tests.outbox_helpers import sink, web, web_runtime as runtime  # noqa: F401 (fixtures)
from tests.outbox_helpers import (CART_CONTEXT, PUBLIC_URL, SHIPPED_CONTEXT, gates_of, make_marketing_customer,
                                  message_row, schedule, work)


@pytest.fixture
def marta(runtime):
    """Consented to marketing by email only."""
    return make_marketing_customer(runtime, consent=("email",))


def _page_path(web, shop_id, customer_id) -> str:
    url = links.unsubscribe_url(web.extensions["companion"].settings,
                                links.UnsubscribeTarget(shop_id, customer_id, "email", "marta@example.pl", None))
    return url[len(PUBLIC_URL):]


def _save(web, shop_id, customer_id, **fields):
    form = {"kinds_shown": "1", **{name: "1" for name, on in fields.items() if on}}
    return web.test_client().post(_page_path(web, shop_id, customer_id) + "/preferences", data=form)


def _email(runtime, shop_id, customer_id, kind, n=1):
    template, context = ("order_shipped", SHIPPED_CONTEXT) if kind == "shipping" else ("cart_reminder", CART_CONTEXT)
    return schedule(runtime, shop_id, channel="email", kind=kind, template=template, customer_id=customer_id,
                    context=context, dedupe_parts=(kind, n)).message_id


def _checkbox(html: str, name: str) -> str:
    found = re.search(rf'<input type="checkbox" name="{name}"[^>]*>', html, re.S)
    assert found, f"no checkbox {name}"
    return found.group(0)


def test_the_page_offers_each_kind_of_message_on_each_channel(web, marta):
    shop_id, customer_id = marta
    html = web.test_client().get(_page_path(web, shop_id, customer_id)).get_data(as_text=True)
    assert "Informacje o wysyłce zamówień" in html and "Promocje i nowości" in html
    for kind in ("shipping", "recovery", "promotional"):
        assert "checked" in _checkbox(html, f"want_email_{kind}")
    # No SMS marketing consent: cart reminders and promotions by SMS are not on offer; shipping updates are.
    assert "disabled" in _checkbox(html, "want_sms_promotional")
    assert "disabled" not in _checkbox(html, "want_sms_shipping")


def test_a_customer_who_drops_promotional_email_still_gets_shipping_updates_and_cart_reminders(web, runtime, sink,
                                                                                               marta):
    shop_id, customer_id = marta
    response = _save(web, shop_id, customer_id, keep_email=True, want_email_shipping=True, want_email_recovery=True,
                     want_sms_shipping=True)
    assert response.status_code == 200
    promotion, shipping, reminder = (_email(runtime, shop_id, customer_id, kind)
                                     for kind in ("promotional", "shipping", "recovery"))
    work(runtime)
    dropped = message_row(runtime, shop_id, promotion)
    assert dropped.status == "suppressed" and gates_of(dropped)[-1] == ("preference", "block")
    assert "switched off promotional messages by email" in dropped.error
    assert message_row(runtime, shop_id, shipping).status == "sent"
    assert message_row(runtime, shop_id, reminder).status == "sent"
    assert len(sink.handler.received) == 2
    with runtime.sessions() as session, shop_context(shop_id):  # email consent itself was kept
        assert [c.state for c in session.scalars(select(Consent).where(Consent.channel == "email"))] == ["granted"]


def test_shipping_updates_can_be_switched_off_too(web, runtime, sink, marta):
    shop_id, customer_id = marta
    _save(web, shop_id, customer_id, keep_email=True, want_email_recovery=True, want_email_promotional=True)
    shipping = _email(runtime, shop_id, customer_id, "shipping")
    work(runtime)
    assert message_row(runtime, shop_id, shipping).status == "suppressed" and sink.handler.received == []


def test_a_kind_switched_back_on_is_sent_again(web, runtime, sink, marta):
    shop_id, customer_id = marta
    _save(web, shop_id, customer_id, keep_email=True, want_email_shipping=True, want_email_recovery=True,
          want_sms_shipping=True)
    _save(web, shop_id, customer_id, keep_email=True, want_email_shipping=True, want_email_recovery=True,
          want_email_promotional=True, want_sms_shipping=True)
    promotion = _email(runtime, shop_id, customer_id, "promotional")
    work(runtime)
    assert message_row(runtime, shop_id, promotion).status == "sent"
    with runtime.sessions() as session, shop_context(shop_id):
        rows = session.scalars(select(MessagePreference).order_by(MessagePreference.id)).all()
    assert [(r.channel, r.kind, r.wanted, r.source) for r in rows] == [
        ("email", "promotional", False, "preferences_page"), ("email", "promotional", True, "preferences_page")]


def test_choices_the_page_did_not_offer_are_left_alone(web, runtime, marta):
    shop_id, customer_id = marta
    # SMS marketing boxes are disabled (no consent), so the browser sends nothing for them: that is not a "no".
    _save(web, shop_id, customer_id, keep_email=True, want_email_shipping=True, want_email_recovery=True,
          want_email_promotional=True, want_sms_shipping=True)
    with runtime.sessions() as session, shop_context(shop_id):
        assert session.scalars(select(MessagePreference)).all() == []


def test_saving_the_page_without_changes_writes_nothing(web, runtime, marta):
    shop_id, customer_id = marta
    everything = {f"want_{ch}_{kind}": True for ch in ("email", "sms") for kind in ("shipping", "recovery", "promotional")}
    _save(web, shop_id, customer_id, keep_email=True, **everything)
    with runtime.sessions() as session, shop_context(shop_id):
        assert session.scalars(select(MessagePreference)).all() == []
        assert len(session.scalars(select(Consent)).all()) == 1


def test_transactional_messages_are_not_a_matter_of_preference():
    assert gates.preference_gate("transactional", "email", False).result == gates.PASS
    assert gates.preference_gate("shipping", "email", False).result == gates.BLOCK
    assert gates.preference_gate("promotional", "sms", None).result == gates.PASS
