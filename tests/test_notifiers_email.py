"""The SMTP notifier against a real SMTP server on loopback: what arrives, and how each failure is classified."""
from __future__ import annotations

import pytest

from app.notifiers.base import ACCEPTED, FAILED_PERMANENTLY, RETRY_LATER, UNKNOWN, Envelope
from app.notifiers.email import EmailNotifier, SmtpRelay
from tests.messaging_fakes import SmtpSink, free_port


@pytest.fixture
def sink():
    with SmtpSink() as running:
        yield running


def _notifier(port: int) -> EmailNotifier:
    return EmailNotifier(SmtpRelay(host="127.0.0.1", port=port, from_address="sklep@example.pl",
                                   from_name="Sklep Żółw", timeout=5))


def _envelope(to: str = "marta@example.pl", **extra) -> Envelope:
    return Envelope(channel="email", recipient=to, idempotency_key="k1", subject="Twój koszyk czeka",
                    text="Zapraszamy z powrotem.", html="<p>Zapraszamy <b>z powrotem</b>.</p>",
                    headers={"Message-ID": "<m1@example.pl>"}, **extra)


def test_an_accepted_mail_arrives_with_text_and_html_parts(sink):
    notifier = _notifier(sink.port)
    outcome = notifier.send(_envelope())
    notifier.close()
    assert outcome.status == ACCEPTED and outcome.provider_message_id == "<m1@example.pl>"
    (mail,) = sink.handler.messages()
    assert mail["Subject"] == "Twój koszyk czeka"
    assert mail["From"].addresses[0].display_name == "Sklep Żółw"
    assert mail.get_body(("plain",)).get_content().strip() == "Zapraszamy z powrotem."
    assert "<b>z powrotem</b>" in mail.get_body(("html",)).get_content()


def test_consecutive_mails_reuse_one_connection(sink):
    notifier = _notifier(sink.port)
    for n in range(3):
        assert notifier.send(_envelope(f"c{n}@example.pl")).status == ACCEPTED
    notifier.close()
    assert len(sink.handler.received) == 3 and len(set(sink.handler.peers)) == 1


def test_a_refused_connection_is_retried_later():
    outcome = _notifier(free_port()).send(_envelope())
    assert outcome.status == RETRY_LATER and outcome.retry_after >= 1


def test_a_temporary_recipient_refusal_is_retried_and_nothing_was_delivered(sink):
    sink.handler.rcpt_replies["busy@example.pl"] = "450 4.2.1 Mailbox busy, try later"
    outcome = _notifier(sink.port).send(_envelope("busy@example.pl"))
    assert outcome.status == RETRY_LATER and "450" in outcome.detail
    assert sink.handler.received == []


def test_a_permanent_recipient_refusal_fails_and_asks_for_suppression(sink):
    sink.handler.rcpt_replies["gone@example.pl"] = "550 5.1.1 No such user"
    outcome = _notifier(sink.port).send(_envelope("gone@example.pl"))
    assert outcome.status == FAILED_PERMANENTLY and outcome.suppress
    assert "550" in outcome.detail


def test_a_connection_lost_after_the_body_was_sent_is_unknown_not_retried(sink):
    sink.handler.drop_after_data.add("lost@example.pl")
    outcome = _notifier(sink.port).send(_envelope("lost@example.pl"))
    assert outcome.status == UNKNOWN
    assert len(sink.handler.received) == 1


def test_a_reused_connection_the_server_closed_is_reopened_for_the_next_mail(sink):
    notifier = _notifier(sink.port)
    assert notifier.send(_envelope("a@example.pl")).status == ACCEPTED
    notifier._conn.sock.close()  # the relay hung up an idle connection
    assert notifier.send(_envelope("b@example.pl")).status == ACCEPTED
    assert [env.rcpt_tos for env in sink.handler.received] == [["a@example.pl"], ["b@example.pl"]]
