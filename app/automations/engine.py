"""Flow runs: signals start them, the clock wakes them, and each wake runs steps until the next wait.

A run keeps the flow version it started on; it advances one step at a time, checking its exit conditions
before every step, and re-reading the live store before any recovery message or coupon. Every choice is
written as a decision row, so "why did (or didn't) this customer get that message" has an answer.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from collections import defaultdict
from decimal import Decimal
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.automations.definitions import evaluate, step_targets
from app.automations.batches import enqueue_batches
from app.automations.detection import customer_for_contact
from app.automations.details import custom_events_since_start, message_details
from app.automations.outbox_port import Refused, submit_message
from app.automations.segments import refresh_customers, refresh_for_signals, segment_names, trigger_matches
from app.automations.signals import is_paid
from app.automations.timing import wait_until
from app.automations.trace import record_decision
from app.automations.truth import LiveQuery, LiveState, StoreUnreachable, purchase_since, read_live_state
from app.clock import clock_scan, period_key
from app.config import Settings
from app.jobs import registry
from app.jobs.queue import enqueue
from app.jobs.registry import job_kind
from app.models import (Cart, CartLine, Consent, Coupon, Customer, CustomerTag, Flow, FlowRun, FlowVersion, Message,
                        Order, Shop, Signal, Tag, utcnow)

log = logging.getLogger(__name__)

ROUTE_SCAN, ROUTE_EVERY = "automations.route_signals", 15
STEPS_SCAN, STEPS_EVERY = "automations.due_steps", 30
SCAN_LIMIT, BATCH = 50_000, 200
ACTIVE_STATES = ("waiting", "running")
MAX_STEPS_PER_WAKE = 50
LIVE_RETRY = dt.timedelta(minutes=15)
LIVE_GIVE_UP = dt.timedelta(hours=48)
COUPON_COOLDOWN_DAYS = 30
LOCALES = ("pl", "ro", "en")
COUPON_JOBS = {"shopify": "shopify.create_discount", "woocommerce": "woocommerce.create_coupon"}


def _insert(session: Session, table):
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return dialect_insert(table)


# --- routing signals to flows ------------------------------------------------------------------------------

def enqueue_signal_routing(session: Session, now: dt.datetime, *, limit: int = SCAN_LIMIT, batch: int = BATCH) -> int:
    signals = Signal.__table__
    due = (select(signals.c.id, signals.c.shop_id).where(signals.c.routed_at.is_(None))
           .order_by(signals.c.routed_at, signals.c.id).limit(limit))
    return enqueue_batches(session, "automations.route_signals", due, argument="signal_ids", batch=batch,
                           dedupe_prefix=period_key(ROUTE_SCAN, ROUTE_EVERY, now), now=now)


@clock_scan(ROUTE_SCAN, every_seconds=ROUTE_EVERY)
def scan_unrouted_signals(runtime, now: dt.datetime) -> int:
    with runtime.sessions.begin() as session:
        return enqueue_signal_routing(session, now)


@job_kind("automations.route_signals")
def route_signals_job(ctx, signal_ids: list[int]) -> None:
    """Start flow runs for the given signals; a signal already routed is skipped."""
    route_signals(ctx.session, ctx.shop_id, signal_ids, utcnow())


def route_signals(session: Session, shop_id: int, signal_ids: list[int], now: dt.datetime) -> list[int]:
    """Start runs of the shop's enabled flows whose trigger matches each signal; returns the new run ids."""
    query = select(Signal).where(Signal.shop_id == shop_id, Signal.id.in_(signal_ids), Signal.routed_at.is_(None))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    pending = list(session.scalars(query.order_by(Signal.id)))
    if not pending:
        return []
    refresh_for_signals(session, shop_id, pending, now)  # its segment_entered/left signals are routed next time
    flows: dict[str, list[Flow]] = defaultdict(list)
    for flow in session.scalars(select(Flow).where(Flow.shop_id == shop_id, Flow.enabled.is_(True)).order_by(Flow.id)):
        flows[flow.trigger].append(flow)
    started = []
    for signal in pending:
        for flow in flows.get(signal.kind, []):
            if not trigger_matches(flow.definition or {}, signal.kind, signal.payload):
                continue
            run_id = start_run(session, shop_id, flow, signal, now)
            if run_id is not None:
                started.append(run_id)
        signal.routed_at = now
    session.flush()
    if started:  # the first steps run now, not at the next clock tick
        enqueue(session, "automations.run_step", shop_id=shop_id, run_ids=started,
                dedupe_key=f"automations.start:{shop_id}:{started[0]}")
    return started


