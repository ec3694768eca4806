"""Email through the outbox into a real SMTP server: gates, headers a bulk sender needs, and exactly-once sending."""
from __future__ import annotations

import datetime as dt
import os
import signal
import time
from collections import Counter
from email.utils import parsedate_to_datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from app.jobs.queue import jobs, requeue_expired_leases
from app.messaging.send import GROUP_SIZE
from app.messaging.outbox import schedule_message
from app.models import Cart, Consent, Message, Suppression, utcnow
from app.runtime import build_runtime
from app.tenancy import shop_context
from tests.conftest import wait_until
from tests.outbox_helpers import sink  # noqa: F401 (fixture)
from tests.outbox_helpers import (CART_CONTEXT, PUBLIC_URL, SHIPPED_CONTEXT, attempts_of, gates_of, make_jobs_due,
                                  make_marketing_customer, message_row, provider_env, schedule, send_jobs, work)


@pytest.fixture
def mail_runtime(make_settings, sink):
    runtime = build_runtime(make_settings(**provider_env(sink)))
    yield runtime
    runtime.close()


def _cart_reminder(runtime, shop_id, customer_id, **kwargs):
    return schedule(runtime, shop_id, channel="email", kind="recovery", template="cart_reminder",
                    customer_id=customer_id, context=CART_CONTEXT, dedupe_parts=("flow-1", "step-1", "cart-9@v3"), **kwargs)


def test_scheduling_the_same_flow_step_twice_makes_one_message_and_one_job(mail_runtime):
    shop_id, customer_id = make_marketing_customer(mail_runtime)
    first = _cart_reminder(mail_runtime, shop_id, customer_id)
    second = _cart_reminder(mail_runtime, shop_id, customer_id)
    assert first.created and not second.created and first.message_id == second.message_id
    assert len(send_jobs(mail_runtime, first.message_id)) == 1


def test_a_consenting_customer_gets_the_cart_reminder_with_one_click_unsubscribe_headers(mail_runtime, sink):
    shop_id, customer_id = make_marketing_customer(mail_runtime)
    scheduled = _cart_reminder(mail_runtime, shop_id, customer_id)
    work(mail_runtime)
    (mail,) = sink.handler.messages()
    assert mail["To"] == "marta@example.pl"
    assert mail["Subject"] == "Marta, Twój koszyk w Sklep Żółw czeka"
    assert mail["Message-ID"] == f"<m{scheduled.message_id}.s{shop_id}@shop.example.pl>"
    assert abs((parsedate_to_datetime(mail["Date"]) - utcnow()).total_seconds()) < 60
    https_uri, mailto_uri = [part.strip(" <>") for part in mail["List-Unsubscribe"].split(",")]
    assert https_uri.startswith(f"{PUBLIC_URL}/m/u/") and mailto_uri.startswith("mailto:unsubscribe@shop.example.pl?")
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_the_unsubscribe_header_travels_as_plain_ascii_urls_not_encoded_words(mail_runtime, sink):
    shop_id, customer_id = make_marketing_customer(mail_runtime)
    _cart_reminder(mail_runtime, shop_id, customer_id)
    work(mail_runtime)
    raw = sink.handler.received[0].original_content
    lines = raw.split(b"\r\n")
    at = next(i for i, l in enumerate(lines) if l.startswith(b"List-Unsubscribe:"))
    assert lines[at].startswith(b"List-Unsubscribe: <https://companion.example.com/m/u/") and b"=?" not in lines[at]
    assert lines[at + 1].startswith(b" <mailto:unsubscribe@shop.example.pl?subject=unsubscribe%20")
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in raw


def test_the_mail_has_a_plain_text_part_and_an_html_part_with_inlined_css(mail_runtime, sink):
    shop_id, customer_id = make_marketing_customer(mail_runtime)
    _cart_reminder(mail_runtime, shop_id, customer_id)
    work(mail_runtime)
    (mail,) = sink.handler.messages()
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert "W Twoim koszyku zostały 2 produkty" in text and "39,80\xa0zł" in text
    assert "<style" not in html and 'style="display: inline-block;background-color: #1a73e8' in html
    assert f"{PUBLIC_URL}/m/c/" in html and f"{PUBLIC_URL}/m/o/" in html


