"""The send job: gates again, a committed `sending` mark, one notifier call, and the outcome recorded.

A send job also takes the shop's other due messages on the same channel (up to `BATCH_LIMIT`, claiming their
jobs as its own) so that one worker keeps one provider connection busy instead of paying a job's overhead
per message. They go a group (`GROUP_SIZE`) at a time, and each message still goes through every step on its
own: its gates in the transaction that commits its own `sending` mark, that commit before its call, its outcome
recorded (in the transaction that marks the next group). Only the transaction is shared within a group.
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
from sqlalchemy import bindparam, exists, func, insert, select, text, update
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
GROUP_SIZE = 8  # messages of a batch whose `sending` marks commit together (a worker has at most two groups out)
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
    shop_id: int
    attempt_no: int
    outcome: SendOutcome | None  # None while the call is under way
    job: ClaimedJob | None
    message: Message | None = None


@dataclass
class _Ready:
    """One message of a group, composed before the group's transaction opens."""

    message: Message | None
    job: ClaimedJob | None
    now: dt.datetime
    due: bool = False
    shop: Shop | None = None
    customer: Customer | None = None
    envelope: Envelope | None = None
    notifier: object | None = None
    failure: Exception | None = None  # the message cannot be built: reported only if the gates let it through
    ahead: int = 0  # messages of the batch still to come after this one
    trace: list | None = None