def start_run(session: Session, shop_id: int, flow: Flow, signal: Signal, now: dt.datetime) -> int | None:
    definition = flow.definition or {}
    subject = (signal.subject_type, signal.subject_id) if signal.subject_type else None
    trace = dict(flow_id=flow.id, flow_version=flow.version, signal_id=signal.id, now=now, subject=subject)
    customer = _signal_customer(session, shop_id, signal)
    if customer is None:
        record_decision(session, shop_id, "not_started_no_customer", **trace)
        return None
    context = {"subject": {"type": signal.subject_type, "id": signal.subject_id}, "signal_id": signal.id,
               "signal": signal.payload or {}, "since": signal.occurred_at.isoformat(),
               "version": (signal.payload or {}).get("version") or signal.id}
    audience = definition.get("audience")
    if audience and not evaluate(audience, gather_facts(session, shop_id, customer, context)):
        record_decision(session, shop_id, "not_started_audience", customer_id=customer.id, **trace)
        return None
    trigger_key = f"{signal.subject_type}:{signal.subject_id}" if signal.subject_type else f"signal:{signal.id}"
    active = list(session.scalars(select(FlowRun).where(FlowRun.shop_id == shop_id, FlowRun.flow_id == flow.id,
                                                        FlowRun.customer_id == customer.id, FlowRun.state.in_(ACTIVE_STATES))))
    if definition.get("reentry") == "parallel":  # every signal its own run (each refund, each product alert)
        active, trigger_key = [], f"signal:{signal.id}"
    elif definition.get("reentry") == "restart":  # a newer status of the same order restarts: a key of its own
        trigger_key = f"{trigger_key}:signal:{signal.id}"
    if active and definition.get("reentry", "skip") == "skip":
        record_decision(session, shop_id, "not_started_already_in_flow", customer_id=customer.id,
                        flow_run_id=active[0].id, **trace)
        return None
    for old in active:
        _finish(session, old, "exited", "superseded", now)
    table = FlowRun.__table__
    run_id = session.execute(_insert(session, table).values(
        shop_id=shop_id, flow_id=flow.id, flow_version=flow.version, customer_id=customer.id, trigger_key=trigger_key,
        state="waiting", next_step=0, due_at=now, context=context, started_at=now,
    ).on_conflict_do_nothing(index_elements=["shop_id", "flow_id", "customer_id", "trigger_key"]).returning(table.c.id)
    ).scalar_one_or_none()
    if run_id is None:
        record_decision(session, shop_id, "not_started_duplicate", customer_id=customer.id, **trace)
        return None
    record_decision(session, shop_id, "run_started", customer_id=customer.id, flow_run_id=run_id, **trace)
    return run_id


def _signal_customer(session: Session, shop_id: int, signal: Signal) -> Customer | None:
    """The signal's customer; for a guest's order or cart, the customer its email or phone points to (or a new guest)."""
    if signal.customer_id is not None:
        return session.get(Customer, signal.customer_id)
    row = None
    if signal.subject_type == "order" and signal.subject_id:
        row = session.get(Order, signal.subject_id)
    elif signal.subject_type == "cart" and signal.subject_id:
        row = session.get(Cart, signal.subject_id)
    if row is None:
        return None
    customer = customer_for_contact(session, shop_id, None, row.email, row.phone)
    if customer is not None:
        signal.customer_id = customer.id
    return customer