def test_the_sent_message_records_its_gates_and_one_accepted_attempt(mail_runtime, sink):
    shop_id, customer_id = make_marketing_customer(mail_runtime)
    scheduled = _cart_reminder(mail_runtime, shop_id, customer_id)
    work(mail_runtime)
    message = message_row(mail_runtime, shop_id, scheduled.message_id)
    assert message.status == "sent" and message.sent_at is not None
    assert gates_of(message) == [("exit_conditions", "pass"), ("consent", "pass"), ("preference", "pass"), ("suppression", "pass"),
                                 ("quiet_hours", "pass"), ("frequency_cap", "pass"), ("send", "accepted")]
    assert [(a.attempt, a.provider, a.outcome) for a in attempts_of(mail_runtime, shop_id, scheduled.message_id)] == \
        [(1, "smtp", "accepted")]


def test_a_shipping_update_carries_no_unsubscribe_headers(mail_runtime, sink):
    shop_id, customer_id = make_marketing_customer(mail_runtime, consent=())
    schedule(mail_runtime, shop_id, channel="email", kind="shipping", template="order_shipped", customer_id=customer_id,
             context=SHIPPED_CONTEXT, dedupe_parts=("order-1042", "shipped"))
    work(mail_runtime)
    (mail,) = sink.handler.messages()
    assert mail["Subject"] == "Zamówienie #1042 zostało wysłane"
    assert mail["List-Unsubscribe"] is None and mail["List-Unsubscribe-Post"] is None


def test_marketing_without_consent_is_suppressed_and_never_sent(mail_runtime, sink):
    shop_id, customer_id = make_marketing_customer(mail_runtime, consent=())
    scheduled = _cart_reminder(mail_runtime, shop_id, customer_id)
    work(mail_runtime)
    message = message_row(mail_runtime, shop_id, scheduled.message_id)
    assert message.status == "suppressed" and "no email marketing consent" in message.error
    assert sink.handler.received == [] and attempts_of(mail_runtime, shop_id, scheduled.message_id) == []


def test_the_newest_consent_row_decides(mail_runtime, sink):
    shop_id, customer_id = make_marketing_customer(mail_runtime)
    with mail_runtime.sessions.begin() as session, shop_context(shop_id):
        session.add(Consent(shop_id=shop_id, customer_id=customer_id, channel="email", state="revoked",
                            source="preferences_page", recorded_at=utcnow()))
    scheduled = _cart_reminder(mail_runtime, shop_id, customer_id)
    work(mail_runtime)
    assert message_row(mail_runtime, shop_id, scheduled.message_id).status == "suppressed"
    assert sink.handler.received == []


def test_a_suppressed_address_gets_nothing(mail_runtime, sink):
    shop_id, customer_id = make_marketing_customer(mail_runtime)
    with mail_runtime.sessions.begin() as session, shop_context(shop_id):
        session.add(Suppression(shop_id=shop_id, channel="email", address="marta@example.pl", reason="hard_bounce"))
    scheduled = _cart_reminder(mail_runtime, shop_id, customer_id)
    work(mail_runtime)
    message = message_row(mail_runtime, shop_id, scheduled.message_id)
    assert message.status == "suppressed" and gates_of(message)[-1] == ("suppression", "block")
    assert sink.handler.received == []


