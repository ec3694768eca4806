"""The send job: gates again, a committed `sending` mark, one notifier call, and the outcome recorded.

A send job also takes the shop's other due messages on the same channel (up to `BATCH_LIMIT`, claiming their
jobs as its own) so that one worker keeps one provider connection busy instead of paying a job's overhead
per message. Each message still goes through every step on its own: gates right before its send, its own
committed `sending` mark before the call, its outcome recorded (in the transaction that marks the next one).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import html as html_escaping
import json
import logging
import queue
import re
import secrets
import threading
import time
from dataclasses import dataclass
from urllib.parse import quote

from jinja2 import TemplateError
from sqlalchemy import bindparam, exists, func, insert, literal, select, text, update
from sqlalchemy.orm import Session

from app.config import Settings
from app.jobs import registry
from app.jobs.queue import ClaimedJob, jobs, mark_failed, mark_many_succeeded, release
from app.jobs.registry import job_kind
from app.jobs.runner import JobContext
from app.messaging import exits, gates, links
from app.messaging.outbox import SEND_JOB_KINDS, enqueue_send, higher_priority_due, recent_capped_sends
from app.messaging.providers import ChannelNotConfigured, notifier_for, sender_domain
from app.messaging.render import Brand, Rendered, TemplateMissing, render_message
from app.models import (Consent, Customer, DeliveryAttempt, Message, MessagePreference, PushSubscription, Shop,
                        Suppression, utcnow)
from app.notifiers.base import ACCEPTED, FAILED_PERMANENTLY, RETRY_LATER, Envelope, SendOutcome
from app.notifiers.sms import count_segments, transliterate

log = logging.getLogger(__name__)

MAX_SEND_ATTEMPTS = 8
BATCH_LIMIT = 64  # messages one send job takes on for its shop and channel
PUSH_SENDERS = 2  # threads making a batch's push calls (the HTTP pool keeps 2 connections per push service)
SEND_LEASE_SECONDS = 120

messages_table = Message.__table__
attempts_table = DeliveryAttempt.__table__


def send_message(ctx: JobContext, message_id: int) -> None:
    """Send one outbox message, at most once, then the shop's other due messages on its channel.

    Safe to run twice: a settled row is left alone, and a row found `sending` becomes `unknown`.
    """
    run = SendRun(ctx)
    try:
        message = run.send(message_id)
        if message is not None:
            run.send_companions(message.shop_id, message.channel)
        run.finish()
    finally:
        run.stop()


@dataclass
class _Sent:
    """A message that left (or may have) whose outcome is not yet committed."""

    message_id: int
    attempt_id: int
    attempt_no: int
    outcome: SendOutcome | None  # None while the call is under way
    job: ClaimedJob | None
    message: Message | None = None


class SendRun:
    """One send job's walk through its messages. Each commit holds one message's `sending` mark together with the
    outcomes that came back since the last one; the companion jobs are marked done at the end."""

    def __init__(self, ctx: JobContext):
        self.ctx = ctx
        self.session = ctx.session
        self.sent: list[_Sent] = []  # sends whose outcome is known but not yet written
        self.sender: _Sender | None = None  # makes the provider calls of the companions, one at a time
        self.written: list[_Sent] = []  # outcomes written in the open transaction
        self.done_jobs: list[ClaimedJob] = []  # companion jobs whose message is settled; marked done at the end
        self.shops: dict[int, Shop] = {}
        self.notifiers: dict[tuple[int, str], object] = {}
        self.loaded: list = []  # the batch's rows: the session's identity map holds them only weakly
        self.allowance = SendAllowance(ctx.settings)
        self.ahead = 0  # messages of the batch still to come after the current one

    def send(self, message_id: int, job: ClaimedJob | None = None) -> Message | None:
        """Gates, the committed `sending` mark and the notifier call for one message; returns it when it was due.

        The message is composed before its transaction opens (from rows loaded with the batch): on SQLite a
        transaction holds the one writer lock, and rendering inside it would keep the other workers waiting.
        """
        session = self.session
        message = session.get(Message, message_id)
        if message is None:
            self._write_outcome()
            self._job_done(job)
            return None
        now = utcnow()
        due = message.status == "scheduled" and message.due_at <= now + dt.timedelta(seconds=1)
        shop = customer = envelope = notifier = None
        failure: Exception | None = None
        if due:
            shop = self.shops.get(message.shop_id) or session.get(Shop, message.shop_id)
            self.shops[shop.id] = shop
            customer = session.get(Customer, message.customer_id) if message.customer_id is not None else None
            try:
                envelope = compose(message, shop, customer, self.ctx.settings, now)
                notifier = self.notifiers.get((shop.id, message.channel))
                if notifier is None:  # per run: working out a shop's relay decrypts its credentials
                    notifier = self.notifiers[(shop.id, message.channel)] = notifier_for(shop, message.channel,
                                                                                          self.ctx.settings)
            except (TemplateMissing, ChannelNotConfigured, TemplateError, ValueError, LookupError, ArithmeticError) as exc:
                failure = exc  # reported only if the gates let the message through

        self._write_outcome()
        if message.status == "sending":
            _settle_lost_send(session, message, now)
            self._job_done(job)
            return None
        if not due:
            self._job_done(job)
            return None  # settled already, or moved to a later time whose own job will come

        # For email and push the suppression list is checked by the `sending` mark itself (one statement less
        # per message); any other ending looks at it first, so a suppressed address is never merely deferred.
        optimistic = message.channel != "sms"
        verdicts = evaluate_gates(session, message, shop, customer, now, suppression_in_claim=optimistic)
        stop = next((v for v in verdicts if v.result != gates.PASS), None)
        if optimistic and stop is not None and stop.gate in GATES_AFTER_SUPPRESSION:
            verdicts = evaluate_gates(session, message, shop, customer, now)
            stop = next((v for v in verdicts if v.result != gates.PASS), None)
        busy_until = None
        if stop is None:
            busy_until = self.allowance.busy_until(session, message, now, wanted=1 + self.ahead)
            if optimistic and (busy_until is not None or failure is not None) and _suppressed(session, message):
                verdicts = evaluate_gates(session, message, shop, customer, now)
                stop = next((v for v in verdicts if v.result != gates.PASS), None)
        trace = [*message.gate_trace, *(v.trace(now) for v in verdicts)]
        if stop is not None:
            self._stop(message, trace, stop)
            self._job_done(job)
            return message
        if busy_until is not None:
            message.gate_trace = [*trace, gates.Verdict(
                "rate_limit", gates.DEFER, "shop's sends per minute reached", until=busy_until).trace(now)]
            reschedule(session, message, busy_until)
            self._job_done(job)
            return message
        if failure is not None:
            # The message cannot be built as it stands (a variable missing, a bad amount): no retry would help.
            message.gate_trace = trace
            message.status = "failed"
            message.error = f"{type(failure).__name__}: {failure}"[:1000]
            self._job_done(job)
            return message

        if message.channel == "sms":
            segments = envelope.payload["segments"]
            message.context = {**message.context, "_sms": {"segments": segments, "encoding": envelope.payload["encoding"]}}
            budget = gates.sms_budget_gate(message.kind, _sms_segments_this_month(session, message, shop, now), segments,
                                           ((shop.settings or {}).get("sms") or {}).get("monthly_segment_budget"))
            trace.append(budget.trace(now))
            if budget.result != gates.PASS:
                message.gate_trace = trace
                message.status, message.error = budget.status, budget.detail
                self._job_done(job)
                return message

        if not _claim_for_sending(session, message, trace, check_suppression=optimistic):
            if optimistic and _suppressed(session, message):
                verdicts = evaluate_gates(session, message, shop, customer, now)
                stop = next(v for v in verdicts if v.result != gates.PASS)
                self._stop(message, [*message.gate_trace, *(v.trace(now) for v in verdicts)], stop)
                self._job_done(job)
                return message
            self._job_done(job)
            return None
        attempt_id, attempt_no = _start_attempt(session, message, notifier.provider, now)
        # The mark must be durable before anything leaves: a worker that dies now leaves `sending` behind.
        self._commit()

        if self.sender is not None:
            self.sender.submit(notifier, envelope, _Sent(message.id, attempt_id, attempt_no, None, job, message))
        else:
            self.sent.append(_Sent(message.id, attempt_id, attempt_no, notifier.send(envelope), job, message))
        return message

    def _stop(self, message: Message, trace: list, stop: gates.Verdict) -> None:
        message.gate_trace = trace
        if stop.result == gates.DEFER:
            reschedule(self.session, message, stop.until)
        else:
            message.status = stop.status or "suppressed"
            message.error = stop.detail[:1000]

    def send_companions(self, shop_id: int, channel: str) -> None:
        """The shop's other due messages on this channel, their jobs claimed by this run, sent one by one."""
        kind = registry.all_kinds().get(SEND_JOB_KINDS[channel])
        if kind is None or kind.is_limited:
            return  # a paced kind (SMS) leaves pacing to the job queue
        self._write_outcome()
        claimed = claim_companion_jobs(self.session, kind.name, shop_id, BATCH_LIMIT - 1, self.ctx.job_id)
        self.loaded = _load_batch(self.session, [int(job.args["message_id"]) for job in claimed])
        self._commit()  # the first message's outcome and the claims, together
        if not claimed:
            return
        # While one message is with the provider, this thread runs the next one's gates and commits its mark.
        self.sender = _Sender(PUSH_SENDERS if channel == "push" else 1)
        started = time.monotonic()
        for index, job in enumerate(claimed):
            self.ahead = len(claimed) - index - 1
            if time.monotonic() - started > SEND_LEASE_SECONDS / 3:
                # The claimed jobs' leases are not kept alive: hand the rest back well before they could expire.
                self._commit()
                release(self.session.connection(), claimed[index:])
                self._commit(settle_jobs=True)
                return
            try:
                self.send(int(job.args["message_id"]), job)
            except Exception as exc:  # noqa: BLE001 - one message's trouble must not lose the others' outcomes
                log.exception("send of a batched message failed", extra={"job_id": job.id})
                self._recover(job, claimed[index + 1:], f"{type(exc).__name__}: {exc}")
                return

    def finish(self) -> None:
        self._drain()
        self._commit(settle_jobs=True)

    def stop(self) -> None:
        """After an error: let the calls under way end (their outcomes are lost; the messages stay `sending`)."""
        if self.sender is not None:
            sender, self.sender = self.sender, None
            sender.close()

    def _drain(self) -> None:
        """Wait for the provider calls still under way; their outcomes join the ones to write."""
        if self.sender is not None:
            sender, self.sender = self.sender, None
            self.sent.extend(sender.close())

    def _job_done(self, job: ClaimedJob | None) -> None:
        if job is not None:
            self.done_jobs.append(job)

    def _write_outcome(self) -> None:
        if self.sender is not None:
            self.sent.extend(self.sender.finished())
        done, self.sent = self.sent, []
        for sent in done:
            record_outcome(self.session, sent.message_id, sent.attempt_id, sent.outcome, sent.attempt_no, sent.message)
            self.written.append(sent)
            self._job_done(sent.job)

    def _commit(self, settle_jobs: bool = False) -> None:
        """Commit what is written. Finished companion jobs are settled at the end only: should the worker die
        first, each runs again and finds its message settled."""
        self._write_outcome()
        if settle_jobs and self.done_jobs:
            mark_many_succeeded(self.session.connection(), self.done_jobs)
            self.done_jobs = []
        self.session.commit()
        self.written = []

    def _recover(self, failed: ClaimedJob, rest: list[ClaimedJob], error: str) -> None:
        """After a failure mid-batch: keep the outcomes already known, put the failed job back for later, and hand
        back every other job (one whose message is settled finds nothing to do when it runs again)."""
        session = self.session
        session.rollback()
        self._drain()
        pending = [*self.written, *self.sent]
        self.written, self.sent = [], []
        for sent in pending:  # facts about the world: written again in a transaction of their own
            record_outcome(session, sent.message_id, sent.attempt_id, sent.outcome, sent.attempt_no)
        connection = session.connection()
        retry_at = utcnow() + dt.timedelta(seconds=60) if failed.attempts < failed.max_attempts else None
        mark_failed(connection, failed, error[:4000], retry_at)
        release(connection, [*self.done_jobs, *(sent.job for sent in pending if sent.job is not None), *rest])
        self.done_jobs = []
        session.commit()