# --- facts a condition can read -------------------------------------------------------------------------------

def _subject_rows(session: Session, context: dict) -> tuple[Cart | None, Order | None]:
    subject = context.get("subject") or {}
    if subject.get("type") == "cart" and subject.get("id"):
        return session.get(Cart, subject["id"]), None
    if subject.get("type") == "order" and subject.get("id"):
        return None, session.get(Order, subject["id"])
    return None, None


def gather_facts(session: Session, shop_id: int, customer: Customer | None, context: dict,
                 run_id: int | None = None) -> dict[str, Any]:
    facts: dict[str, Any] = {f"signal.{k}": v for k, v in (context.get("signal") or {}).items()}
    if customer is not None:
        tags = session.scalars(select(Tag.name).join(CustomerTag, CustomerTag.tag_id == Tag.id)
                               .where(CustomerTag.shop_id == shop_id, CustomerTag.customer_id == customer.id)).all()
        facts.update({"customer.orders_count": customer.orders_count, "customer.total_spent": customer.total_spent,
                      "customer.locale": customer.locale, "customer.has_email": bool(customer.email),
                      "customer.has_phone": bool(customer.phone), "customer.tags": list(tags),
                      "customer.segments": segment_names(session, shop_id, customer.id)})
    cart, order = _subject_rows(session, context)
    if cart is not None:
        lines = session.scalar(select(func.count()).select_from(CartLine).where(CartLine.shop_id == shop_id,
                                                                                 CartLine.cart_id == cart.id))
        facts.update({"cart.total": cart.total, "cart.currency": cart.currency, "cart.status": cart.status,
                      "cart.lines_count": lines})
    if order is not None:
        facts.update({"order.total": order.total, "order.status": order.status, "order.is_paid": is_paid(order),
                      "order.financial_status": order.financial_status, "order.payment_method": order.payment_method})
    if run_id is not None:
        last = session.scalars(select(Message).where(Message.shop_id == shop_id, Message.flow_run_id == run_id)
                               .order_by(Message.id.desc()).limit(1)).first()
        if last is not None:
            facts.update({"last_message.opened": last.opened_at is not None,
                          "last_message.clicked": last.clicked_at is not None, "last_message.status": last.status})
        if customer is not None:
            facts["run.custom_events"] = custom_events_since_start(session, shop_id, customer.id, run_id)
    return facts


# --- waking runs -------------------------------------------------------------------------------------------

def due_runs_query(now: dt.datetime, limit: int):
    """Waiting runs whose next step is due, earliest first: a range of ix_flow_runs_state_due_at."""
    runs = FlowRun.__table__
    return (select(runs.c.id, runs.c.shop_id).where(runs.c.state == "waiting", runs.c.due_at <= now)
            .order_by(runs.c.due_at).limit(limit))


def enqueue_due_steps(session: Session, now: dt.datetime, *, limit: int = SCAN_LIMIT, batch: int = BATCH) -> int:
    """Insert one `automations.run_step` job per shop per batch of runs whose next step is due."""
    return enqueue_batches(session, "automations.run_step", due_runs_query(now, limit), argument="run_ids", batch=batch,
                           dedupe_prefix=period_key(STEPS_SCAN, STEPS_EVERY, now), now=now)


@clock_scan(STEPS_SCAN, every_seconds=STEPS_EVERY)
def scan_due_steps(runtime, now: dt.datetime) -> int:
    with runtime.sessions.begin() as session:
        return enqueue_due_steps(session, now)


@job_kind("automations.run_step")
def run_step_job(ctx, run_ids: list[int]) -> None:
    """Advance each due run; each run commits on its own, so a slow store read never holds others back."""
    for run_id in run_ids:
        advance_run(ctx.sessions, ctx.settings, ctx.shop_id, run_id, utcnow())