class SendRun:
    """One send job's walk through its messages, a group at a time.

    A group's transaction writes the outcomes that came back since the last one, runs each message's gates and
    commits the `sending` marks of those that may go; only then are they handed to the provider, one by one.
    The companion jobs are marked done at the end.
    """

    def __init__(self, ctx: JobContext):
        self.ctx = ctx
        self.session = ctx.session
        self.sent: list[_Sent] = []  # sends whose outcome is known but not yet written
        self.sender: _Sender | None = None  # makes the provider calls of the companions
        self.written: list[_Sent] = []  # outcomes written in the open transaction
        self.done_jobs: list[ClaimedJob] = []  # companion jobs whose message is settled; marked done at the end
        self.shops: dict[int, Shop] = {}
        self.notifiers: dict[tuple[int, str], object] = {}
        self.loaded: list = []  # the batch's rows: the session's identity map holds them only weakly
        self.allowance = SendAllowance(ctx.settings)
        self.subscription_states: dict[int, str] = {}  # the current group's push subscriptions, read in its transaction

    def send(self, message_id: int, job: ClaimedJob | None = None) -> Message | None:
        """Gates, the committed `sending` mark and the notifier call for one message; returns it when it was due."""
        return self._send_group([(message_id, job)])[0]

    def _send_group(self, items: list[tuple[int, ClaimedJob | None]], ahead: int = 0) -> list[Message | None]:
        """Up to GROUP_SIZE messages: composed first, then one transaction for their gates and `sending` marks.

        Each message still gets its own gates, trace, mark and attempt row; only the commit is shared. On SQLite a
        transaction holds the one writer lock, so the rendering happens before it opens.
        """
        ready = [self._compose(message_id, job, ahead + len(items) - index - 1)
                 for index, (message_id, job) in enumerate(items)]
        if self.sender is not None:
            # Besides the group about to be marked, at most one group may be waiting for the provider: a worker
            # that dies leaves at most 2 * GROUP_SIZE messages `sending` (they become `unknown`).
            self.sender.wait_until_at_most(GROUP_SIZE)
        self._write_outcome()
        # The gates read live rows in the transaction that commits the marks; a group's push subscriptions in one go.
        self.subscription_states = _subscription_states(
            self.session, [item.message for item in ready if item.due and item.message.channel == "push"])
        results = [self._gate(item) for item in ready]
        claiming = [index for index, result in enumerate(results) if result is _CLAIM]
        if not claiming:
            return results
        # For email and push the mark also checks the suppression list (see _gate); SMS looked at it already.
        won = _claim_for_sending(self.session, [(ready[i].message, ready[i].trace) for i in claiming
                                                if ready[i].message.channel != "sms"], check_suppression=True)
        won |= _claim_for_sending(self.session, [(ready[i].message, ready[i].trace) for i in claiming
                                                 if ready[i].message.channel == "sms"])
        going = []
        for index in claiming:
            item = ready[index]
            if item.message.id in won:
                going.append(item)
                results[index] = item.message
            else:
                results[index] = self._lost_claim(item)
        attempts = _start_attempts(self.session, [(item.message, item.notifier.provider) for item in going])
        # The marks must be durable before anything leaves: a worker that dies now leaves `sending` behind.
        self._commit()
        for item in going:
            sent = _Sent(item.message.id, item.message.shop_id, attempts[item.message.id], None, item.job, item.message)
            if self.sender is not None:
                self.sender.submit(item.notifier, item.envelope, sent)
            else:
                self.sent.append(dataclasses.replace(sent, outcome=item.notifier.send(item.envelope)))
        return results

    def _compose(self, message_id: int, job: ClaimedJob | None, ahead: int) -> _Ready:
        session = self.session
        message = session.get(Message, message_id)
        now = utcnow()
        item = _Ready(message, job, now, ahead=ahead)
        if message is None:
            return item
        item.due = message.status == "scheduled" and message.due_at <= now + dt.timedelta(seconds=1)
        if not item.due:
            return item
        shop = item.shop = self.shops.get(message.shop_id) or session.get(Shop, message.shop_id)
        self.shops[shop.id] = shop
        item.customer = session.get(Customer, message.customer_id) if message.customer_id is not None else None
        try:
            item.envelope = compose(message, shop, item.customer, self.ctx.settings, now)
            notifier = self.notifiers.get((shop.id, message.channel))
            if notifier is None:  # per run: working out a shop's relay decrypts its credentials
                notifier = self.notifiers[(shop.id, message.channel)] = notifier_for(shop, message.channel,
                                                                                      self.ctx.settings)
            item.notifier = notifier
        except (TemplateMissing, ChannelNotConfigured, TemplateError, ValueError, LookupError, ArithmeticError) as exc:
            item.failure = exc
        return item

    def _gate(self, item: _Ready):
        """The message's gates, in the group's transaction: _CLAIM when it may go, else how it ended (or None)."""
        session, message, job, now = self.session, item.message, item.job, item.now
        if message is None:
            self._job_done(job)
            return None
        if message.status == "sending":
            _settle_lost_send(session, message, now)
            self._job_done(job)
            return None
        if not item.due:
            self._job_done(job)
            return None  # settled already, or moved to a later time whose own job will come
        shop, customer = item.shop, item.customer

        # For email and push the suppression list is checked by the `sending` mark itself (one statement less
        # per message); any other ending looks at it first, so a suppressed address is never merely deferred.
        optimistic = message.channel != "sms"
        states = self.subscription_states if message.channel == "push" else None
        verdicts = evaluate_gates(session, message, shop, customer, now, suppression_in_claim=optimistic,
                                  subscription_states=states)
        stop = next((v for v in verdicts if v.result != gates.PASS), None)
        if optimistic and stop is not None and stop.gate in GATES_AFTER_SUPPRESSION:
            verdicts = evaluate_gates(session, message, shop, customer, now, subscription_states=states)
            stop = next((v for v in verdicts if v.result != gates.PASS), None)
        busy_until = None
        if stop is None:
            busy_until = self.allowance.busy_until(session, message, now, wanted=1 + item.ahead)
            if optimistic and (busy_until is not None or item.failure is not None) and _suppressed(session, message):
                verdicts = evaluate_gates(session, message, shop, customer, now, subscription_states=states)
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
        if item.failure is not None:
            # The message cannot be built as it stands (a variable missing, a bad amount): no retry would help.
            message.gate_trace = trace
            message.status = "failed"
            message.error = f"{type(item.failure).__name__}: {item.failure}"[:1000]
            self._job_done(job)
            return message

        if message.channel == "sms":
            envelope = item.envelope
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
        item.trace = trace
        return _CLAIM

    def _lost_claim(self, item: _Ready) -> Message | None:
        """The row was not `scheduled` any more (another runner has it), or its address was just suppressed."""
        session, message, now = self.session, item.message, item.now
        if message.channel != "sms" and _suppressed(session, message):
            verdicts = evaluate_gates(session, message, item.shop, item.customer, now)
            stop = next(v for v in verdicts if v.result != gates.PASS)
            self._stop(message, [*message.gate_trace, *(v.trace(now) for v in verdicts)], stop)
            self._job_done(item.job)
            return message
        self._job_done(item.job)
        return None

    def _stop(self, message: Message, trace: list, stop: gates.Verdict) -> None:
        message.gate_trace = trace
        if stop.result == gates.DEFER:
            reschedule(self.session, message, stop.until)
        else:
            message.status = stop.status or "suppressed"
            message.error = stop.detail[:1000]

    def send_companions(self, shop_id: int, channel: str) -> None:
        """The shop's other due messages on this channel, their jobs claimed by this run, sent a group at a time."""
        kind = registry.all_kinds().get(SEND_JOB_KINDS[channel])
        if kind is None or kind.is_limited:
            return  # a paced kind (SMS) leaves pacing to the job queue
        self._write_outcome()
        claimed = claim_companion_jobs(self.session, kind.name, shop_id, BATCH_LIMIT - 1, self.ctx.job_id)
        self.loaded = _load_batch(self.session, [int(job.args["message_id"]) for job in claimed])
        self._commit()  # the first message's outcome and the claims, together
        if not claimed:
            return
        # While the provider has one group, this thread runs the next group's gates and commits their marks.
        self.sender = _Sender(PUSH_SENDERS if channel == "push" else 1)
        started = time.monotonic()
        for start in range(0, len(claimed), GROUP_SIZE):
            if time.monotonic() - started > SEND_LEASE_SECONDS / 3:
                # The claimed jobs' leases are not kept alive: hand the rest back well before they could expire.
                self._commit()
                release(self.session.connection(), claimed[start:])
                self._commit(settle_jobs=True)
                return
            group = claimed[start:start + GROUP_SIZE]
            try:
                self._send_group([(int(job.args["message_id"]), job) for job in group],
                                 ahead=len(claimed) - start - len(group))
                continue
            except Exception as exc:  # noqa: BLE001 - one message's trouble must not lose the others' outcomes
                if len(group) == 1:
                    log.exception("send of a batched message failed", extra={"job_id": group[0].id})
                    self._recover(group[0], claimed[start + 1:], f"{type(exc).__name__}: {exc}")
                    return
                log.warning("a group of batched sends failed; its messages go one at a time", exc_info=True)
                self._undo_group()
            # Nothing of the group was committed: one message at a time, to find the one at fault.
            for index, job in enumerate(group):
                try:
                    self.send(int(job.args["message_id"]), job)
                except Exception as exc:  # noqa: BLE001
                    log.exception("send of a batched message failed", extra={"job_id": job.id})
                    self._recover(job, [*group[index + 1:], *claimed[start + len(group):]], f"{type(exc).__name__}: {exc}")
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
        if not done:
            return
        record_outcomes(self.session, done)
        for sent in done:
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

    def _undo_group(self) -> None:
        """Roll back a group's transaction that failed before its commit: the outcomes it wrote are written again
        with the next one, and its messages are as they were (still `scheduled`, nothing sent)."""
        self.session.rollback()
        self.sent, self.written = [*self.written, *self.sent], []

    def _recover(self, failed: ClaimedJob, rest: list[ClaimedJob], error: str) -> None:
        """After a failure mid-batch: keep the outcomes already known, put the failed job back for later, and hand
        back every other job (one whose message is settled finds nothing to do when it runs again)."""
        session = self.session
        session.rollback()
        self._drain()
        pending = [*self.written, *self.sent]
        self.written, self.sent = [], []
        if pending:  # facts about the world: written again in a transaction of their own
            record_outcomes(session, [dataclasses.replace(sent, message=None) for sent in pending])
        connection = session.connection()
        retry_at = utcnow() + dt.timedelta(seconds=60) if failed.attempts < failed.max_attempts else None
        mark_failed(connection, failed, error[:4000], retry_at)
        release(connection, [*self.done_jobs, *(sent.job for sent in pending if sent.job is not None), *rest])
        self.done_jobs = []
        session.commit()


