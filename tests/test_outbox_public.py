"""The public messaging endpoints: one-click unsubscribe, preferences, signed links, Twilio callbacks and keywords."""
from __future__ import annotations

import base64
import json

import pytest
from itsdangerous import URLSafeSerializer
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from app import create_app
from app.messaging import links
from app.models import Consent, Message, Suppression
from app.tenancy import shop_context
from tests.outbox_helpers import CART_CONTEXT, PUBLIC_URL, make_marketing_customer, provider_env, schedule

TWILIO_TOKEN = "twilio-token"


@pytest.fixture
def web(make_settings):
    application = create_app(make_settings(**provider_env(), TWILIO_ACCOUNT_SID="AC" + "1" * 32,
                                           TWILIO_AUTH_TOKEN=TWILIO_TOKEN, TWILIO_FROM_NUMBER="+48500000000"))
    yield application
    application.extensions["companion"].close()


@pytest.fixture
def runtime_of_web(web):
    return web.extensions["companion"]


@pytest.fixture
def marta(runtime_of_web):
    return make_marketing_customer(runtime_of_web, consent=("email", "sms"))


def _path(url: str) -> str:
    return url[len(PUBLIC_URL):]


def _unsubscribe_path(web, shop_id, customer_id, channel="email", address="marta@example.pl") -> str:
    settings = web.extensions["companion"].settings
    return _path(links.unsubscribe_url(settings, links.UnsubscribeTarget(shop_id, customer_id, channel, address, None)))


def _consent_rows(runtime, shop_id, customer_id, channel="email") -> list[str]:
    with runtime.sessions() as session, shop_context(shop_id):
        return [c.state for c in session.scalars(select(Consent).where(
            Consent.customer_id == customer_id, Consent.channel == channel).order_by(Consent.recorded_at, Consent.id))]


def test_get_shows_the_preferences_page_and_unsubscribes_nobody(web, runtime_of_web, marta):
    shop_id, customer_id = marta
    response = web.test_client().get(_unsubscribe_path(web, shop_id, customer_id))
    assert response.status_code == 200 and "Wypisz mnie z wiadomości e-mail" in response.get_data(as_text=True)
    assert _consent_rows(runtime_of_web, shop_id, customer_id) == ["granted"]


@pytest.mark.parametrize("as_multipart", [True, False])
def test_one_click_post_unsubscribes_without_redirect(web, runtime_of_web, marta, as_multipart):
    shop_id, customer_id = marta
    response = web.test_client().post(_unsubscribe_path(web, shop_id, customer_id),
                                      data={"List-Unsubscribe": "One-Click"},
                                      content_type="multipart/form-data" if as_multipart else None)
    assert response.status_code == 200 and "Location" not in response.headers
    assert _consent_rows(runtime_of_web, shop_id, customer_id) == ["granted", "revoked"]


def test_repeating_the_one_click_post_changes_nothing_more(web, runtime_of_web, marta):
    shop_id, customer_id = marta
    client, path = web.test_client(), _unsubscribe_path(web, shop_id, customer_id)
    assert client.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert client.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert _consent_rows(runtime_of_web, shop_id, customer_id) == ["granted", "revoked"]


def test_after_unsubscribing_the_next_marketing_mail_is_not_sent(web, runtime_of_web, marta):
    from tests.outbox_helpers import message_row, work

    shop_id, customer_id = marta
    web.test_client().post(_unsubscribe_path(web, shop_id, customer_id), data={"List-Unsubscribe": "One-Click"})
    scheduled = schedule(runtime_of_web, shop_id, channel="email", kind="recovery", template="cart_reminder",
                         customer_id=customer_id, context=CART_CONTEXT, dedupe_parts=("cart-9",))
    work(runtime_of_web)
    assert message_row(runtime_of_web, shop_id, scheduled.message_id).status == "suppressed"