class _Sender:
    """Threads that make a batch's provider calls, each after its message's `sending` mark is committed.

    Email has one thread (one SMTP connection, one conversation at a time); push has `PUSH_SENDERS` over the
    pooled HTTP connections. At most one call per thread is under way and one waits, so a worker that dies
    leaves at most that many messages `sending` (they become `unknown`, as any interrupted send does).
    """

    def __init__(self, threads: int = 1):
        self._waiting: queue.Queue = queue.Queue(maxsize=1)
        self._lock = threading.Lock()
        self._finished: list[_Sent] = []
        self._threads = [threading.Thread(target=self._run, name="send-pipeline", daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, notifier, envelope: Envelope, sent: _Sent) -> None:
        self._waiting.put((notifier, envelope, sent))

    def finished(self) -> list[_Sent]:
        with self._lock:
            done, self._finished = self._finished, []
        return done

    def close(self) -> list[_Sent]:
        for _ in self._threads:
            self._waiting.put(None)
        for thread in self._threads:
            thread.join()
        return self.finished()

    def _run(self) -> None:
        while True:
            item = self._waiting.get()
            if item is None:
                return
            notifier, envelope, sent = item
            try:
                outcome = notifier.send(envelope)
            except Exception as exc:  # noqa: BLE001 - notifiers classify provider trouble; anything else is a bug
                log.exception("notifier raised during a send")
                outcome = SendOutcome.unknown(f"the send stopped with {type(exc).__name__}: {exc}")
            with self._lock:
                self._finished.append(dataclasses.replace(sent, outcome=outcome))


def _load_batch(session: Session, message_ids: list[int]) -> list:
    """The batch's messages, customers and push subscriptions in three queries, for the session's identity map.

    The gates read what can change (consent, suppression, the subscription's state) afresh right before each send.
    """
    if not message_ids:
        return []
    messages = session.scalars(select(Message).where(Message.id.in_(message_ids))).all()
    loaded: list = list(messages)
    customer_ids = {m.customer_id for m in messages if m.customer_id is not None}
    if customer_ids:
        loaded += session.scalars(select(Customer).where(Customer.id.in_(customer_ids))).all()
    subscription_ids = {(m.context.get("_push") or {}).get("subscription_id") for m in messages if m.channel == "push"}
    subscription_ids.discard(None)
    if subscription_ids:
        loaded += session.scalars(select(PushSubscription).where(PushSubscription.id.in_(subscription_ids))).all()
    return loaded


def claim_companion_jobs(session: Session, kind: str, shop_id: int, limit: int, job_id: int) -> list[ClaimedJob]:
    """Claim up to `limit` due, queued send jobs of `kind` for the shop, fenced like any claim."""
    if limit <= 0:
        return []
    now = utcnow()
    candidates = (
        select(jobs.c.id)
        .where(jobs.c.status == "queued", jobs.c.kind == kind, jobs.c.shop_id == shop_id, jobs.c.due_at <= now)
        .order_by(jobs.c.due_at, jobs.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = session.execute(
        update(jobs).where(jobs.c.id.in_(candidates.scalar_subquery()))
        .values(status="running", attempts=jobs.c.attempts + 1, locked_by=f"send-batch:{job_id}",
                lease_until=now + dt.timedelta(seconds=SEND_LEASE_SECONDS), started_at=now)
        .returning(jobs.c.id, jobs.c.kind, jobs.c.shop_id, jobs.c.args, jobs.c.attempts, jobs.c.max_attempts,
                   jobs.c.lease_until)
    ).all()
    return sorted((ClaimedJob(*row, claimed_at=now) for row in rows), key=lambda job: job.id)


_CLAIM_FOR_SENDING = (update(messages_table)
                      .where(messages_table.c.id == bindparam("message_id"), messages_table.c.status == "scheduled")
                      .values(status="sending", gate_trace=bindparam("trace")))
_CLAIM_UNLESS_SUPPRESSED = _CLAIM_FOR_SENDING.where(~exists().where(
    Suppression.__table__.c.shop_id == messages_table.c.shop_id,
    Suppression.__table__.c.channel == messages_table.c.channel,
    Suppression.__table__.c.address == messages_table.c.recipient))


def _claim_for_sending(session: Session, message: Message, trace: list, *, check_suppression: bool = False) -> bool:
    """Mark the row `sending` (with its gate trace) only if it is still `scheduled`: of two runners, one wins.

    With `check_suppression`, also only if its address is not on the shop's suppression list right now.
    """
    statement = _CLAIM_UNLESS_SUPPRESSED if check_suppression else _CLAIM_FOR_SENDING
    won = session.connection().execute(statement, {"message_id": message.id, "trace": trace}).rowcount == 1
    if won:
        # The row says so already; keep the loaded object in step without writing it again.
        from sqlalchemy.orm.attributes import set_committed_value

        set_committed_value(message, "status", "sending")
        set_committed_value(message, "gate_trace", trace)
    return won


_START_ATTEMPT = insert(attempts_table).from_select(
    ["shop_id", "message_id", "attempt", "provider", "outcome", "started_at"],
    select(bindparam("shop_id", type_=attempts_table.c.shop_id.type),
           bindparam("message_id", type_=attempts_table.c.message_id.type),
           # Shop and message: the (shop_id, message_id, attempt) unique index answers it without a scan.
           select(func.coalesce(func.max(attempts_table.c.attempt), 0) + 1)
           .where(attempts_table.c.shop_id == bindparam("shop_id"),
                  attempts_table.c.message_id == bindparam("message_id")).scalar_subquery(),
           bindparam("provider", type_=attempts_table.c.provider.type), literal("pending"),
           bindparam("started_at", type_=attempts_table.c.started_at.type)),
).returning(attempts_table.c.id, attempts_table.c.attempt)


def _start_attempt(session: Session, message: Message, provider: str, now: dt.datetime) -> tuple[int, int]:
    """The attempt row, numbered after the message's earlier attempts, in one statement."""
    row = session.connection().execute(_START_ATTEMPT, {"shop_id": message.shop_id, "message_id": message.id,
                                           "provider": provider, "started_at": now}).one()
    return row[0], row[1]


def _settle_lost_send(session: Session, message: Message, now: dt.datetime) -> None:
    """A previous run marked the row `sending` and never came back: the provider may have the message."""
    message.status = "unknown"
    message.error = "the worker stopped during the send; the provider may or may not have the message"
    message.gate_trace = [*message.gate_trace, {"gate": "send", "verdict": "unknown", "detail": message.error,
                                                 "at": now.isoformat()}]
    session.execute(update(DeliveryAttempt).where(DeliveryAttempt.message_id == message.id,
                                                  DeliveryAttempt.outcome == "pending")
                    .values(outcome="unknown", finished_at=now, response="worker lost during the send"))


GATES_AFTER_SUPPRESSION = ("quiet_hours", "frequency_cap")
SUPPRESSION_IN_CLAIM = gates.Verdict("suppression", gates.PASS, "address not suppressed")


def evaluate_gates(session: Session, message: Message, shop: Shop, customer: Customer | None,
                   now: dt.datetime, *, suppression_in_claim: bool = False) -> list[gates.Verdict]:
    """Every gate in order, stopping at the first that does not pass.

    With `suppression_in_claim` the suppression gate is taken as passed: the caller's `sending` mark holds only if
    the address is not suppressed at that moment, so the verdict is true when the message leaves.
    """
    settings = shop.settings or {}
    checks = [
        lambda: gates.exit_gate(exits.check_exits(session, message, message.context.get("_exit_conditions") or [])),
        # The consent ledger is read only where the gate looks at it (marketing on email and SMS).
        lambda: gates.consent_gate(message.kind, message.channel,
                                   _consent_state(session, message)
                                   if message.kind in gates.MARKETING_KINDS and message.channel != "push" else None,
                                   push_subscription_active=_push_active(session, message)),
        lambda: gates.preference_gate(message.kind, message.channel, _preference(session, message)),
        lambda: SUPPRESSION_IN_CLAIM if suppression_in_claim else gates.suppression_gate(_suppressed(session, message)),
        lambda: gates.quiet_hours_gate(message.kind, now, (customer.timezone if customer and customer.timezone else None)
                                       or shop.timezone or "UTC", _quiet_window(settings)),
        lambda: _cap_verdict(session, message, settings, now),
    ]
    verdicts = []
    for check in checks:
        verdict = check()
        verdicts.append(verdict)
        if verdict.result != gates.PASS:
            break
    return verdicts


def _consent_state(session: Session, message: Message) -> str | None:
    if message.customer_id is None:
        return None
    return session.execute(
        select(Consent.state).where(Consent.customer_id == message.customer_id, Consent.channel == message.channel)
        .order_by(Consent.recorded_at.desc(), Consent.id.desc()).limit(1)
    ).scalar_one_or_none()


# The gates' reads, built once (a statement built per message costs more than running it) and fresh per message.
# These run on the session's connection, past the ORM's tenant filter: each names its shop itself.
_subscriptions = PushSubscription.__table__
_suppressions = Suppression.__table__
_SUBSCRIPTION_STATE = select(_subscriptions.c.status).where(
    _subscriptions.c.shop_id == bindparam("shop_id"), _subscriptions.c.id == bindparam("subscription_id"))
_preferences = MessagePreference.__table__
_PREFERENCE = select(_preferences.c.wanted).where(
    _preferences.c.shop_id == bindparam("shop_id"), _preferences.c.customer_id == bindparam("customer_id"),
    _preferences.c.channel == bindparam("channel"), _preferences.c.kind == bindparam("kind"),
).order_by(_preferences.c.recorded_at.desc(), _preferences.c.id.desc()).limit(1)
_SUPPRESSION_REASON = select(_suppressions.c.reason).where(
    _suppressions.c.shop_id == bindparam("shop_id"), _suppressions.c.channel == bindparam("channel"),
    _suppressions.c.address == bindparam("address")).limit(1)


def _preference(session: Session, message: Message) -> bool | None:
    """The customer's newest choice for this channel and kind; None when they never chose (or it cannot apply)."""
    if message.customer_id is None or message.kind == "transactional":
        return None
    return session.connection().execute(_PREFERENCE, {
        "shop_id": message.shop_id, "customer_id": message.customer_id, "channel": message.channel,
        "kind": message.kind}).scalar_one_or_none()


def _push_active(session: Session, message: Message) -> bool | None:
    if message.channel != "push":
        return None
    state = session.connection().execute(_SUBSCRIPTION_STATE, {
        "shop_id": message.shop_id, "subscription_id": (message.context.get("_push") or {}).get("subscription_id")
    }).scalar_one_or_none()
    return state == "active"


def _suppressed(session: Session, message: Message) -> str | None:
    return session.connection().execute(_SUPPRESSION_REASON, {
        "shop_id": message.shop_id, "channel": message.channel, "address": message.recipient}).scalar_one_or_none()


def _quiet_window(shop_settings: dict) -> tuple[str, str] | None:
    quiet = shop_settings.get("quiet_hours", {"start": gates.DEFAULT_QUIET_HOURS[0], "end": gates.DEFAULT_QUIET_HOURS[1]})
    if not quiet:
        return None
    return quiet["start"], quiet["end"]


def _cap_verdict(session: Session, message: Message, shop_settings: dict, now: dt.datetime) -> gates.Verdict:
    caps = shop_settings.get("frequency_cap", {})  # None switches the cap off; a missing channel takes the default
    cap = caps.get(message.channel, gates.DEFAULT_CAPS.get(message.channel)) if caps is not None else None
    if isinstance(cap, dict):
        cap = (int(cap["max"]), float(cap["hours"]))
    if message.kind == "transactional" or not cap:
        return gates.frequency_cap_gate(message.kind, now, [], 0, cap)
    since = now - dt.timedelta(hours=cap[1])
    return gates.frequency_cap_gate(message.kind, now, recent_capped_sends(session, message, since),
                                    higher_priority_due(session, message, now), cap)


_RESERVE_SENDS = text(
    "INSERT INTO rate_limit_counters (key, window_start, count) VALUES (:key, :window_start, :n) "
    "ON CONFLICT (key, window_start) DO UPDATE SET count = rate_limit_counters.count + :n RETURNING count")
RESERVE_SHARE = 20  # a run reserves at most 1/20 of a shop's per-minute allowance at a time


class SendAllowance:
    """Across all workers: sends counted against each shop's per-minute allowance on a channel.

    A fixed-window counter row (the storefront's rate-limit table). A run reserves several sends in one upsert
    (at most what is left of its batch, and 1/RESERVE_SHARE of the limit, so a small limit stays exact); a
    reservation a run does not use still counts, which errs on the side of sending less.
    """

    def __init__(self, settings: Settings):
        self.limit = settings.messaging.shop_sends_per_minute
        self.held: dict[str, tuple[int, int]] = {}  # key -> (window, sends reserved and not yet used)

    def busy_until(self, session: Session, message: Message, now: dt.datetime, wanted: int = 1) -> dt.datetime | None:
        from app.storefront.ratelimit import WINDOW_SECONDS, current_window

        key = f"messages:{message.shop_id}:{message.channel}"
        window = current_window(now.timestamp())
        held_window, left = self.held.get(key, (window, 0))
        if held_window == window and left > 0:
            self.held[key] = (window, left - 1)
            return None
        asked = max(1, min(wanted, self.limit // RESERVE_SHARE))
        count = session.connection().execute(_RESERVE_SENDS, {"key": key, "window_start": window, "n": asked}).scalar_one()
        granted = min(asked, max(0, self.limit - (count - asked)))
        if granted == 0:
            self.held.pop(key, None)
            return dt.datetime.fromtimestamp((window + 1) * WINDOW_SECONDS, tz=dt.timezone.utc)
        self.held[key] = (window, granted - 1)
        return None


def _sms_segments_this_month(session: Session, message: Message, shop: Shop, now: dt.datetime) -> int:
    """Segments of the shop's SMS that left (or may have) since the 1st of this month on the shop's clock."""
    from zoneinfo import ZoneInfo

    local = now.astimezone(ZoneInfo(shop.timezone or "UTC"))
    month_start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0).astimezone(dt.timezone.utc)
    contexts = session.execute(
        select(Message.context).where(Message.channel == "sms", Message.id != message.id,
                                      Message.status.in_(("sent", "sending", "unknown")),
                                      func.coalesce(Message.sent_at, Message.due_at) >= month_start)
    ).scalars()
    return sum(int(((context or {}).get("_sms") or {}).get("segments") or 1) for context in contexts)


def reschedule(session: Session, message: Message, until: dt.datetime) -> None:
    message.status = "scheduled"
    message.due_at = until
    enqueue_send(session, message.shop_id, message.id, message.channel, until)


RENDER_CACHE_SIZE = 512
_rendered_cache: dict[tuple, tuple[Rendered, tuple[str, ...]]] = {}
_MARK = f"cmp{secrets.token_hex(6)}"  # per process, so no message text can contain it by chance
_LINK_MARK = re.compile(rf"{_MARK}L(\d+)_")


def render_for_message(template: str, locale: str, variables: dict, *, brand: Brand, timezone: str,
                       link=None, open_pixel_url: str | None = None, unsubscribe_url: str | None = None) -> Rendered:
    """`render_message`, rendered once per distinct text: the per-message links go in afterwards.

    A campaign or a run of shipping notices renders the same words for many recipients; only the signed click,
    open and unsubscribe URLs differ. Those are rendered as marks, and each message gets its own URLs put in
    (HTML-escaped in the HTML part, as Jinja would have written them).
    """
    key = (template, locale, json.dumps(variables, sort_keys=True, default=str), brand, timezone,
           link is not None, open_pixel_url is not None, unsubscribe_url is not None)
    cached = _rendered_cache.get(key)
    if cached is None:
        targets: list[str] = []

        def mark(url: str) -> str:
            targets.append(url)
            return f"{_MARK}L{len(targets) - 1}_"

        rendered = render_message(template, locale, variables, brand=brand, timezone=timezone,
                                  link=mark if link is not None else None,
                                  open_pixel_url=f"{_MARK}O_" if open_pixel_url is not None else None,
                                  unsubscribe_url=f"{_MARK}U_" if unsubscribe_url is not None else None)
        if len(_rendered_cache) >= RENDER_CACHE_SIZE:
            _rendered_cache.clear()
        cached = _rendered_cache[key] = (rendered, tuple(targets))
    rendered, targets = cached
    if _MARK not in rendered.html and _MARK not in rendered.text and _MARK not in rendered.sms:
        return rendered
    signed: dict[str, str] = {}

    def url_of(index: int) -> str:
        target = targets[index]
        if target not in signed:
            signed[target] = link(target)
        return signed[target]

    def fill(text: str, escape) -> str:
        if _MARK not in text:
            return text
        text = _LINK_MARK.sub(lambda found: escape(url_of(int(found.group(1)))), text)
        if open_pixel_url is not None:
            text = text.replace(f"{_MARK}O_", escape(open_pixel_url))
        if unsubscribe_url is not None:
            text = text.replace(f"{_MARK}U_", escape(unsubscribe_url))
        return text

    plain = lambda value: value  # noqa: E731
    escaped = lambda value: html_escaping.escape(value, quote=True)  # noqa: E731
    return Rendered(subject=fill(rendered.subject, plain), text=fill(rendered.text, plain),
                    html=fill(rendered.html, escaped), sms=fill(rendered.sms, plain),
                    push_title=fill(rendered.push_title, plain), push_body=fill(rendered.push_body, plain))


def compose(message: Message, shop: Shop, customer: Customer | None, settings: Settings, now: dt.datetime) -> Envelope:
    """Render the message for its channel and wrap it with the headers and payload the notifier needs."""
    marketing = message.kind in gates.MARKETING_KINDS
    variables = {k: v for k, v in (message.context or {}).items() if not k.startswith("_")}
    variables.setdefault("first_name", customer.first_name if customer else "")
    unsubscribe = links.unsubscribe_url(settings, links.UnsubscribeTarget(
        message.shop_id, message.customer_id, message.channel, message.recipient, message.id)) if marketing else None
    tracked = message.channel == "email"
    rendered = render_for_message(
        message.template, message.locale, variables, brand=Brand.from_shop(shop),
        timezone=(customer.timezone if customer and customer.timezone else None) or shop.timezone or "UTC",
        link=(lambda url: links.click_url(settings, message.shop_id, message.id, url)) if tracked else None,
        open_pixel_url=links.open_pixel_url(settings, message.shop_id, message.id) if tracked else None,
        unsubscribe_url=unsubscribe,
    )
    key = f"message:{message.shop_id}:{message.id}"
    if message.channel == "email":
        domain = sender_domain(shop, settings)
        headers = {
            "Message-ID": f"<m{message.id}.s{message.shop_id}@{domain}>",
            "Date": email.utils.format_datetime(now),
        }
        if marketing:
            token = links.unsubscribe_token(settings, links.UnsubscribeTarget(
                message.shop_id, message.customer_id, message.channel, message.recipient, message.id))
            mailto = f"mailto:unsubscribe@{domain}?subject={quote('unsubscribe ' + token)}"
            headers["List-Unsubscribe"] = f"<{unsubscribe}>, <{mailto}>"
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        return Envelope("email", message.recipient, key, subject=rendered.subject, text=rendered.text,
                        html=rendered.html, headers=headers)
    if message.channel == "sms":
        sms_settings = (shop.settings or {}).get("sms") or {}
        text = rendered.sms
        if marketing:
            # One-way senders (alphanumeric IDs, all of Romania) cannot receive STOP: the link is the way out.
            text = f"{text} STOP: {unsubscribe}"
        if sms_settings.get("transliterate"):
            text = transliterate(text)
        segments = count_segments(text)
        return Envelope("sms", message.recipient, key, text=text, payload={
            "status_callback": f"{settings.public_url}/m/twilio/status/{message.shop_id}/{message.id}",
            "segments": segments.segments, "encoding": segments.encoding})
    push = message.context.get("_push") or {}
    subscription = _subscription_info(message, push)
    data = {"title": rendered.push_title, "body": rendered.push_body}
    if variables.get("url"):
        data["url"] = variables["url"]
    return Envelope("push", message.recipient, key, subject=rendered.push_title, text=rendered.push_body, payload={
        "subscription": subscription, "ttl": push.get("ttl", 86_400), "urgency": push.get("urgency", "normal"),
        "topic": push.get("topic"), "data": data})


def _subscription_info(message: Message, push: dict) -> dict:
    from sqlalchemy.orm import object_session

    subscription = object_session(message).get(PushSubscription, push.get("subscription_id"))
    if subscription is None:
        raise ValueError("the push subscription is gone")
    return {"endpoint": subscription.endpoint, "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth}}


_FINISH_ATTEMPT = (update(attempts_table).where(attempts_table.c.id == bindparam("attempt_id"))
                   .values(outcome=bindparam("outcome"), response=bindparam("response"),
                           finished_at=bindparam("finished_at")))


_MARK_SENT = (update(messages_table).where(messages_table.c.id == bindparam("message_id"))
              .values(status="sent", sent_at=bindparam("at"), provider_message_id=bindparam("provider_id"), error=None,
                      gate_trace=bindparam("trace")))


def record_outcome(session: Session, message_id: int, attempt_id: int, outcome: SendOutcome, attempt_no: int,
                   message: Message | None = None) -> None:
    """Write what the provider did: the attempt row, the message status, and any suppression it implies."""
    now = utcnow()
    if message is None or message.id != message_id:
        message = session.get(Message, message_id)
    session.connection().execute(_FINISH_ATTEMPT, {
        "attempt_id": attempt_id, "finished_at": now, "response": (outcome.detail or "")[:4000],
        # the column holds 16 characters
        "outcome": "failed" if outcome.status == FAILED_PERMANENTLY else outcome.status})
    trace = {"gate": "send", "verdict": outcome.status, "detail": (outcome.detail or "")[:500], "at": now.isoformat()}
    if outcome.status == ACCEPTED:
        # The common case, written by a prebuilt statement; the loaded object is kept in step without a flush.
        from sqlalchemy.orm.attributes import set_committed_value

        gate_trace = [*message.gate_trace, trace]
        session.connection().execute(_MARK_SENT, {"message_id": message.id, "at": now, "provider_id": outcome.provider_message_id,
                                     "trace": gate_trace})
        for name, value in (("status", "sent"), ("sent_at", now), ("provider_message_id", outcome.provider_message_id),
                            ("error", None), ("gate_trace", gate_trace)):
            set_committed_value(message, name, value)
        return
    elif outcome.status == RETRY_LATER:
        if attempt_no >= MAX_SEND_ATTEMPTS:
            message.status = "failed"
            message.error = f"gave up after {attempt_no} attempts: {outcome.detail}"[:1000]
        else:
            until = now + dt.timedelta(seconds=outcome.retry_after or 60)
            trace["until"] = until.isoformat()
            message.status = "scheduled"
            message.due_at = until
            message.error = outcome.detail[:1000]
            enqueue_send(session, message.shop_id, message.id, message.channel, until)
    elif outcome.status == FAILED_PERMANENTLY:
        message.status = "failed"
        message.error = outcome.detail[:1000]
        if outcome.suppress:
            suppress(session, message.shop_id, message.channel, message.recipient, _suppression_reason(message, outcome))
        if outcome.subscription_gone:
            _forget_subscription(session, message, outcome.detail)
    else:
        message.status = "unknown"
        message.error = outcome.detail[:1000]
    message.gate_trace = [*message.gate_trace, trace]


def _suppression_reason(message: Message, outcome: SendOutcome) -> str:
    if message.channel == "sms" and "21610" in outcome.detail:
        return "sms_opted_out"
    return "hard_bounce" if message.channel == "email" else "provider_refused"


def suppress(session: Session, shop_id: int, channel: str, address: str, reason: str) -> None:
    """Add the address to the shop's suppression list (once)."""
    exists = session.execute(select(Suppression.id).where(
        Suppression.shop_id == shop_id, Suppression.channel == channel, Suppression.address == address)).first()
    if exists is None:
        session.add(Suppression(shop_id=shop_id, channel=channel, address=address, reason=reason[:64]))
        session.flush()


def _forget_subscription(session: Session, message: Message, detail: str) -> None:
    subscription = session.get(PushSubscription, (message.context.get("_push") or {}).get("subscription_id"))
    if subscription is not None:
        session.delete(subscription)


# The generic name the design uses; rows enqueued under it run the same function, paced by nothing but the shop's share.
job_kind("messages.send", max_attempts=5, lease_seconds=120)(send_message)
for _channel, _kind in SEND_JOB_KINDS.items():
    # One kind per provider so each gets its own pacing; MESSAGES_PER_SHOP_PER_MINUTE adds the per-shop share.
    job_kind(_kind, max_attempts=5, lease_seconds=120, **({"rate_per_second": 50.0} if _channel == "sms" else {}))(send_message)
