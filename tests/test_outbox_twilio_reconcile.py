"""An SMS whose send ended without a reply is `unknown`; Twilio's signed status callback settles what became of it."""
from __future__ import annotations

import pytest
from twilio.request_validator import RequestValidator

from app import create_app
from tests.outbox_helpers import twilio  # noqa: F401 (fixture)
from tests.outbox_helpers import (PUBLIC_URL, SHIPPED_CONTEXT, attempts_of, make_marketing_customer, message_row,
                                  provider_env, schedule, work)

TWILIO_TOKEN = "twilio-token"  # what provider_env configures
MARTA = "+48600111222"


@pytest.fixture
def web(make_settings, twilio):
    application = create_app(make_settings(**provider_env(twilio=twilio)))
    yield application
    application.extensions["companion"].close()


@pytest.fixture
def runtime(web):
    return web.extensions["companion"]


@pytest.fixture
def unknown_sms(runtime, twilio):
    """A shipping SMS Twilio created, whose reply the worker never got."""
    twilio.hang_up_on.add(MARTA)
    shop_id, customer_id = make_marketing_customer(runtime, consent=())
    scheduled = schedule(runtime, shop_id, channel="sms", kind="shipping", template="order_shipped",
                         customer_id=customer_id, context=SHIPPED_CONTEXT, dedupe_parts=("order-1042",))
    work(runtime)
    message = message_row(runtime, shop_id, scheduled.message_id)
    assert message.status == "unknown" and message.provider_message_id is None, message.error
    (request,) = twilio.requests
    return shop_id, scheduled.message_id, request["form"]["StatusCallback"], twilio.created[MARTA]


def _callback(web, url: str, form: dict, token: str = TWILIO_TOKEN):
    """POST as Twilio does: the form signed together with the exact URL it was given."""
    signature = RequestValidator(token).compute_signature(url, form)
    return web.test_client().post(url[len(PUBLIC_URL):], data=form, headers={"X-Twilio-Signature": signature})


def _status(sid: str, status: str, **extra) -> dict:
    return {"MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "To": MARTA, "From": "+48500000000",
            "AccountSid": "AC" + "1" * 32, **extra}


def test_the_callback_url_names_the_message(unknown_sms):
    shop_id, message_id, callback, _ = unknown_sms
    assert callback == f"{PUBLIC_URL}/m/twilio/status/{shop_id}/{message_id}"


def test_a_delivered_callback_settles_an_unknown_sms_as_sent_and_delivered(web, runtime, unknown_sms):
    shop_id, message_id, callback, sid = unknown_sms
    assert _callback(web, callback, _status(sid, "delivered")).status_code == 204
    message = message_row(runtime, shop_id, message_id)
    assert (message.status, message.provider_message_id, message.error) == ("sent", sid, None)
    assert message.sent_at is not None and message.delivered_at is not None
    assert message.gate_trace[-1]["gate"] == "provider_status" and "outcome was unknown" in message.gate_trace[-1]["detail"]
    # The attempt keeps its own record of what the worker saw at the time.
    assert [a.outcome for a in attempts_of(runtime, shop_id, message_id)] == ["unknown"]


def test_a_sent_callback_settles_it_as_sent_not_yet_delivered(web, runtime, unknown_sms):
    shop_id, message_id, callback, sid = unknown_sms
    _callback(web, callback, _status(sid, "sent"))
    message = message_row(runtime, shop_id, message_id)
    assert message.status == "sent" and message.delivered_at is None and message.provider_message_id == sid


def test_a_failed_callback_settles_it_as_failed(web, runtime, unknown_sms):
    shop_id, message_id, callback, sid = unknown_sms
    _callback(web, callback, _status(sid, "undelivered", ErrorCode="30003"))
    message = message_row(runtime, shop_id, message_id)
    assert message.status == "failed" and "30003" in message.error and message.provider_message_id == sid


def test_later_callbacks_find_the_message_by_its_sid(web, runtime, unknown_sms):
    shop_id, message_id, callback, sid = unknown_sms
    _callback(web, callback, _status(sid, "sent"))
    _callback(web, callback, _status(sid, "delivered"))
    message = message_row(runtime, shop_id, message_id)
    assert message.status == "sent" and message.delivered_at is not None
    assert [e["verdict"] for e in message.gate_trace if e["gate"] == "provider_status"] == ["sent", "delivered"]


def test_a_callback_with_a_forged_signature_leaves_it_unknown(web, runtime, unknown_sms):
    shop_id, message_id, callback, sid = unknown_sms
    assert _callback(web, callback, _status(sid, "delivered"), token="not-our-token").status_code == 403
    assert message_row(runtime, shop_id, message_id).status == "unknown"


def test_a_signed_callback_about_another_number_does_not_settle_it(web, runtime, unknown_sms):
    shop_id, message_id, callback, sid = unknown_sms
    _callback(web, callback, _status("SM" + "f" * 32, "delivered", To="+48600999888"))
    assert message_row(runtime, shop_id, message_id).status == "unknown"


def test_the_message_id_in_the_url_is_covered_by_the_signature(web, runtime, unknown_sms):
    shop_id, message_id, callback, sid = unknown_sms
    form = _status(sid, "delivered")
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(callback, form)
    other = f"/m/twilio/status/{shop_id}/{message_id + 1}"
    response = web.test_client().post(other, data=form, headers={"X-Twilio-Signature": signature})
    assert response.status_code == 403
    assert message_row(runtime, shop_id, message_id).status == "unknown"


def test_a_callback_for_an_sms_that_is_still_being_sent_leaves_the_worker_to_record_it(web, runtime, unknown_sms):
    from app.models import Message
    from app.tenancy import shop_context

    shop_id, message_id, callback, sid = unknown_sms
    with runtime.sessions.begin() as session, shop_context(shop_id):
        session.get(Message, message_id).status = "sending"
    _callback(web, callback, _status(sid, "queued"))
    # The worker's own outcome, when it comes, decides; a status callback does not race it.
    assert message_row(runtime, shop_id, message_id).status == "sending"