def needs_live_check(steps: list[dict], index: int) -> bool:
    """Will the run, from `index` up to its next wait, send a recovery message or mint a coupon?"""
    seen, todo = set(), [index]
    while todo:
        i = todo.pop()
        if i is None or i in seen or i >= len(steps):
            continue
        seen.add(i)
        step = steps[i]
        if step.get("type") == "wait":
            continue
        if step.get("type") == "coupon" or (step.get("type") == "send" and step.get("kind") == "recovery"):
            return True
        todo += step_targets(steps, i)
    return False


def _definition(session: Session, run: FlowRun) -> dict:
    version = session.scalars(select(FlowVersion).where(FlowVersion.shop_id == run.shop_id, FlowVersion.flow_id == run.flow_id,
                                                        FlowVersion.version == run.flow_version)).first()
    return version.definition if version is not None else {}


def _live_query(session: Session, shop: Shop, run: FlowRun, customer: Customer | None) -> LiveQuery | None:
    cart, order = _subject_rows(session, run.context or {})
    if cart is not None:
        began = min(cart.created_at, cart.last_activity_at)
        return LiveQuery(shop.id, shop.platform, began, email=cart.email or (customer.email if customer else None),
                         phone=cart.phone or (customer.phone if customer else None), tokens=(cart.platform_token,))
    if order is not None:
        return LiveQuery(shop.id, shop.platform, (order.placed_at or order.created_at) - dt.timedelta(minutes=1),
                         order_platform_id=order.platform_id, email=order.email, phone=order.phone)
    return None


def advance_run(sessions: sessionmaker[Session], settings: Settings, shop_id: int, run_id: int,
                now: dt.datetime) -> str | None:
    """Run a due run's steps up to its next wait or its end; returns its state afterwards (None if not due)."""
    with sessions() as session:
        run = session.get(FlowRun, run_id)
        if run is None or run.state != "waiting" or run.due_at is None or run.due_at > now:
            return None
        steps = _definition(session, run).get("steps") or []
        shop = session.get(Shop, shop_id)
        query = _live_query(session, shop, run, session.get(Customer, run.customer_id)) \
            if needs_live_check(steps, run.next_step) else None
    live: LiveState | StoreUnreachable | None = None
    if query is not None:  # outside any write transaction: the store may be slow
        try:
            live = read_live_state(sessions, settings, query)
        except StoreUnreachable as exc:
            live = exc
    with sessions.begin() as session:
        claimed = session.execute(update(FlowRun).where(FlowRun.id == run_id, FlowRun.state == "waiting",
                                                        FlowRun.due_at <= now).values(state="running")).rowcount
        if claimed != 1:
            return None
        run = session.get(FlowRun, run_id)
        session.refresh(run)
        _Advance(session, settings, session.get(Shop, shop_id), run, now, live, query).go()
        return run.state


