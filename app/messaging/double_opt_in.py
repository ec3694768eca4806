"""The confirmation email of a storefront sign-up (double opt-in), sent through the outbox like any message."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from app.clock import clock_scan
from app.jobs.queue import enqueue
from app.jobs.registry import job_kind
from app.jobs.runner import JobContext
from app.messaging.outbox import MessageRefused, schedule_message
from app.models import Customer
from app.models.storefront import DoubleOptIn
from app.storefront.optin import SEND_JOB_KIND, confirmation_url


@job_kind(SEND_JOB_KIND, max_attempts=5)
def send_double_opt_in(ctx: JobContext, double_opt_in_id: int) -> None:
    """Put the confirmation email in the outbox once per sign-up; the click on its link records the proof."""
    session = ctx.session
    row = session.get(DoubleOptIn, double_opt_in_id)
    if row is None or row.status in ("sent", "confirmed"):
        return
    customer = session.get(Customer, row.customer_id)
    if customer is None or not customer.email:
        return
    try:
        # Asked for by the visitor a moment ago: a transactional message, with no unsubscribe headers.
        schedule_message(session, shop_id=row.shop_id, channel="email", kind="transactional", template="double_opt_in",
                         customer_id=customer.id, locale=row.locale,
                         context={"confirm_url": confirmation_url(ctx.settings, row)},
                         dedupe_parts=("double_opt_in", row.id, row.nonce))
    except MessageRefused:
        return
    row.status = "sent"


@clock_scan("storefront.double_opt_in_backlog", every_seconds=60)
def queue_unsent_confirmations(runtime, now: dt.datetime) -> int:
    """Sign-ups recorded before any sender existed (status `unsent`) get their send job."""
    queued = 0
    with runtime.sessions.begin() as session:
        rows = session.scalars(select(DoubleOptIn).where(DoubleOptIn.status == "unsent").limit(500)
                               .execution_options(all_shops=True)).all()
        for row in rows:
            enqueue(session, SEND_JOB_KIND, shop_id=row.shop_id, dedupe_key=f"double_opt_in:{row.id}",
                    double_opt_in_id=row.id)
            row.status = "queued"
            queued += 1
    return queued