def test_a_suppressed_address_in_quiet_hours_is_suppressed_not_merely_postponed(mail_runtime, sink):
    now_local = utcnow().astimezone(ZoneInfo("Europe/Warsaw"))
    quiet = {"start": (now_local - dt.timedelta(minutes=1)).strftime("%H:%M"),
             "end": (now_local - dt.timedelta(minutes=2)).strftime("%H:%M")}
    shop_id, customer_id = make_marketing_customer(mail_runtime, shop_fields={"settings": {"quiet_hours": quiet}})
    with mail_runtime.sessions.begin() as session, shop_context(shop_id):
        session.add(Suppression(shop_id=shop_id, channel="email", address="marta@example.pl", reason="hard_bounce"))
    scheduled = _cart_reminder(mail_runtime, shop_id, customer_id)
    work(mail_runtime)
    message = message_row(mail_runtime, shop_id, scheduled.message_id)
    assert message.status == "suppressed" and gates_of(message)[-1] == ("suppression", "block")


def test_a_batch_sends_each_due_message_once_and_records_each_on_its_own(mail_runtime, sink):
    shop_id, _ = make_marketing_customer(mail_runtime, consent=())
    with mail_runtime.sessions.begin() as session, shop_context(shop_id):
        session.add(Suppression(shop_id=shop_id, channel="email", address="buyer3@example.pl", reason="hard_bounce"))
        ids = [schedule_message(session, shop_id=shop_id, channel="email", kind="shipping", template="order_shipped",
                                recipient=f"buyer{n}@example.pl", context=SHIPPED_CONTEXT,
                                dedupe_parts=(f"order-{n}",)).message_id for n in range(7)]
    work(mail_runtime)
    statuses = [message_row(mail_runtime, shop_id, m).status for m in ids]
    assert statuses == ["sent"] * 3 + ["suppressed"] + ["sent"] * 3
    assert sorted(env.rcpt_tos[0] for env in sink.handler.received) == sorted(
        f"buyer{n}@example.pl" for n in range(7) if n != 3)
    assert len(set(sink.handler.peers)) == 1  # one SMTP connection for the whole batch
    for message_id in ids:
        assert [j.status for j in send_jobs(mail_runtime, message_id)] == ["succeeded"]
    assert [len(attempts_of(mail_runtime, shop_id, m)) for m in ids] == [1, 1, 1, 0, 1, 1, 1]


def test_a_reminder_is_cancelled_when_the_cart_was_bought_meanwhile(mail_runtime, sink):
    shop_id, customer_id = make_marketing_customer(mail_runtime)
    with mail_runtime.sessions.begin() as session, shop_context(shop_id):
        cart = Cart(shop_id=shop_id, platform_token="cart-9", currency="PLN", customer_id=customer_id, status="abandoned")
        session.add(cart)
        session.flush()
        cart_id = cart.id
    scheduled = _cart_reminder(mail_runtime, shop_id, customer_id,
                               exit_conditions=[{"name": "cart_converted", "args": {"cart_id": cart_id}}])
    with mail_runtime.sessions.begin() as session, shop_context(shop_id):
        session.get(Cart, cart_id).status = "converted"
    work(mail_runtime)
    message = message_row(mail_runtime, shop_id, scheduled.message_id)
    assert message.status == "cancelled" and "bought meanwhile" in message.error
    assert sink.handler.received == []


def test_quiet_hours_reschedule_the_message_to_the_local_morning(mail_runtime, sink):
    # Whatever the hour now: quiet from a minute ago until a minute before that, tomorrow.
    now_local = utcnow().astimezone(ZoneInfo("Europe/Warsaw"))
    start = (now_local - dt.timedelta(minutes=1)).strftime("%H:%M")
    end = (now_local - dt.timedelta(minutes=2)).strftime("%H:%M")
    shop_id, customer_id = make_marketing_customer(mail_runtime, shop_fields={"settings": {"quiet_hours": {"start": start, "end": end}}})
    scheduled = _cart_reminder(mail_runtime, shop_id, customer_id)
    work(mail_runtime)
    message = message_row(mail_runtime, shop_id, scheduled.message_id)
    assert message.status == "scheduled" and sink.handler.received == []
    assert dt.timedelta(hours=23) < message.due_at - utcnow() < dt.timedelta(hours=24)
    assert gates_of(message)[-1] == ("quiet_hours", "defer")
    assert send_jobs(mail_runtime, scheduled.message_id)[-1].due_at == message.due_at