class _Advance:
    """One wake of one run, inside one transaction."""

    def __init__(self, session: Session, settings: Settings, shop: Shop, run: FlowRun, now: dt.datetime,
                 live: LiveState | StoreUnreachable | None, query: LiveQuery | None):
        self.session, self.settings, self.shop, self.run, self.now = session, settings, shop, run, now
        self.live, self.query = live, query
        self.definition = _definition(session, run)
        self.steps: list[dict] = self.definition.get("steps") or []
        self.customer = session.get(Customer, run.customer_id)
        self.context = dict(run.context or {})
        self.gates: list[dict] = []

    def decide(self, decision: str, step: dict | None = None, **detail) -> None:
        self.gates.append({"decision": decision, **{k: str(v) if isinstance(v, (Decimal, dt.datetime)) else v
                                                     for k, v in detail.items()}})
        subject = self.context.get("subject") or {}
        record_decision(self.session, self.shop.id, decision, customer_id=self.run.customer_id, flow_run_id=self.run.id,
                        subject=(subject.get("type"), subject.get("id")) if subject.get("type") else None,
                        step=(step or {}).get("id"), now=self.now, **detail)

    def go(self) -> None:
        for _ in range(MAX_STEPS_PER_WAKE):
            index = self.run.next_step
            if index is None or index < 0 or index >= len(self.steps):
                return self.finish("completed", None)
            reason = self.exit_reason()
            if reason:
                return self.finish("exited", reason)
            step = self.steps[index]
            outcome = getattr(self, f"step_{step['type']}")(step, index)
            if outcome == "finished":
                return
            if outcome == "stop":
                self.save()
                return
        self.finish("exited", "loop_guard")

    def save(self) -> None:
        self.run.context = {**self.context}

    def finish(self, state: str, reason: str | None) -> None:
        self.decide(f"run_{state}", reason=reason)
        self.save()
        _finish(self.session, self.run, state, reason, self.now)

    def follow(self, index: int, target_key: str = "next", step: dict | None = None) -> None:
        targets = step_targets(self.steps, index)
        chosen = targets[0] if target_key in ("next", "then") else targets[-1]
        self.run.next_step = chosen if chosen is not None else len(self.steps)

    # --- exits -------------------------------------------------------------------------------------
    def exit_reason(self) -> str | None:
        exits = set(self.definition.get("exit") or [])
        cart, order = _subject_rows(self.session, self.context)
        subject = self.context.get("subject") or {}
        if "purchased" in exits:
            if cart is not None and cart.status in ("converted", "recovered"):
                return self._exit_decision("purchased", gate="local", cart_status=cart.status)
            bought = self._local_purchase(order)
            if bought is not None:
                return self._exit_decision("purchased", gate="local", order_id=bought)
        if order is not None and "order_paid" in exits and is_paid(order):
            return self._exit_decision("order_paid", gate="local", order_id=order.id)
        if order is not None and "order_cancelled" in exits and order.cancelled_at is not None:
            return self._exit_decision("order_cancelled", gate="local", order_id=order.id)
        if "cart_emptied" in exits and subject.get("type") == "cart":
            lines = 0 if cart is None else self.session.scalar(select(func.count()).select_from(CartLine).where(
                CartLine.shop_id == self.shop.id, CartLine.cart_id == cart.id))
            if cart is None or (not lines and cart.total <= 0):
                return self._exit_decision("cart_emptied", gate="local")
        if "unsubscribed" in exits and self._unsubscribed():
            return self._exit_decision("unsubscribed", gate="consent")
        return self._live_exit(exits, order)

    def _exit_decision(self, reason: str, **detail) -> str:
        self.gates.append({"exit": reason, **detail})
        return reason

    def _local_purchase(self, subject_order: Order | None) -> int | None:
        since = dt.datetime.fromisoformat(self.context["since"]) if self.context.get("since") else self.run.started_at
        who = [Order.customer_id == self.run.customer_id]
        if self.customer is not None and self.customer.email:
            who.append(Order.email == self.customer.email)
        if self.customer is not None and self.customer.phone:
            who.append(Order.phone == self.customer.phone)
        query = select(Order.id).where(Order.shop_id == self.shop.id, or_(*who), Order.cancelled_at.is_(None),
                                       func.coalesce(Order.placed_at, Order.created_at) >= since)
        if subject_order is not None:
            query = query.where(Order.id != subject_order.id)
        return self.session.scalars(query.limit(1)).first()

    def _unsubscribed(self) -> bool:
        channels = {s.get("channel") for s in self.steps if s.get("type") == "send"} or {"email"}
        for channel in channels:
            newest = self.session.scalars(select(Consent.state).where(
                Consent.shop_id == self.shop.id, Consent.customer_id == self.run.customer_id, Consent.channel == channel)
                .order_by(Consent.recorded_at.desc(), Consent.id.desc()).limit(1)).first()
            if newest != "revoked":
                return False
        return True

    def _live_exit(self, exits: set[str], order: Order | None) -> str | None:
        if not isinstance(self.live, LiveState) or self.query is None:
            return None
        from app.store.apply import apply_order

        bought = purchase_since(self.live, self.query, exclude_platform_id=order.platform_id if order else None)
        if bought is not None and ("purchased" in exits or order is None):
            if bought.platform_id not in self.live.partial:
                apply_order(self.session, self.shop.id, bought)  # the webhook that should have told us
            return self._exit_decision("purchased", gate="live_check", order_platform_id=bought.platform_id)
        if self.live.checkout_completed and order is None:
            return self._exit_decision("purchased", gate="live_check", checkout_completed=True)
        if order is not None:
            for fresh in self.live.orders:
                if fresh.platform_id == order.platform_id:
                    if fresh.platform_id not in self.live.partial:
                        apply_order(self.session, self.shop.id, fresh)
                    paid = fresh.paid_at is not None or (fresh.financial_status or "").lower() == "paid"
                    if paid and "order_paid" in exits:
                        return self._exit_decision("order_paid", gate="live_check", order_id=order.id)
                    if fresh.cancelled_at is not None and "order_cancelled" in exits:
                        return self._exit_decision("order_cancelled", gate="live_check", order_id=order.id)
        return None

    # --- steps -------------------------------------------------------------------------------------
    def step_wait(self, step: dict, index: int) -> str:
        due = wait_until(step, self.now, self.shop.timezone)
        self.follow(index)
        self.run.state, self.run.due_at = "waiting", due
        self.decide("wait", step, until=due.isoformat())
        return "stop"

    def step_condition(self, step: dict, index: int) -> str:
        holds = evaluate(step["if"], gather_facts(self.session, self.shop.id, self.customer, self.context, self.run.id))
        self.decide("condition_true" if holds else "condition_false", step)
        self.follow(index, "then" if holds else "else")
        return "continue"

    def _live_gate(self, step: dict) -> str | None:
        """None when the live store was read and allows going on (or there is no cart or order to ask about);
        otherwise 'stop' after postponing."""
        if isinstance(self.live, LiveState) or (self.context.get("subject") or {}).get("type") not in ("cart", "order"):
            return None
        first = self.context.get("first_postponed_at")
        first_at = dt.datetime.fromisoformat(first) if first else self.now
        if isinstance(self.live, StoreUnreachable):
            if self.now - first_at >= LIVE_GIVE_UP:
                self.finish("exited", "store_unreachable")
                return "stop_finished"
            self.context["first_postponed_at"] = first_at.isoformat()
            self.decide("postponed_store_unreachable", step, error=str(self.live)[:300])
            log.warning("store unreachable; flow step postponed",
                        extra={"shop_id": self.shop.id, "flow_run_id": self.run.id, "step": step.get("id")})
        else:
            self.decide("postponed_live_check_pending", step)
        self.run.state, self.run.due_at = "waiting", self.now + (LIVE_RETRY if self.live is not None else dt.timedelta(seconds=1))
        return "stop"

    def step_send(self, step: dict, index: int) -> str:
        if step.get("kind") == "recovery":
            gate = self._live_gate(step)
            if gate == "stop_finished":
                return "finished"
            if gate:
                return gate
            if isinstance(self.live, LiveState):
                self.gates.append({"gate": "live_check", "result": "not_bought", "at": self.live.checked_at.isoformat()
                                   if self.live.checked_at else None})
        self.gates.append({"gate": "flow_exits", "checked": sorted(self.definition.get("exit") or []), "met": None})
        recipient = self._recipient(step["channel"])
        subject = self.context.get("subject") or {}
        digest = hashlib.sha256((recipient or f"customer:{self.run.customer_id}").encode()).hexdigest()[:16]
        dedupe_key = (f"flow:{self.run.flow_id}:{step['id']}:{subject.get('type')}:{subject.get('id')}:"
                      f"{self.context.get('version')}:{digest}")
        cart, order = _subject_rows(self.session, self.context)
        message_context = {"flow_id": self.run.flow_id, "flow_run_id": self.run.id, "step": step["id"],
                           "cart_id": cart.id if cart else None, "order_id": order.id if order else None,
                           "recovery_url": cart.recovery_url if cart else None,
                           "coupon_code": self.context.get("coupon_code"),
                           **message_details(self.session, self.shop.id, self.context)}
        exit_conditions = []
        if cart is not None and step.get("kind") == "recovery":
            exit_conditions.append({"name": "cart_converted", "args": {"cart_id": cart.id}})
        if order is not None and "order_paid" in (self.definition.get("exit") or []):
            exit_conditions.append({"name": "order_paid", "args": {"order_id": order.id}})
        try:
            submitted = submit_message(
                self.session, shop_id=self.shop.id, channel=step["channel"], kind=step["kind"], recipient=recipient,
                template=step["template"], locale=self._locale(), context=message_context, dedupe_key=dedupe_key,
                customer_id=self.run.customer_id, flow_run_id=self.run.id, gate_trace=list(self.gates),
                exit_conditions=exit_conditions)
        except Refused as exc:
            self.decide("send_skipped_no_address", step, channel=step["channel"], reason=str(exc)[:200])
            self.follow(index)
            return "continue"
        self.context["last_message_id"] = submitted.message_id
        self.decide("message_queued" if submitted.created else "message_already_queued", step,
                    message_id=submitted.message_id, template=step["template"], channel=step["channel"])
        self.follow(index)
        return "continue"

    def _recipient(self, channel: str) -> str | None:
        cart, _ = _subject_rows(self.session, self.context)
        if channel == "email":
            return (self.customer.email if self.customer else None) or (cart.email if cart else None)
        if channel == "sms":
            return (self.customer.phone if self.customer else None) or (cart.phone if cart else None)
        return None  # push goes to the customer's newest active subscription

    def _locale(self) -> str:
        locale = (self.customer.locale or "")[:2] if self.customer else ""
        return locale if locale in LOCALES else (self.shop.locale if self.shop.locale in LOCALES else "en")

    def step_tag(self, step: dict, index: int) -> str:
        if step.get("add"):
            tag_id = _tag_id(self.session, self.shop.id, step["add"])
            self.session.execute(_insert(self.session, CustomerTag.__table__).values(
                shop_id=self.shop.id, customer_id=self.run.customer_id, tag_id=tag_id, created_at=self.now,
            ).on_conflict_do_nothing(index_elements=["shop_id", "customer_id", "tag_id"]))
            self.decide("tag_added", step, tag=step["add"])
        if step.get("remove"):
            tag = self.session.scalars(select(Tag).where(Tag.shop_id == self.shop.id, Tag.name == step["remove"])).first()
            if tag is not None:
                for link in self.session.scalars(select(CustomerTag).where(
                        CustomerTag.shop_id == self.shop.id, CustomerTag.customer_id == self.run.customer_id,
                        CustomerTag.tag_id == tag.id)):
                    self.session.delete(link)
            self.decide("tag_removed", step, tag=step["remove"])
        refresh_customers(self.session, self.shop.id, [self.run.customer_id], self.now)  # "has tag" segments
        self.follow(index)
        return "continue"

    def step_coupon(self, step: dict, index: int) -> str:
        gate = self._live_gate(step)
        if gate == "stop_finished":
            return "finished"
        if gate:
            return gate
        cooldown = dt.timedelta(days=float(step.get("cooldown_days", (self.shop.settings or {}).get(
            "coupon_cooldown_days", COUPON_COOLDOWN_DAYS))))
        earlier = self.session.scalars(select(Coupon).where(
            Coupon.shop_id == self.shop.id, Coupon.customer_id == self.run.customer_id,
            Coupon.created_at >= self.now - cooldown).order_by(Coupon.created_at.desc()).limit(1)).first()
        if earlier is not None:
            self.context.pop("coupon_code", None)
            self.decide("coupon_withheld_serial_abandoner", step, earlier_coupon_id=earlier.id,
                        earlier_at=earlier.created_at.isoformat(), cooldown_days=cooldown.days)
            self.follow(index)
            return "continue"
        cart, order = _subject_rows(self.session, self.context)
        coupon = Coupon(shop_id=self.shop.id, code=f"{step.get('prefix', 'WRACAJ')}-{secrets.token_hex(4).upper()}",
                        customer_id=self.run.customer_id, cart_id=cart.id if cart else None,
                        percent_off=Decimal(str(step["percent_off"])) if step.get("percent_off") is not None else None,
                        amount_off=Decimal(str(step["amount_off"])) if step.get("amount_off") is not None else None,
                        currency=(cart.currency if cart else order.currency if order else self.shop.currency),
                        expires_at=self.now + dt.timedelta(hours=float(step.get("expires_hours", 48))), created_at=self.now)
        self.session.add(coupon)
        self.session.flush()
        job = COUPON_JOBS.get(self.shop.platform)
        if job in registry.all_kinds():
            enqueue(self.session, job, shop_id=self.shop.id, coupon_id=coupon.id, dedupe_key=f"{job}:{self.shop.id}:{coupon.id}")
        self.context["coupon_code"] = coupon.code
        self.decide("coupon_minted", step, coupon_id=coupon.id, expires_at=coupon.expires_at.isoformat())
        self.follow(index)
        return "continue"

    def step_sunset(self, step: dict, index: int) -> str:
        """Stop marketing on a channel for a customer who no longer reads it: consent withdrawn, by the shop."""
        from app.automations.signals import note_consent

        channel = step.get("channel", "email")
        consent = Consent(shop_id=self.shop.id, customer_id=self.run.customer_id, channel=channel, state="revoked",
                          source="sunset", recorded_at=self.now)
        self.session.add(consent)
        note_consent(self.session, self.shop.id, consent)
        self.decide("sunset", step, channel=channel)
        self.follow(index)
        return "continue"

    def step_webhook(self, step: dict, index: int) -> str:
        enqueue(self.session, "automations.call_webhook", shop_id=self.shop.id, run_id=self.run.id, step_id=step["id"],
                dedupe_key=f"automations.webhook:{self.shop.id}:{self.run.id}:{step['id']}")
        self.decide("webhook_queued", step)
        self.follow(index)
        return "continue"


