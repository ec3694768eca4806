"""A storefront sign-up's confirmation email leaves through the outbox, and its link records the consent."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app.models import Consent
from app.models.storefront import DoubleOptIn
from app.storefront.optin import Proof, request_sign_up
from app.tenancy import shop_context
from tests.factories import make_shop
from tests.outbox_helpers import sink, web  # noqa: F401 (fixtures)
from tests.outbox_helpers import PUBLIC_URL, work


def _sign_up(runtime) -> tuple[int, int]:
    with runtime.sessions.begin() as session:
        shop = make_shop(session, name="Magazin Ana", locale="ro", currency="RON", timezone="Europe/Bucharest",
                         settings={"quiet_hours": None})
        with shop_context(shop.id):
            row = request_sign_up(session, shop.id, email="ana@example.ro", form_id="footer", form_text_version="v3",
                                  locale="ro", visitor_id=None, proof=Proof("203.0.113.7", "Firefox"))
            return shop.id, row.id


def test_the_confirmation_email_is_sent_once_without_unsubscribe_headers(web, sink):
    runtime = web.extensions["companion"]
    shop_id, row_id = _sign_up(runtime)
    work(runtime)
    (mail,) = sink.handler.messages()
    assert mail["To"] == "ana@example.ro" and mail["Subject"] == "Confirmă abonarea la newsletterul Magazin Ana"
    assert mail["List-Unsubscribe"] is None
    with runtime.sessions() as session, shop_context(shop_id):
        assert session.get(DoubleOptIn, row_id).status == "sent"


def test_the_link_in_the_email_records_granted_consent(web, sink):
    runtime = web.extensions["companion"]
    shop_id, row_id = _sign_up(runtime)
    work(runtime)
    text = sink.handler.messages()[0].get_body(("plain",)).get_content()
    link = re.search(rf"{re.escape(PUBLIC_URL)}(/s/confirm/\S+)", text).group(1)
    assert web.test_client().get(link).status_code < 400
    with runtime.sessions() as session, shop_context(shop_id):
        states = [c.state for c in session.scalars(select(Consent).order_by(Consent.recorded_at, Consent.id))]
    assert states[-1] == "granted"