def test_the_frequency_cap_reschedules_a_second_reminder_until_the_window_frees(mail_runtime, sink):
    shop_id, customer_id = make_marketing_customer(mail_runtime, shop_fields={
        "settings": {"quiet_hours": None, "frequency_cap": {"email": {"max": 1, "hours": 24}}}})
    first = _cart_reminder(mail_runtime, shop_id, customer_id)
    work(mail_runtime)
    second = schedule(mail_runtime, shop_id, channel="email", kind="promotional", template="cart_reminder",
                      customer_id=customer_id, context=CART_CONTEXT, dedupe_parts=("campaign-7",))
    work(mail_runtime)
    sent_at = message_row(mail_runtime, shop_id, first.message_id).sent_at
    message = message_row(mail_runtime, shop_id, second.message_id)
    assert message.status == "scheduled" and message.due_at == sent_at + dt.timedelta(hours=24)
    assert gates_of(message)[-1] == ("frequency_cap", "defer") and len(sink.handler.received) == 1


def test_under_the_cap_the_higher_priority_message_goes_first_and_the_other_waits(mail_runtime, sink):
    shop_id, customer_id = make_marketing_customer(mail_runtime, shop_fields={
        "settings": {"quiet_hours": None, "frequency_cap": {"email": {"max": 1, "hours": 24}}}})
    promo = schedule(mail_runtime, shop_id, channel="email", kind="promotional", template="cart_reminder",
                     customer_id=customer_id, context=CART_CONTEXT, dedupe_parts=("campaign-7",))
    shipping = schedule(mail_runtime, shop_id, channel="email", kind="shipping", template="order_shipped",
                        customer_id=customer_id, context=SHIPPED_CONTEXT, dedupe_parts=("order-1042",))
    work(mail_runtime)
    assert message_row(mail_runtime, shop_id, shipping.message_id).status == "sent"
    waiting = message_row(mail_runtime, shop_id, promo.message_id)
    assert waiting.status == "scheduled" and waiting.due_at > utcnow()
    assert [m["Subject"] for m in sink.handler.messages()] == ["Zamówienie #1042 zostało wysłane"]


def test_a_hard_bounce_fails_the_message_and_suppresses_the_address(mail_runtime, sink):
    sink.handler.rcpt_replies["marta@example.pl"] = "550 5.1.1 No such user"
    shop_id, customer_id = make_marketing_customer(mail_runtime)
    scheduled = _cart_reminder(mail_runtime, shop_id, customer_id)
    work(mail_runtime)
    assert message_row(mail_runtime, shop_id, scheduled.message_id).status == "failed"
    with mail_runtime.sessions() as session, shop_context(shop_id):
        (row,) = session.scalars(select(Suppression)).all()
    assert (row.channel, row.address, row.reason) == ("email", "marta@example.pl", "hard_bounce")


def test_a_refused_relay_puts_the_message_back_for_later_with_the_attempt_recorded(make_settings, sink):
    runtime = build_runtime(make_settings(**{**provider_env(sink), "SMTP_PORT": "1"}))
    try:
        shop_id, customer_id = make_marketing_customer(runtime)
        scheduled = _cart_reminder(runtime, shop_id, customer_id)
        work(runtime)
        message = message_row(runtime, shop_id, scheduled.message_id)
        assert message.status == "scheduled" and message.due_at > utcnow()
        assert [a.outcome for a in attempts_of(runtime, shop_id, scheduled.message_id)] == ["retry_later"]
        assert send_jobs(runtime, scheduled.message_id)[-1].status == "queued"
    finally:
        runtime.close()


def test_a_send_that_lost_the_connection_after_data_is_unknown_and_not_sent_again(mail_runtime, sink):
    sink.handler.drop_after_data.add("marta@example.pl")
    shop_id, customer_id = make_marketing_customer(mail_runtime)
    scheduled = _cart_reminder(mail_runtime, shop_id, customer_id)
    work(mail_runtime)
    make_jobs_due(mail_runtime)
    work(mail_runtime)
    assert message_row(mail_runtime, shop_id, scheduled.message_id).status == "unknown"
    assert len(sink.handler.received) == 1


