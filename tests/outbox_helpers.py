"""Shared arrangements for the outbox tests: a runtime wired to loopback providers, shops, customers, consent."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from app import create_app
from app.jobs.executors.local import LocalWorker
from app.jobs.queue import jobs
from app.models import Consent, DeliveryAttempt, Job, Message, utcnow
from app.tenancy import shop_context
from tests.factories import make_customer, make_shop
from tests.messaging_fakes import FakeTwilio, SmtpSink

PUBLIC_URL = "https://companion.example.com"
NOON_UTC = dt.datetime(2026, 6, 10, 10, 0, tzinfo=dt.timezone.utc)


def provider_env(sink=None, twilio=None) -> dict[str, str]:
    env = {"PUBLIC_URL": PUBLIC_URL, "EMAIL_FROM": "sklep@shop.example.pl"}
    if sink is not None:
        env.update(SMTP_HOST="127.0.0.1", SMTP_PORT=str(sink.port), SMTP_TIMEOUT_SECONDS="5")
    if twilio is not None:
        env.update(TWILIO_ACCOUNT_SID="AC" + "1" * 32, TWILIO_AUTH_TOKEN="twilio-token",
                   TWILIO_MESSAGING_SERVICE_SID="MG" + "2" * 32, TWILIO_API_BASE_URL=twilio.base_url)
    return env


def make_marketing_customer(runtime, *, email="marta@example.pl", phone="+48600111222", consent=("email",),
                            shop_fields=None, **customer_fields) -> tuple[int, int]:
    """A shop (no quiet hours unless asked) and a customer who granted consent on the given channels."""
    shop_fields = {"name": "Sklep Żółw", "timezone": "Europe/Warsaw", "locale": "pl", "currency": "PLN",
                   "settings": {"quiet_hours": None}, **(shop_fields or {})}
    with runtime.sessions.begin() as session:
        shop = make_shop(session, **shop_fields)
        with shop_context(shop.id):
            customer = make_customer(session, shop, email, phone=phone, first_name="Marta", **customer_fields)
            for channel in consent:
                session.add(Consent(shop_id=shop.id, customer_id=customer.id, channel=channel, state="granted",
                                    source="checkout", recorded_at=utcnow() - dt.timedelta(days=1)))
        return shop.id, customer.id


CART_CONTEXT = {"items": [{"name": "Kubek", "quantity": 2, "unit_price": "19.90"}], "item_count": 2,
                "total": "39.80", "currency": "PLN", "recovery_url": "https://shop.example.pl/cart/recover/abc"}
SHIPPED_CONTEXT = {"order_number": "#1042", "courier": "InPost", "tracking_number": "620000111",
                   "tracking_url": "https://inpost.pl/sledzenie?number=620000111",
                   "shipped_at": "2026-06-10T08:00:00+00:00"}


def schedule(runtime, shop_id, **kwargs):
    from app.messaging.outbox import schedule_message

    with runtime.sessions.begin() as session, shop_context(shop_id):
        return schedule_message(session, shop_id=shop_id, **kwargs)


def work(runtime) -> int:
    return LocalWorker(runtime).run(exit_when_idle=True)


def message_row(runtime, shop_id, message_id) -> Message:
    with runtime.sessions() as session, shop_context(shop_id):
        return session.get(Message, message_id)


def attempts_of(runtime, shop_id, message_id) -> list[DeliveryAttempt]:
    with runtime.sessions() as session, shop_context(shop_id):
        return list(session.scalars(select(DeliveryAttempt).where(DeliveryAttempt.message_id == message_id)
                                    .order_by(DeliveryAttempt.attempt)))


def send_jobs(runtime, message_id) -> list[Job]:
    with runtime.sessions() as session:
        return [job for job in session.scalars(select(Job).where(Job.kind.like("messages.send_%")).order_by(Job.id))
                if job.args.get("message_id") == message_id]


def make_jobs_due(runtime) -> None:
    with runtime.engine.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.status == "queued").values(due_at=utcnow()))


def gates_of(message: Message) -> list[tuple[str, str]]:
    return [(entry["gate"], entry["verdict"]) for entry in message.gate_trace]


# --- fixtures the outbox tests share (import them by name into the test module) --------------------------

@pytest.fixture
def sink():
    """A real SMTP server (aiosmtpd) on loopback that keeps what it receives."""
    with SmtpSink() as running:
        yield running


@pytest.fixture
def twilio():
    """A loopback Twilio that speaks its Messages API and signs nothing of ours."""
    fake = FakeTwilio().start()
    yield fake
    fake.stop()


@pytest.fixture
def web(make_settings, sink):
    """The web application, its mail going to `sink`."""
    application = create_app(make_settings(**provider_env(sink)))
    yield application
    application.extensions["companion"].close()


@pytest.fixture
def web_runtime(web):
    """The runtime behind `web` (its database, executor and settings)."""
    return web.extensions["companion"]