_CLAIM = object()  # _gate's answer for a message that may go


class _Sender:
    """Threads that make a batch's provider calls, each after its message's `sending` mark is committed.

    Email has one thread (one SMTP connection, one conversation at a time); push has `PUSH_SENDERS` over the
    pooled HTTP connections. The run commits a group's marks only while at most one group waits here, so a
    worker that dies leaves at most two groups `sending` (they become `unknown`, as any interrupted send does).
    """

    def __init__(self, threads: int = 1):
        self._waiting: queue.SimpleQueue = queue.SimpleQueue()
        self._changed = threading.Condition()
        self._pending = 0  # submitted and not finished
        self._finished: list[_Sent] = []
        self._threads = [threading.Thread(target=self._run, name="send-pipeline", daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, notifier, envelope: Envelope, sent: _Sent) -> None:
        with self._changed:
            self._pending += 1
        self._waiting.put((notifier, envelope, sent))

    def wait_until_at_most(self, pending: int) -> None:
        with self._changed:
            while self._pending > pending:
                self._changed.wait()

    def finished(self) -> list[_Sent]:
        with self._changed:
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
            with self._changed:
                self._finished.append(dataclasses.replace(sent, outcome=outcome))
                self._pending -= 1
                self._changed.notify_all()


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


_MARK_SENDING = (update(messages_table)
                 .where(messages_table.c.id.in_(bindparam("message_ids", expanding=True)),
                        messages_table.c.status == "scheduled")
                 .values(status="sending")
                 .returning(messages_table.c.id))
_MARK_SENDING_UNLESS_SUPPRESSED = _MARK_SENDING.where(~exists().where(
    Suppression.__table__.c.shop_id == messages_table.c.shop_id,
    Suppression.__table__.c.channel == messages_table.c.channel,
    Suppression.__table__.c.address == messages_table.c.recipient))
_WRITE_TRACE = (update(messages_table).where(messages_table.c.id == bindparam("message_id"))
                .values(gate_trace=bindparam("trace")))


def _claim_for_sending(session: Session, claims: list[tuple[Message, list]], *,
                       check_suppression: bool = False) -> set[int]:
    """Mark the rows `sending` (each with its gate trace) where still `scheduled`: of two runners, one wins each.

    With `check_suppression`, only rows whose address is not on the shop's suppression list right now.
    Returns the ids this run won.
    """
    if not claims:
        return set()
    statement = _MARK_SENDING_UNLESS_SUPPRESSED if check_suppression else _MARK_SENDING
    connection = session.connection()
    won = set(connection.execute(statement, {"message_ids": [message.id for message, _ in claims]}).scalars())
    mine = [(message, trace) for message, trace in claims if message.id in won]
    if mine:
        connection.execute(_WRITE_TRACE, [{"message_id": message.id, "trace": trace} for message, trace in mine])
    # The rows say so already; keep the loaded objects in step without writing them again.
    from sqlalchemy.orm.attributes import set_committed_value

    for message, trace in mine:
        set_committed_value(message, "status", "sending")
        set_committed_value(message, "gate_trace", trace)
    return won


_LAST_ATTEMPTS = (select(attempts_table.c.message_id, func.max(attempts_table.c.attempt))
                  .where(attempts_table.c.shop_id == bindparam("shop_id"),
                         attempts_table.c.message_id.in_(bindparam("message_ids", expanding=True)))
                  .group_by(attempts_table.c.message_id))


def _start_attempts(session: Session, sends: list[tuple[Message, str]]) -> dict[int, int]:
    """An attempt row per message, numbered after its earlier attempts; returns each message's attempt number.

    Only the runner that marked a message `sending` adds its attempt, so numbering cannot race.
    """
    if not sends:
        return {}
    connection = session.connection()
    numbers: dict[int, int] = {}
    for shop_id in {message.shop_id for message, _ in sends}:
        ids = [message.id for message, _ in sends if message.shop_id == shop_id]
        numbers.update(connection.execute(_LAST_ATTEMPTS, {"shop_id": shop_id, "message_ids": ids}).all())
    now = utcnow()
    rows = [{"shop_id": message.shop_id, "message_id": message.id, "attempt": numbers.get(message.id, 0) + 1,
             "provider": provider, "outcome": "pending", "started_at": now} for message, provider in sends]
    connection.execute(insert(attempts_table), rows)
    return {row["message_id"]: row["attempt"] for row in rows}


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
                   now: dt.datetime, *, suppression_in_claim: bool = False,
                   subscription_states: dict[int, str] | None = None) -> list[gates.Verdict]:
    """Every gate in order, stopping at the first that does not pass.

    With `suppression_in_claim` the suppression gate is taken as passed: the caller's `sending` mark holds only if
    the address is not suppressed at that moment, so the verdict is true when the message leaves.
    `subscription_states` are push subscriptions' states the caller read in this transaction (by id).
    """
    settings = shop.settings or {}
    checks = [
        lambda: gates.exit_gate(exits.check_exits(session, message, message.context.get("_exit_conditions") or [])),
        # The consent ledger is read only where the gate looks at it (marketing on email and SMS).
        lambda: gates.consent_gate(message.kind, message.channel,
                                   _consent_state(session, message)
                                   if message.kind in gates.MARKETING_KINDS and message.channel != "push" else None,
                                   push_subscription_active=_push_active(session, message, subscription_states)),
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


def _push_active(session: Session, message: Message, states: dict[int, str] | None = None) -> bool | None:
    if message.channel != "push":
        return None
    subscription_id = (message.context.get("_push") or {}).get("subscription_id")
    if states is not None and subscription_id in states:
        return states[subscription_id] == "active"
    state = session.connection().execute(_SUBSCRIPTION_STATE, {
        "shop_id": message.shop_id, "subscription_id": subscription_id}).scalar_one_or_none()
    return state == "active"


_SUBSCRIPTION_STATES = select(_subscriptions.c.id, _subscriptions.c.status).where(
    _subscriptions.c.shop_id == bindparam("shop_id"), _subscriptions.c.id.in_(bindparam("ids", expanding=True)))


def _subscription_states(session: Session, messages: list[Message]) -> dict[int, str]:
    """The states of these push messages' subscriptions, one query per shop; a deleted one is simply missing."""
    states: dict[int, str] = {}
    wanted: dict[int, list[int]] = {}
    for message in messages:
        subscription_id = (message.context.get("_push") or {}).get("subscription_id")
        if isinstance(subscription_id, int):
            wanted.setdefault(message.shop_id, []).append(subscription_id)
    for shop_id, ids in wanted.items():
        found = dict(session.connection().execute(_SUBSCRIPTION_STATES, {"shop_id": shop_id, "ids": ids}).all())
        states.update({subscription_id: found.get(subscription_id, "gone") for subscription_id in ids})
    return states


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
_MARK = f"cmp{secrets.token_hex(6)}"  # per process, so no message text can contain it by chance
_ANY_MARK = re.compile(rf"{_MARK}(?:L(\d+)|(O)|(U))_")
_PARTS = ("subject", "text", "html", "sms", "push_title", "push_body")


@dataclass(frozen=True)
class _Cut:
    """A rendering with its marks found once: each part as literal pieces alternating with link slots (a target's
    index, or "O" for the open pixel, "U" for the unsubscribe URL); None for a part without marks."""

    rendered: Rendered
    targets: tuple[str, ...]
    pieces: dict[str, tuple | None]


_rendered_cache: dict[tuple, _Cut] = {}


def _cut_at_marks(text: str) -> tuple | None:
    if _MARK not in text:
        return None
    pieces: list = []
    last = 0
    for found in _ANY_MARK.finditer(text):
        link_index, pixel, _unsubscribe = found.groups()
        pieces += [text[last:found.start()], int(link_index) if link_index is not None else ("O" if pixel else "U")]
        last = found.end()
    pieces.append(text[last:])
    return tuple(pieces)


def render_for_message(template: str, locale: str, variables: dict, *, brand: Brand, timezone: str,
                       link=None, open_pixel_url: str | None = None, unsubscribe_url: str | None = None) -> Rendered:
    """`render_message`, rendered once per distinct text: the per-message links go in afterwards.

    A campaign or a run of shipping notices renders the same words for many recipients; only the signed click,
    open and unsubscribe URLs differ. Those are rendered as marks, and each message gets its own URLs put in
    (HTML-escaped in the HTML part, as Jinja would have written them).
    """
    key = (template, locale, json.dumps(variables, sort_keys=True, default=str), brand, timezone,
           link is not None, open_pixel_url is not None, unsubscribe_url is not None)
    cut = _rendered_cache.get(key)
    if cut is None:
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
        cut = _rendered_cache[key] = _Cut(rendered, tuple(targets),
                                          {part: _cut_at_marks(getattr(rendered, part)) for part in _PARTS})
    if not any(cut.pieces.values()):
        return cut.rendered
    plain: dict = {"O": open_pixel_url, "U": unsubscribe_url}
    signed: dict[str, str] = {}
    for index, target in enumerate(cut.targets):
        if target not in signed:
            signed[target] = link(target)
        plain[index] = signed[target]
    escaped: dict = {}

    def fill(part: str) -> str:
        pieces = cut.pieces[part]
        if pieces is None:
            return getattr(cut.rendered, part)
        values = plain
        if part == "html":
            if not escaped:
                escaped.update((slot, html_escaping.escape(url, quote=True)) for slot, url in plain.items() if url)
            values = escaped
        filled = list(pieces)
        for index in range(1, len(filled), 2):
            filled[index] = values[filled[index]]
        return "".join(filled)

    return Rendered(**{part: fill(part) for part in _PARTS})


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


_FINISH_ATTEMPT = (update(attempts_table)
                   .where(attempts_table.c.shop_id == bindparam("a_shop_id"),
                          attempts_table.c.message_id == bindparam("a_message_id"),
                          attempts_table.c.attempt == bindparam("a_attempt"))
                   .values(outcome=bindparam("outcome"), response=bindparam("response"),
                           finished_at=bindparam("finished_at")))


_MARK_SENT = (update(messages_table).where(messages_table.c.id == bindparam("message_id"))
              .values(status="sent", sent_at=bindparam("at"), provider_message_id=bindparam("provider_id"), error=None,
                      gate_trace=bindparam("trace")))


def record_outcome(session: Session, message_id: int, attempt_no: int, outcome: SendOutcome,
                   message: Message | None = None) -> None:
    """Write what the provider did: the attempt row, the message status, and any suppression it implies."""
    if message is None or message.id != message_id:
        message = session.get(Message, message_id)
    record_outcomes(session, [_Sent(message_id, message.shop_id, attempt_no, outcome, None, message)])


def record_outcomes(session: Session, sends: list[_Sent]) -> None:
    """`record_outcome` for several sends: the attempt rows and the accepted messages each in one statement."""
    from sqlalchemy.orm.attributes import set_committed_value

    now = utcnow()
    connection = session.connection()
    connection.execute(_FINISH_ATTEMPT, [{
        "a_shop_id": sent.shop_id, "a_message_id": sent.message_id, "a_attempt": sent.attempt_no,
        "finished_at": now, "response": (sent.outcome.detail or "")[:4000],
        # the column holds 16 characters
        "outcome": "failed" if sent.outcome.status == FAILED_PERMANENTLY else sent.outcome.status} for sent in sends])
    accepted = []
    for sent in sends:
        message = sent.message
        if message is None or message.id != sent.message_id:
            message = session.get(Message, sent.message_id)
        outcome = sent.outcome
        trace = {"gate": "send", "verdict": outcome.status, "detail": (outcome.detail or "")[:500], "at": now.isoformat()}
        if outcome.status == ACCEPTED:
            accepted.append((message, outcome, [*message.gate_trace, trace]))
        else:
            _record_refusal(session, message, outcome, sent.attempt_no, trace, now)
    if accepted:
        # The common case, written by a prebuilt statement; the loaded objects are kept in step without a flush.
        connection.execute(_MARK_SENT, [{"message_id": message.id, "at": now, "provider_id": outcome.provider_message_id,
                                         "trace": gate_trace} for message, outcome, gate_trace in accepted])
        for message, outcome, gate_trace in accepted:
            for name, value in (("status", "sent"), ("sent_at", now), ("provider_message_id", outcome.provider_message_id),
                                ("error", None), ("gate_trace", gate_trace)):
                set_committed_value(message, name, value)


def _record_refusal(session: Session, message: Message, outcome: SendOutcome, attempt_no: int, trace: dict,
                    now: dt.datetime) -> None:
    """A send that was not accepted: tried again later, failed (perhaps suppressing the address) or unknown."""
    if outcome.status == RETRY_LATER:
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