def test_a_message_left_sending_by_a_dead_worker_becomes_unknown_when_its_job_runs_again(mail_runtime, sink):
    shop_id, customer_id = make_marketing_customer(mail_runtime)
    scheduled = _cart_reminder(mail_runtime, shop_id, customer_id)
    with mail_runtime.engine.begin() as conn:  # as a worker leaves it when killed between the mark and the reply
        conn.execute(update(Message.__table__).where(Message.__table__.c.id == scheduled.message_id)
                     .values(status="sending"))
    work(mail_runtime)
    message = message_row(mail_runtime, shop_id, scheduled.message_id)
    assert message.status == "unknown" and sink.handler.received == []


def test_a_worker_killed_mid_send_leaves_the_message_unknown_and_it_is_never_sent_twice(mail_runtime, sink, processes):
    sink.handler.data_delay = 3.0  # the relay holds its reply while the worker is killed
    shop_id, customer_id = make_marketing_customer(mail_runtime)
    scheduled = _cart_reminder(mail_runtime, shop_id, customer_id)
    worker = processes.start("worker", **provider_env(sink))
    assert sink.handler.data_started.wait(30), processes.log_of(worker)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    assert message_row(mail_runtime, shop_id, scheduled.message_id).status == "sending"
    with mail_runtime.engine.begin() as conn:  # the lease runs out, and the sweeper hands the job on
        conn.execute(update(jobs).where(jobs.c.status == "running").values(lease_until=utcnow() - dt.timedelta(seconds=1)))
        requeue_expired_leases(conn)
    work(mail_runtime)
    time.sleep(sink.handler.data_delay)
    message = message_row(mail_runtime, shop_id, scheduled.message_id)
    assert message.status == "unknown" and sink.handler.bodies == 1
    assert [a.outcome for a in attempts_of(mail_runtime, shop_id, scheduled.message_id)] == ["unknown"]


def test_a_worker_killed_mid_batch_sends_nothing_twice_and_leaves_at_most_two_groups_unknown(mail_runtime, sink,
                                                                                             processes):
    sink.handler.data_delay = 0.05  # slow enough to kill the worker with a batch half sent
    shop_id, _ = make_marketing_customer(mail_runtime, consent=())
    with mail_runtime.sessions.begin() as session, shop_context(shop_id):
        ids = [schedule_message(session, shop_id=shop_id, channel="email", kind="shipping", template="order_shipped",
                                recipient=f"buyer{n}@example.pl", context=SHIPPED_CONTEXT,
                                dedupe_parts=(f"order-{n}",)).message_id for n in range(48)]
    worker = processes.start("worker", **provider_env(sink))
    wait_until(lambda: sink.handler.bodies >= 12 or worker.poll() is not None, timeout=60)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    left_sending = [m for m in ids if message_row(mail_runtime, shop_id, m).status == "sending"]
    assert 0 < len(left_sending) <= 2 * GROUP_SIZE, processes.log_of(worker)
    sink.handler.data_delay = 0.0
    with mail_runtime.engine.begin() as conn:  # the leases run out, and the sweeper hands the jobs on
        conn.execute(update(jobs).where(jobs.c.status == "running").values(lease_until=utcnow() - dt.timedelta(seconds=1)))
        requeue_expired_leases(conn)
    work(mail_runtime)
    time.sleep(0.2)  # the sink finishes the reply it was holding when the worker died
    statuses = {m: message_row(mail_runtime, shop_id, m).status for m in ids}
    unknown = [m for m, status in statuses.items() if status == "unknown"]
    assert set(statuses.values()) <= {"sent", "unknown"} and sorted(unknown) == sorted(left_sending)
    arrived = Counter(address for envelope in sink.handler.received for address in envelope.rcpt_tos)
    assert max(arrived.values()) == 1  # never twice
    assert {f"buyer{n}@example.pl" for n, m in enumerate(ids) if statuses[m] == "sent"} <= set(arrived)