def test_a_token_edited_to_name_another_customer_is_refused(web, runtime_of_web, marta):
    shop_id, customer_id = marta
    other_shop, other_customer = make_marketing_customer(runtime_of_web, email="jan@example.pl")
    token = _unsubscribe_path(web, shop_id, customer_id).rsplit("/", 1)[1]
    payload, signature = token.rsplit(".", 1)
    forged_payload = base64.urlsafe_b64encode(json.dumps(
        [other_shop, other_customer, "email", "jan@example.pl", None]).encode()).rstrip(b"=").decode()
    response = web.test_client().post(f"/m/u/{forged_payload}.{signature}", data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 404
    assert _consent_rows(runtime_of_web, other_shop, other_customer) == ["granted"]


def test_a_token_signed_with_another_key_is_refused(web, runtime_of_web, marta):
    shop_id, customer_id = marta
    forged = URLSafeSerializer("not-our-secret", salt=links.UNSUBSCRIBE_SALT).dumps(
        [shop_id, customer_id, "email", "marta@example.pl", None])
    assert web.test_client().post(f"/m/u/{forged}", data={"List-Unsubscribe": "One-Click"}).status_code == 404
    assert _consent_rows(runtime_of_web, shop_id, customer_id) == ["granted"]


def test_a_signed_link_of_another_kind_is_not_an_unsubscribe_token(web, runtime_of_web, marta):
    shop_id, customer_id = marta
    settings = web.extensions["companion"].settings
    open_token = links.open_pixel_url(settings, shop_id, 1).rsplit("/", 1)[1].removesuffix(".gif")
    assert web.test_client().post(f"/m/u/{open_token}", data={"List-Unsubscribe": "One-Click"}).status_code == 404


def test_the_preferences_form_withdraws_one_channel_and_keeps_the_other(web, runtime_of_web, marta):
    shop_id, customer_id = marta
    response = web.test_client().post(_unsubscribe_path(web, shop_id, customer_id) + "/preferences", data={"keep_email": "1"})
    assert response.status_code == 200
    assert _consent_rows(runtime_of_web, shop_id, customer_id, "email") == ["granted"]
    assert _consent_rows(runtime_of_web, shop_id, customer_id, "sms") == ["granted", "revoked"]


@pytest.fixture
def sent_message(runtime_of_web, marta):
    shop_id, customer_id = marta
    scheduled = schedule(runtime_of_web, shop_id, channel="email", kind="recovery", template="cart_reminder",
                         customer_id=customer_id, context=CART_CONTEXT, dedupe_parts=("cart-9",))
    return shop_id, scheduled.message_id


def _message(runtime, shop_id, message_id) -> Message:
    with runtime.sessions() as session, shop_context(shop_id):
        return session.get(Message, message_id)


def test_a_click_redirects_to_the_signed_url_and_is_recorded(web, runtime_of_web, sent_message):
    shop_id, message_id = sent_message
    url = links.click_url(web.extensions["companion"].settings, shop_id, message_id, "https://shop.example.pl/cart?x=1")
    response = web.test_client().get(_path(url))
    assert response.status_code == 302 and response.headers["Location"] == "https://shop.example.pl/cart?x=1"
    assert _message(runtime_of_web, shop_id, message_id).clicked_at is not None


@pytest.mark.parametrize("attempt", ["/m/c/https://evil.example", "/m/c/https%3A%2F%2Fevil.example", "/m/c/evil.example"])
def test_a_click_link_that_we_did_not_sign_redirects_nowhere(web, attempt):
    response = web.test_client().get(attempt)
    assert response.status_code == 404 and "Location" not in response.headers


def test_a_click_token_with_its_url_swapped_is_refused(web, sent_message):
    shop_id, message_id = sent_message
    token = _path(links.click_url(web.extensions["companion"].settings, shop_id, message_id,
                                  "https://shop.example.pl/")).rsplit("/", 1)[1]
    payload, signature = token.rsplit(".", 1)
    swapped = base64.urlsafe_b64encode(json.dumps([shop_id, message_id, "https://evil.example/"]).encode()).rstrip(b"=").decode()
    response = web.test_client().get(f"/m/c/{swapped}.{signature}")
    assert response.status_code == 404 and "Location" not in response.headers


def test_a_signed_link_to_a_script_url_is_not_followed(web, sent_message):
    shop_id, message_id = sent_message
    settings = web.extensions["companion"].settings
    token = URLSafeSerializer(settings.secret_key, salt=links.CLICK_SALT).dumps([shop_id, message_id, "javascript:alert(1)"])
    response = web.test_client().get(f"/m/c/{token}")
    assert response.status_code == 404 and "Location" not in response.headers


def test_the_open_pixel_records_the_first_open(web, runtime_of_web, sent_message):
    shop_id, message_id = sent_message
    response = web.test_client().get(_path(links.open_pixel_url(web.extensions["companion"].settings, shop_id, message_id)),
                                     headers={"User-Agent": "Mozilla/5.0 Thunderbird/128.0"})
    assert response.status_code == 200 and response.mimetype == "image/gif"
    assert _message(runtime_of_web, shop_id, message_id).opened_at is not None


def test_an_open_by_a_mail_privacy_proxy_is_recorded_as_such_not_as_a_read(web, runtime_of_web, sent_message):
    shop_id, message_id = sent_message
    web.test_client().get(_path(links.open_pixel_url(web.extensions["companion"].settings, shop_id, message_id)),
                          headers={"User-Agent": "Mozilla/5.0 (via ggpht.com GoogleImageProxy)"})
    message = _message(runtime_of_web, shop_id, message_id)
    assert message.opened_at is None and message.context["_proxy_opened_at"]


def _twilio_post(web, path: str, form: dict, token: str = TWILIO_TOKEN):
    signature = RequestValidator(token).compute_signature(PUBLIC_URL + path, form)
    return web.test_client().post(path, data=form, headers={"X-Twilio-Signature": signature})


@pytest.fixture
def sent_sms(runtime_of_web, marta):
    shop_id, customer_id = marta
    scheduled = schedule(runtime_of_web, shop_id, channel="sms", kind="shipping", template="order_shipped",
                         customer_id=customer_id, context={"order_number": "#1", "courier": "DPD", "tracking_number": "1",
                                                           "tracking_url": "https://dpd.example/1",
                                                           "shipped_at": "2026-06-10T08:00:00+00:00"},
                         dedupe_parts=("o1",))
    with runtime_of_web.sessions.begin() as session, shop_context(shop_id):
        message = session.get(Message, scheduled.message_id)
        message.status, message.provider_message_id = "sent", "SM" + "a" * 32
    return shop_id, scheduled.message_id


def test_a_signed_delivery_callback_marks_the_sms_delivered(web, runtime_of_web, sent_sms):
    shop_id, message_id = sent_sms
    response = _twilio_post(web, f"/m/twilio/status/{shop_id}", {"MessageSid": "SM" + "a" * 32, "MessageStatus": "delivered"})
    assert response.status_code == 204
    assert _message(runtime_of_web, shop_id, message_id).delivered_at is not None


def test_a_callback_with_a_wrong_signature_changes_nothing(web, runtime_of_web, sent_sms):
    shop_id, message_id = sent_sms
    response = _twilio_post(web, f"/m/twilio/status/{shop_id}", {"MessageSid": "SM" + "a" * 32, "MessageStatus": "failed"},
                            token="someone-elses-token")
    assert response.status_code == 403
    assert _message(runtime_of_web, shop_id, message_id).status == "sent"


def test_an_undelivered_callback_for_an_opted_out_number_fails_and_suppresses(web, runtime_of_web, sent_sms):
    shop_id, message_id = sent_sms
    _twilio_post(web, f"/m/twilio/status/{shop_id}",
                 {"MessageSid": "SM" + "a" * 32, "MessageStatus": "undelivered", "ErrorCode": "21610"})
    assert _message(runtime_of_web, shop_id, message_id).status == "failed"
    with runtime_of_web.sessions() as session, shop_context(shop_id):
        assert [s.address for s in session.scalars(select(Suppression))] == ["+48600111222"]


@pytest.mark.parametrize("word", ["STOP", "stop", "Rezygnuj", "DEZABONARE", "Dezabonează"])
def test_stop_keywords_suppress_the_number_and_revoke_sms_consent(web, runtime_of_web, marta, word):
    shop_id, customer_id = marta
    response = _twilio_post(web, f"/m/twilio/inbound/{shop_id}", {"From": "+48600111222", "Body": word})
    assert response.status_code == 200 and response.mimetype == "text/xml"
    assert _consent_rows(runtime_of_web, shop_id, customer_id, "sms")[-1] == "revoked"
    with runtime_of_web.sessions() as session, shop_context(shop_id):
        assert [(s.channel, s.reason) for s in session.scalars(select(Suppression))] == [("sms", "sms_stop")]


def test_start_lifts_the_stop(web, runtime_of_web, marta):
    shop_id, _ = marta
    _twilio_post(web, f"/m/twilio/inbound/{shop_id}", {"From": "+48600111222", "Body": "STOP"})
    _twilio_post(web, f"/m/twilio/inbound/{shop_id}", {"From": "+48600111222", "Body": "START"})
    with runtime_of_web.sessions() as session, shop_context(shop_id):
        assert session.scalars(select(Suppression)).all() == []


def test_help_is_answered_in_the_shops_language(web, marta):
    shop_id, _ = marta
    response = _twilio_post(web, f"/m/twilio/inbound/{shop_id}", {"From": "+48600111222", "Body": "pomoc"})
    assert "<Message>Sklep Żółw: powiadomienia SMS. Aby zrezygnować, odpisz STOP." in response.get_data(as_text=True)


def test_an_unsigned_inbound_message_is_refused(web, runtime_of_web, marta):
    shop_id, _ = marta
    response = web.test_client().post(f"/m/twilio/inbound/{shop_id}", data={"From": "+48600111222", "Body": "STOP"})
    assert response.status_code == 403
    with runtime_of_web.sessions() as session, shop_context(shop_id):
        assert session.scalars(select(Suppression)).all() == []


def test_twilios_own_opt_out_type_counts_as_stop_whatever_the_word(web, runtime_of_web, marta):
    shop_id, customer_id = marta
    _twilio_post(web, f"/m/twilio/inbound/{shop_id}", {"From": "+48600111222", "Body": "ARRET", "OptOutType": "STOP"})
    assert _consent_rows(runtime_of_web, shop_id, customer_id, "sms")[-1] == "revoked"