def _finish(session: Session, run: FlowRun, state: str, reason: str | None, now: dt.datetime) -> None:
    run.state, run.exit_reason, run.finished_at, run.due_at = state, reason, now, None


def _tag_id(session: Session, shop_id: int, name: str) -> int:
    session.execute(_insert(session, Tag.__table__).values(shop_id=shop_id, name=name)
                    .on_conflict_do_nothing(index_elements=["shop_id", "name"]))
    return session.scalars(select(Tag.id).where(Tag.shop_id == shop_id, Tag.name == name)).one()


@job_kind("automations.call_webhook", max_attempts=6)
def call_webhook(ctx, run_id: int, step_id: str) -> None:
    """POST the run's ids (never personal data) to the URL a flow step names; the step id is the idempotency key."""
    from connectors.http import SafeSession, UrlPolicy

    run = ctx.session.get(FlowRun, run_id)
    if run is None:
        return
    step = next((s for s in _definition(ctx.session, run).get("steps") or [] if s.get("id") == step_id), None)
    if step is None:
        return
    body = {"event": "flow_step", "shop_id": ctx.shop_id, "flow_id": run.flow_id, "flow_run_id": run.id,
            "step": step_id, "customer_id": run.customer_id, "subject": (run.context or {}).get("subject")}
    session = SafeSession(UrlPolicy(allow_private=ctx.settings.allow_private_store_urls), timeout=(5, 10))
    response = session.post(step["url"], json=body, headers={"Idempotency-Key": f"{ctx.shop_id}:{run_id}:{step_id}"})
    if response.status_code >= 500 or response.status_code == 429:
        raise RuntimeError(f"webhook answered HTTP {response.status_code}")
    record_decision(ctx.session, ctx.shop_id, "webhook_called", customer_id=run.customer_id, flow_run_id=run.id,
                    step=step_id, status=response.status_code)