def test_a_shop_over_its_sends_per_minute_waits_its_turn(make_settings, sink):
    runtime = build_runtime(make_settings(**provider_env(sink), MESSAGES_PER_SHOP_PER_MINUTE="1"))
    try:
        shop_id, customer_id = make_marketing_customer(runtime, consent=())
        with runtime.sessions.begin() as session, shop_context(shop_id):
            for n in range(2):
                schedule_message(session, shop_id=shop_id, channel="email", kind="transactional",
                                 template="order_shipped", recipient=f"buyer{n}@example.pl", context=SHIPPED_CONTEXT,
                                 dedupe_parts=(f"order-{n}",))
        work(runtime)
        with runtime.sessions() as session, shop_context(shop_id):
            rows = session.scalars(select(Message).order_by(Message.id)).all()
        assert [m.status for m in rows] == ["sent", "scheduled"] and len(sink.handler.received) == 1
        assert rows[1].gate_trace[-1]["gate"] == "rate_limit" and rows[1].due_at > utcnow()
    finally:
        runtime.close()


def test_a_message_whose_template_variables_are_missing_fails_without_sending(mail_runtime, sink):
    shop_id, customer_id = make_marketing_customer(mail_runtime)
    scheduled = schedule(mail_runtime, shop_id, channel="email", kind="recovery", template="cart_reminder",
                         customer_id=customer_id, context={"item_count": 1}, dedupe_parts=("broken",))
    work(mail_runtime)
    message = message_row(mail_runtime, shop_id, scheduled.message_id)
    assert message.status == "failed" and "UndefinedError" in message.error and sink.handler.received == []


def test_an_sms_to_a_number_that_is_not_one_is_refused_when_scheduled(mail_runtime):
    from app.messaging.outbox import MessageRefused

    shop_id, customer_id = make_marketing_customer(mail_runtime, phone="12")
    with pytest.raises(MessageRefused, match="cannot send an SMS"):
        schedule(mail_runtime, shop_id, channel="sms", kind="shipping", template="order_shipped",
                 customer_id=customer_id, context=SHIPPED_CONTEXT)


def test_a_reminder_due_the_night_summer_time_begins_is_rescheduled_to_eight_local(mail_runtime, sink, time_machine):
    time_machine.move_to(dt.datetime(2026, 3, 28, 21, 30, tzinfo=dt.timezone.utc))  # 22:30 in Warsaw (CET)
    shop_id, customer_id = make_marketing_customer(mail_runtime, shop_fields={
        "settings": {"quiet_hours": {"start": "21:00", "end": "08:00"}}})
    scheduled = _cart_reminder(mail_runtime, shop_id, customer_id)
    work(mail_runtime)
    message = message_row(mail_runtime, shop_id, scheduled.message_id)
    # Clocks jump 02:00 -> 03:00 that night: 08:00 CEST is 06:00 UTC, eight and a half hours later, not nine and a half.
    assert message.status == "scheduled" and message.due_at == dt.datetime(2026, 3, 29, 6, 0, tzinfo=dt.timezone.utc)
    assert sink.handler.received == []


def test_quiet_hours_follow_the_recipients_own_time_zone_before_the_shops(mail_runtime, sink, time_machine):
    time_machine.move_to(dt.datetime(2026, 6, 10, 10, 0, tzinfo=dt.timezone.utc))  # noon in Warsaw, 06:00 in New York
    shop_id, customer_id = make_marketing_customer(mail_runtime, timezone="America/New_York", shop_fields={
        "settings": {"quiet_hours": {"start": "21:00", "end": "08:00"}}})
    scheduled = _cart_reminder(mail_runtime, shop_id, customer_id)
    work(mail_runtime)
    message = message_row(mail_runtime, shop_id, scheduled.message_id)
    assert message.due_at == dt.datetime(2026, 6, 10, 12, 0, tzinfo=dt.timezone.utc) and sink.handler.received == []
