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
from urllib.parse import urlsplit

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from app.automations.definitions import evaluate, step_targets
from app.automations.batches import enqueue_batches
from app.automations.detection import customer_for_contact
from app.automations.details import custom_events_since_start, message_details
from app.automations.outbox_port import Refused, submit_message
from app.automations.segments import (refresh_customers, refresh_for_signals, segment_names, segment_names_of,
                                      trigger_matches)
from app.automations.signals import SignalFact, cause_chain, emit_signals, is_paid
from app.automations.tags import ensure_tag, remove_tag
from app.automations.timing import wait_until
from app.automations.trace import decision_row, record_decision, record_decisions
from app.automations.truth import LiveQuery, LiveReads, LiveState, StoreUnreachable, purchase_since
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
RUN_CHUNK = 500  # runs per read and per transaction when no live read is involved
LIVE_CHUNK = 25  # runs per transaction when each first re-reads the live store
ACTIVE_STATES = ("waiting", "running")
MAX_STEPS_PER_WAKE = 50
LIVE_RETRY = dt.timedelta(minutes=15)
LIVE_GIVE_UP = dt.timedelta(hours=48)
COUPON_COOLDOWN_DAYS = 30
LOCALES = ("pl", "ro", "en")
COUPON_JOBS = {"shopify": "shopify.create_discount", "woocommerce": "woocommerce.create_coupon"}
MAX_CAUSE_DEPTH = 3  # flows in a row, each started by the previous one's tag change, before the next is refused


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
    """Start runs of the shop's enabled flows whose trigger matches each signal; returns the new run ids.

    The whole batch is decided in memory (customers, runs in flight and audience facts read once for all
    signals) and the new runs are written in one multi-row INSERT, keeping the unique key as the dedupe.
    """
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
    starter = _RunStarter(session, shop_id, now, [f for kind in {s.kind for s in pending} for f in flows.get(kind, [])],
                          pending)
    for signal in pending:
        for flow in flows.get(signal.kind, []):
            if trigger_matches(flow.definition or {}, signal.kind, signal.payload):
                starter.consider(flow, signal)
    started = starter.write()
    signals = Signal.__table__  # routed, all in one statement
    session.execute(update(signals).where(signals.c.shop_id == shop_id, signals.c.id.in_([s.id for s in pending]))
                    .values(routed_at=now).execution_options(synchronize_session=False))
    for signal in pending:
        set_committed_value(signal, "routed_at", now)
    session.flush()
    if started:  # the first steps run now, not at the next clock tick
        for first in range(0, len(started), BATCH):
            enqueue(session, "automations.run_step", shop_id=shop_id, run_ids=started[first:first + BATCH],
                    dedupe_key=f"automations.start:{shop_id}:{started[first]}")
    return started


def start_run(session: Session, shop_id: int, flow: Flow, signal: Signal, now: dt.datetime) -> int | None:
    """Start one run of `flow` for `signal` (route_signals does this for many at once)."""
    starter = _RunStarter(session, shop_id, now, [flow], [signal])
    starter.consider(flow, signal)
    started = starter.write()
    return started[0] if started else None


class _RunStarter:
    """Decides, for a batch of signals, which runs start; writes them with one INSERT per batch."""

    def __init__(self, session: Session, shop_id: int, now: dt.datetime, flows: list[Flow], signals: list[Signal]):
        self.session, self.shop_id, self.now = session, shop_id, now
        self.book = _Book(session, shop_id)
        customer_ids = {s.customer_id for s in signals if s.customer_id is not None}
        self.book.load_customers(customer_ids)
        if any((f.definition or {}).get("audience") for f in flows):  # only an audience reads the cart or order
            self.book.load_subjects({s.subject_id for s in signals if s.subject_type == "cart" and s.subject_id},
                                    {s.subject_id for s in signals if s.subject_type == "order" and s.subject_id})
        self.active: dict[tuple[int, int], list[FlowRun]] = defaultdict(list)
        flow_ids = [f.id for f in flows]
        if flow_ids and customer_ids:
            for run in self.session.scalars(select(FlowRun).where(
                    FlowRun.shop_id == shop_id, FlowRun.flow_id.in_(flow_ids), FlowRun.customer_id.in_(customer_ids),
                    FlowRun.state.in_(ACTIVE_STATES)).order_by(FlowRun.id)):
                self.active[(run.flow_id, run.customer_id)].append(run)
        self.rows: list[dict] = []  # runs to insert, with the trace of the decision each one gets
        self.waiting: set[tuple[int, int]] = set()  # (flow, customer) with a row still in self.rows
        self.fresh: dict[tuple[int, int], list[int]] = defaultdict(list)  # runs written by this batch
        self.started: list[int] = []
        self.decisions: list[dict] = []

    def consider(self, flow: Flow, signal: Signal) -> None:
        session, shop_id, now = self.session, self.shop_id, self.now
        definition = flow.definition or {}
        subject = (signal.subject_type, signal.subject_id) if signal.subject_type else None
        trace = dict(flow_id=flow.id, flow_version=flow.version, signal_id=signal.id, now=now, subject=subject)
        customer = _signal_customer(session, shop_id, signal)
        if customer is None:
            self.decisions.append(decision_row(shop_id, "not_started_no_customer", **trace))
            return
        refusal = _loop_refusal(signal, flow)  # whatever its reentry: flows tagging each other must not ping-pong
        if refusal:
            self.decisions.append(decision_row(shop_id, refusal, customer_id=customer.id, **trace))
            return
        context = {"subject": {"type": signal.subject_type, "id": signal.subject_id}, "signal_id": signal.id,
                   "signal": signal.payload or {}, "since": signal.occurred_at.isoformat(),
                   "version": (signal.payload or {}).get("version") or signal.id}
        audience = definition.get("audience")
        if audience and not evaluate(audience, gather_facts(session, shop_id, customer, context, book=self.book)):
            self.decisions.append(decision_row(shop_id, "not_started_audience", customer_id=customer.id, **trace))
            return
        trigger_key = f"{signal.subject_type}:{signal.subject_id}" if signal.subject_type else f"signal:{signal.id}"
        key = (flow.id, customer.id)
        if key in self.waiting:  # a second signal for the same customer in this batch sees the first one's run
            self.write()
        if key in self.fresh:  # runs this batch already started for the same customer
            self.active[key] += list(session.scalars(select(FlowRun).where(FlowRun.shop_id == shop_id,
                                                                           FlowRun.id.in_(self.fresh.pop(key)))))
        if key not in self.active and customer.id not in self.book.customer_ids:  # a guest found by contact
            self.active[key] = list(session.scalars(select(FlowRun).where(
                FlowRun.shop_id == shop_id, FlowRun.flow_id == flow.id, FlowRun.customer_id == customer.id,
                FlowRun.state.in_(ACTIVE_STATES))))
        active = [run for run in self.active.get(key, []) if run.state in ACTIVE_STATES]
        if definition.get("reentry") == "parallel":  # every signal its own run (each refund, each product alert)
            active, trigger_key = [], f"signal:{signal.id}"
        elif definition.get("reentry") == "restart":  # a newer status of the same order restarts: a key of its own
            trigger_key = f"{trigger_key}:signal:{signal.id}"
        if active and definition.get("reentry", "skip") == "skip":
            self.decisions.append(decision_row(shop_id, "not_started_already_in_flow", customer_id=customer.id,
                                               flow_run_id=active[0].id, **trace))
            return
        for old in active:
            _finish(session, old, "exited", "superseded", now)
        self.rows.append(dict(
            values=dict(shop_id=shop_id, flow_id=flow.id, flow_version=flow.version, customer_id=customer.id,
                        trigger_key=trigger_key, state="waiting", next_step=0, due_at=now, context=context,
                        started_at=now),
            trace=trace))
        self.waiting.add(key)

    def write(self) -> list[int]:
        """Insert the runs decided so far (one statement); returns every run this batch started."""
        rows, self.rows = self.rows, []
        self.waiting.clear()
        session, table = self.session, FlowRun.__table__
        if not rows:
            record_decisions(session, self.decisions)
            self.decisions = []
            return self.started
        session.flush()  # superseded runs are written before their successors
        inserted = session.execute(
            _insert(session, table).on_conflict_do_nothing(
                index_elements=["shop_id", "flow_id", "customer_id", "trigger_key"])
            .returning(table.c.id, table.c.flow_id, table.c.customer_id, table.c.trigger_key),
            [row["values"] for row in rows]).all()
        ids = {(r.flow_id, r.customer_id, r.trigger_key): r.id for r in inserted}  # a duplicate key is absent
        for row in rows:
            values = row["values"]
            run_id = ids.pop((values["flow_id"], values["customer_id"], values["trigger_key"]), None)
            if run_id is None:
                self.decisions.append(decision_row(self.shop_id, "not_started_duplicate",
                                                   customer_id=values["customer_id"], **row["trace"]))
                continue
            self.decisions.append(decision_row(self.shop_id, "run_started", customer_id=values["customer_id"],
                                               flow_run_id=run_id, **row["trace"]))
            self.started.append(run_id)
            self.fresh[(values["flow_id"], values["customer_id"])].append(run_id)
        record_decisions(session, self.decisions)  # after the runs they name
        self.decisions = []
        return self.started


def _merged(*chains: list[int]) -> list[int]:
    return list(dict.fromkeys(flow_id for chain in chains for flow_id in chain))


def _loop_refusal(signal: Signal, flow: Flow) -> str | None:
    """Why `flow` may not start on `signal`: the change is its own, it is already in the chain of flows that led to
    the signal (two flows tagging each other), or that chain is MAX_CAUSE_DEPTH long; else None."""
    payload = signal.payload or {}
    own = payload.get("source") == "flow" and payload.get("flow_id") == flow.id
    if own and signal.kind in ("tag_added", "tag_removed"):
        return "not_started_own_tag_change"
    chain = cause_chain(payload)
    if flow.id in chain:
        return "not_started_cause_loop"
    if len(chain) >= MAX_CAUSE_DEPTH:
        return "not_started_cause_chain_too_deep"
    return None


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
                 run_id: int | None = None, *, book: _Book | None = None) -> dict[str, Any]:
    """What conditions and audiences read; `book` answers tags, segments and cart lines for a whole batch."""
    book = book or _Book(session, shop_id)
    facts: dict[str, Any] = {f"signal.{k}": v for k, v in (context.get("signal") or {}).items()}
    if customer is not None:
        facts.update({"customer.orders_count": customer.orders_count, "customer.total_spent": customer.total_spent,
                      "customer.locale": customer.locale, "customer.has_email": bool(customer.email),
                      "customer.has_phone": bool(customer.phone), "customer.tags": book.tags(customer.id),
                      "customer.segments": book.segments(customer.id)})
    cart, order = _subject_rows(session, context)
    if cart is not None:
        lines = book.line_count(cart.id)
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
    """Advance each due run, a chunk of runs per transaction (see advance_runs)."""
    advance_runs(ctx.sessions, ctx.settings, ctx.shop_id, run_ids, utcnow())


def needs_live_check(steps: list[dict], index: int) -> bool:
    """Will the run, from `index` up to its next wait, send a recovery message (or one carrying a payment link)
    or mint a coupon?"""
    seen, todo = set(), [index]
    while todo:
        i = todo.pop()
        if i is None or i in seen or i >= len(steps):
            continue
        seen.add(i)
        step = steps[i]
        if step.get("type") == "wait":
            continue
        if step.get("type") == "coupon" or (step.get("type") == "send" and (step.get("kind") == "recovery"
                                                                            or step.get("payment_link"))):
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
    return advance_runs(sessions, settings, shop_id, [run_id], now).get(run_id)


def advance_runs(sessions: sessionmaker[Session], settings: Settings, shop_id: int, run_ids: list[int],
                 now: dt.datetime) -> dict[int, str]:
    """Run each due run up to its next wait or its end; returns run id -> state afterwards (due runs only).

    Runs go in chunks: one read of what the chunk needs, then one transaction per group that claims the group
    (`waiting` -> `running` in one UPDATE, so a second worker gets none of it) and runs every claimed run.
    Runs that re-read the live store first go in small groups, each read just before its group's transaction
    and outside it (the store may be slow), so a read stays close to the message it allows.
    """
    states: dict[int, str] = {}
    ids = list(dict.fromkeys(run_ids))
    for first in range(0, len(ids), RUN_CHUNK):
        states.update(_advance_chunk(sessions, settings, shop_id, ids[first:first + RUN_CHUNK], now))
    return states


def _due(session: Session, shop_id: int, run_ids: list[int], now: dt.datetime) -> list[FlowRun]:
    return list(session.scalars(select(FlowRun).where(FlowRun.shop_id == shop_id, FlowRun.id.in_(run_ids),
                                                      FlowRun.state == "waiting", FlowRun.due_at <= now)
                                .order_by(FlowRun.id)))


def _advance_chunk(sessions: sessionmaker[Session], settings: Settings, shop_id: int, run_ids: list[int],
                   now: dt.datetime) -> dict[int, str]:
    queries: dict[int, LiveQuery | None] = {}
    with sessions() as session:
        runs = _due(session, shop_id, run_ids, now)
        if not runs:
            return {}
        shop = session.get(Shop, shop_id)
        book = _Book(session, shop_id)
        book.load_definitions(runs)
        live_runs = [run for run in runs if needs_live_check(book.definition(run).get("steps") or [], run.next_step)]
        book.load_runs(live_runs)  # only these need their customer and cart before the transaction
        for run in live_runs:
            queries[run.id] = _live_query(session, shop, run, session.get(Customer, run.customer_id))
        due = [run.id for run in runs]
    plain = [run_id for run_id in due if run_id not in queries]
    checked = [run_id for run_id in due if run_id in queries]
    groups = ([plain] if plain else []) + [checked[i:i + LIVE_CHUNK] for i in range(0, len(checked), LIVE_CHUNK)]
    states: dict[int, str] = {}
    reads = LiveReads(sessions, settings, queries)  # one store read shared by the chunk's runs where it can be
    for group in groups:
        lives: dict[int, LiveState | StoreUnreachable] = reads.states(group)
        states.update(_run_group(sessions, settings, shop_id, group, now, lives, queries))
    return states


def _run_group(sessions: sessionmaker[Session], settings: Settings, shop_id: int, run_ids: list[int],
               now: dt.datetime, lives: dict, queries: dict) -> dict[int, str]:
    try:
        with sessions.begin() as session:
            return _advance_claimed(session, settings, shop_id, run_ids, now, lives, queries)
    except Exception:
        if len(run_ids) == 1:
            raise
        log.warning("a group of flow runs failed; running them one by one", exc_info=True,
                    extra={"shop_id": shop_id, "runs": len(run_ids)})
    states: dict[int, str] = {}
    for run_id in run_ids:  # one transaction per run: a run that fails alone does not hold the others back
        with sessions.begin() as session:
            states.update(_advance_claimed(session, settings, shop_id, [run_id], now, lives, queries))
    return states


def _advance_claimed(session: Session, settings: Settings, shop_id: int, run_ids: list[int], now: dt.datetime,
                     lives: dict, queries: dict) -> dict[int, str]:
    """Claim the runs still due (one UPDATE) and run each, all in the caller's transaction."""
    table = FlowRun.__table__
    due = and_(table.c.shop_id == shop_id, table.c.id.in_(run_ids), table.c.state == "waiting", table.c.due_at <= now)
    if session.get_bind().dialect.name == "postgresql":  # a second worker skips runs held here: no wait, no deadlock
        due = table.c.id.in_(select(table.c.id).where(due).order_by(table.c.id).with_for_update(skip_locked=True))
    claimed = session.execute(update(table).where(due).values(state="running").returning(table.c.id)).scalars().all()
    if not claimed:
        return {}
    runs = list(session.scalars(select(FlowRun).where(FlowRun.shop_id == shop_id, FlowRun.id.in_(claimed))
                                .order_by(FlowRun.id).execution_options(populate_existing=True)))
    shop = session.get(Shop, shop_id)
    book = _Book(session, shop_id)
    book.load_runs(runs)
    states = {}
    for run in runs:
        _Advance(session, settings, shop, run, now, lives.get(run.id), queries.get(run.id), book).go()
        states[run.id] = run.state
    book.settle()
    return states


class _Book:
    """What a batch of runs reads, fetched once for all of them; it lives for one transaction.

    Tag links and segment re-checks that steps ask for are held here and written before anything reads
    tags or segments again (and at the end of the batch), so a run never sees stale facts.
    """

    def __init__(self, session: Session, shop_id: int):
        self.session, self.shop_id = session, shop_id
        self.held: list = []  # the identity map keeps rows only while someone refers to them
        self.customer_ids: set[int] = set()
        self.cart_ids: set[int] = set()
        self._definitions: dict[tuple[int, int], dict] = {}
        self._lines: dict[int, int] | None = None
        self._tags: dict[int, list[str]] | None = None
        self._segments: dict[int, list[str]] | None = None
        self._cart_lines: dict[int, list[CartLine]] | None = None
        self._consents: dict[tuple[int, str], str] | None = None  # (customer, channel) -> newest state
        self._consents_for: set[int] = set()
        self._orders: list[tuple] | None = None  # the customers' orders since purchase_floor, not cancelled
        self._orders_for: set[int] = set()
        self.purchase_floor: dt.datetime | None = None  # the earliest `since` of the runs loaded
        self._tag_ids: dict[str, int] = {}
        self._tag_names: dict[int, str] = {}  # the spelling the shop keeps, for the signal
        self.tag_links: list[dict] = []
        # (customer, tag) -> the flows that led to adding it (every flow adding it in this batch, first adder first)
        self.tag_causes: dict[tuple[int, int], list[int]] = {}
        self.refresh_causes: dict[int, list[int]] = {}  # customer -> the flows whose tag steps changed their tags
        self.decisions: list[dict] = []
        self.refresh_ids: set[int] = set()
        self.now: dt.datetime | None = None

    def load_customers(self, customer_ids: set[int]) -> None:
        """Into the identity map, so `session.get(Customer, id)` reads no row."""
        todo = customer_ids - self.customer_ids
        if todo:
            self.held += self.session.scalars(select(Customer).where(Customer.shop_id == self.shop_id,
                                                                     Customer.id.in_(todo))).all()
            self.customer_ids |= todo

    def load_subjects(self, cart_ids: set[int], order_ids: set[int]) -> None:
        todo = cart_ids - self.cart_ids
        if todo:
            self.held += self.session.scalars(select(Cart).where(Cart.shop_id == self.shop_id, Cart.id.in_(todo))).all()
            self.cart_ids |= todo
            self._lines = self._cart_lines = None
        if order_ids:
            self.held += self.session.scalars(select(Order).where(Order.shop_id == self.shop_id,
                                                                  Order.id.in_(order_ids))).all()

    def load_runs(self, runs: list[FlowRun]) -> None:
        self.load_customers({run.customer_id for run in runs})
        floors = [_purchase_since(run) for run in runs] + ([self.purchase_floor] if self.purchase_floor else [])
        if floors:
            self.purchase_floor, self._orders = min(floors), None
        subjects = [(run.context or {}).get("subject") or {} for run in runs]
        self.load_subjects({s["id"] for s in subjects if s.get("type") == "cart" and s.get("id")},
                           {s["id"] for s in subjects if s.get("type") == "order" and s.get("id")})
        self.load_definitions(runs)

    def load_definitions(self, runs: list[FlowRun]) -> None:
        wanted = {(run.flow_id, run.flow_version) for run in runs} - set(self._definitions)
        if wanted:
            for version in self.session.scalars(select(FlowVersion).where(
                    FlowVersion.shop_id == self.shop_id, FlowVersion.flow_id.in_({f for f, _ in wanted}))):
                self._definitions[(version.flow_id, version.version)] = version.definition

    def definition(self, run: FlowRun) -> dict:
        key = (run.flow_id, run.flow_version)
        if key not in self._definitions:
            self._definitions[key] = _definition(self.session, run)
        return self._definitions[key] or {}

    def cart_lines(self, cart_id: int) -> list[CartLine]:
        """The cart's lines in id order; for the batch's carts, read once for all of them."""
        if cart_id not in self.cart_ids:
            return list(self.session.scalars(select(CartLine).where(
                CartLine.shop_id == self.shop_id, CartLine.cart_id == cart_id).order_by(CartLine.id)))
        if self._cart_lines is None:
            self._cart_lines = defaultdict(list)
            for line in self.session.scalars(select(CartLine).where(
                    CartLine.shop_id == self.shop_id, CartLine.cart_id.in_(self.cart_ids)).order_by(CartLine.id)):
                self._cart_lines[line.cart_id].append(line)
        return list(self._cart_lines.get(cart_id, []))

    def line_count(self, cart_id: int) -> int:
        if cart_id not in self.cart_ids:
            return self.session.scalar(select(func.count()).select_from(CartLine).where(
                CartLine.shop_id == self.shop_id, CartLine.cart_id == cart_id)) or 0
        if self._lines is None:
            self._lines = dict(self.session.execute(
                select(CartLine.cart_id, func.count()).where(CartLine.shop_id == self.shop_id,
                                                             CartLine.cart_id.in_(self.cart_ids))
                .group_by(CartLine.cart_id)).all())
        return self._lines.get(cart_id, 0)

    def tags(self, customer_id: int) -> list[str]:
        self.settle()
        if customer_id not in self.customer_ids:
            return list(self.session.scalars(select(Tag.name).join(CustomerTag, CustomerTag.tag_id == Tag.id).where(
                CustomerTag.shop_id == self.shop_id, CustomerTag.customer_id == customer_id)))
        if self._tags is None:
            self._tags = defaultdict(list)
            for owner, name in self.session.execute(select(CustomerTag.customer_id, Tag.name).join(
                    Tag, CustomerTag.tag_id == Tag.id).where(CustomerTag.shop_id == self.shop_id,
                                                            CustomerTag.customer_id.in_(self.customer_ids))):
                self._tags[owner].append(name)
        return list(self._tags.get(customer_id, []))

    def segments(self, customer_id: int) -> list[str]:
        self.settle()
        if customer_id not in self.customer_ids:
            return segment_names(self.session, self.shop_id, customer_id)
        if self._segments is None:
            self._segments = segment_names_of(self.session, self.shop_id, self.customer_ids)
        return list(self._segments.get(customer_id, []))

    def forget_tags(self) -> None:
        self._tags = None

    def newest_consent(self, customer_id: int, channel: str) -> str | None:
        """The customer's current consent state on `channel` (the newest row), read once for the batch."""
        if customer_id not in self.customer_ids:
            return self.session.scalars(select(Consent.state).where(
                Consent.shop_id == self.shop_id, Consent.customer_id == customer_id, Consent.channel == channel)
                .order_by(Consent.recorded_at.desc(), Consent.id.desc()).limit(1)).first()
        if self._consents is None or customer_id not in self._consents_for:
            newest: dict[tuple[int, str], tuple] = {}
            for owner, kind, state, at, row_id in self.session.execute(select(
                    Consent.customer_id, Consent.channel, Consent.state, Consent.recorded_at, Consent.id).where(
                    Consent.shop_id == self.shop_id, Consent.customer_id.in_(self.customer_ids))):
                if (owner, kind) not in newest or (at, row_id) > newest[(owner, kind)][0]:
                    newest[(owner, kind)] = ((at, row_id), state)
            self._consents = {key: state for key, (_, state) in newest.items()}
            self._consents_for = set(self.customer_ids)
        return self._consents.get((customer_id, channel))

    def forget_consents(self) -> None:
        self._consents = None

    def local_purchase(self, customer_id: int, email: str | None, phone: str | None, since: dt.datetime,
                       exclude_order_id: int | None) -> int | None | bool:
        """An order held here by the customer (by id, email or phone), not cancelled, placed since `since`;
        False when the batch's read cannot say (the caller asks the database itself)."""
        if customer_id not in self.customer_ids or self.purchase_floor is None or since < self.purchase_floor:
            return False
        if self._orders is None or customer_id not in self._orders_for:
            customers = [self.session.get(Customer, owner) for owner in self.customer_ids]
            who = [Order.customer_id.in_(self.customer_ids)]
            emails = {c.email for c in customers if c is not None and c.email}
            phones = {c.phone for c in customers if c is not None and c.phone}
            if emails:
                who.append(Order.email.in_(emails))
            if phones:
                who.append(Order.phone.in_(phones))
            self._orders = self.session.execute(select(
                Order.id, Order.customer_id, Order.email, Order.phone, Order.placed_at, Order.created_at).where(
                Order.shop_id == self.shop_id, or_(*who), Order.cancelled_at.is_(None),
                func.coalesce(Order.placed_at, Order.created_at) >= self.purchase_floor).order_by(Order.id)).all()
            self._orders_for = set(self.customer_ids)
        for order_id, owner, order_email, order_phone, placed_at, created_at in self._orders:
            if order_id == exclude_order_id or (placed_at or created_at) < since:
                continue
            if owner == customer_id or (email and order_email == email) or (phone and order_phone == phone):
                return order_id
        return None

    def forget_orders(self) -> None:
        self._orders = None

    def tag_id(self, name: str) -> int:
        key = name.strip().lower()
        if key not in self._tag_ids:
            tag = ensure_tag(self.session, self.shop_id, name)
            self._tag_ids[key], self._tag_names[tag.id] = tag.id, tag.name
        return self._tag_ids[key]

    def add_tag(self, customer_id: int, name: str, now: dt.datetime, *, cause: list[int] = ()) -> None:
        """Held until settle(); `cause` is the adding run's chain of flows, its own flow last (cause_chain)."""
        tag_id = self.tag_id(name)
        self.tag_links.append(dict(shop_id=self.shop_id, customer_id=customer_id, tag_id=tag_id, created_at=now))
        key = (customer_id, tag_id)
        self.tag_causes[key] = _merged(self.tag_causes.get(key, []), list(cause))
        self.note_cause(customer_id, cause)
        self.now = now

    def note_cause(self, customer_id: int, cause: list[int]) -> None:
        """The customer's tags changed in a flow step: re-check their segments, naming those flows as the cause."""
        self.refresh_ids.add(customer_id)
        self.refresh_causes[customer_id] = _merged(self.refresh_causes.get(customer_id, []), list(cause))

    def _tag_added(self, customer_id: int, tag_id: int, now: dt.datetime) -> SignalFact:
        """The same signal a tag set by hand gives (app.automations.tags.add_tag), naming the flow that set it and
        the chain of flows that led to it (all of them when several flows added it in one batch)."""
        chain = self.tag_causes.get((customer_id, tag_id)) or []
        payload = {"tag": self._tag_names[tag_id], "source": "flow",
                   **({"flow_id": chain[-1], "caused_by": chain} if chain else {})}
        return SignalFact(self.shop_id, "tag_added", dedupe_key=f"tag_added:{customer_id}:{tag_id}:{now.timestamp()}",
                          customer_id=customer_id, subject=("customer", customer_id), payload=payload)

    def settle(self) -> None:
        """Write the decisions and tag links held so far and re-check those customers' segments (a statement each)."""
        decisions, self.decisions = self.decisions, []
        record_decisions(self.session, decisions)
        links, self.tag_links = self.tag_links, []
        if links:
            table = CustomerTag.__table__
            added = self.session.execute(_insert(self.session, table).on_conflict_do_nothing(
                index_elements=["shop_id", "customer_id", "tag_id"]).returning(table.c.customer_id, table.c.tag_id),
                links).all()  # only the links that are new: a tag the customer already had is no news
            now = self.now or utcnow()
            emit_signals(self.session, [self._tag_added(row.customer_id, row.tag_id, now) for row in added], now)
            self.tag_causes.clear()
            self._tags = None
        customers, self.refresh_ids = self.refresh_ids, set()
        causes, self.refresh_causes = self.refresh_causes, {}
        if customers:
            refresh_customers(self.session, self.shop_id, customers, self.now or utcnow(), causes=causes)
            self._segments = None


class _Advance:
    """One wake of one run, inside one transaction."""

    def __init__(self, session: Session, settings: Settings, shop: Shop, run: FlowRun, now: dt.datetime,
                 live: LiveState | StoreUnreachable | None, query: LiveQuery | None, book: _Book | None = None):
        self.session, self.settings, self.shop, self.run, self.now = session, settings, shop, run, now
        self.live, self.query = live, query
        self.book = book or _Book(session, shop.id)
        self.definition = self.book.definition(run)
        self.steps: list[dict] = self.definition.get("steps") or []
        self.customer = session.get(Customer, run.customer_id)
        self.context = dict(run.context or {})
        self.gates: list[dict] = []

    def decide(self, decision: str, step: dict | None = None, **detail) -> None:
        self.gates.append({"decision": decision, **{k: str(v) if isinstance(v, (Decimal, dt.datetime)) else v
                                                     for k, v in detail.items()}})
        subject = self.context.get("subject") or {}
        self.book.decisions.append(decision_row(  # written with the batch's other decisions (_Book.settle)
            self.shop.id, decision, customer_id=self.run.customer_id, flow_run_id=self.run.id,
            subject=(subject.get("type"), subject.get("id")) if subject.get("type") else None,
            step=(step or {}).get("id"), now=self.now, **detail))

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
            lines = 0 if cart is None else self.book.line_count(cart.id)
            if cart is None or (not lines and cart.total <= 0):
                return self._exit_decision("cart_emptied", gate="local")
        if "unsubscribed" in exits and self._unsubscribed():
            return self._exit_decision("unsubscribed", gate="consent")
        return self._live_exit(exits, order)

    def _exit_decision(self, reason: str, **detail) -> str:
        self.gates.append({"exit": reason, **detail})
        return reason

    def _local_purchase(self, subject_order: Order | None) -> int | None:
        since = _purchase_since(self.run)
        found = self.book.local_purchase(self.run.customer_id, self.customer.email if self.customer else None,
                                         self.customer.phone if self.customer else None, since,
                                         subject_order.id if subject_order is not None else None)
        if found is not False:
            return found
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
            if self.book.newest_consent(self.run.customer_id, channel) != "revoked":
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
                self.book.forget_orders()
            return self._exit_decision("purchased", gate="live_check", order_platform_id=bought.platform_id)
        if self.live.checkout_completed and order is None:
            return self._exit_decision("purchased", gate="live_check", checkout_completed=True)
        if order is not None:
            for fresh in self.live.orders:
                if fresh.platform_id == order.platform_id:
                    if fresh.platform_id not in self.live.partial:
                        apply_order(self.session, self.shop.id, fresh)
                        self.book.forget_orders()
                    if is_paid(fresh) and "order_paid" in exits:  # the same rule as the order_paid signal
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
        holds = evaluate(step["if"], gather_facts(self.session, self.shop.id, self.customer, self.context, self.run.id,
                                                  book=self.book))
        self.decide("condition_true" if holds else "condition_false", step)
        self.follow(index, "then" if holds else "else")
        return "continue"

    def _live_gate(self, step: dict) -> str | None:
        """None when the live store was read and allows going on (or there is no cart or order to ask about);
        otherwise 'stop' after postponing."""
        if isinstance(self.live, LiveState) or (self.context.get("subject") or {}).get("type") not in ("cart", "order"):
            self.context.pop("first_postponed_at", None)  # the store answered: a later outage gets its own 48 h
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
        if step.get("kind") == "recovery" or step.get("payment_link"):
            gate = self._live_gate(step)
            if gate == "stop_finished":
                return "finished"
            if gate:
                return gate
            if isinstance(self.live, LiveState):
                self.gates.append({"gate": "live_check", "result": "not_bought", "at": self.live.checked_at.isoformat()
                                   if self.live.checked_at else None})
        cart, order = _subject_rows(self.session, self.context)
        link: dict = {}
        if step.get("payment_link"):
            found = self._payment_link(order)
            if found is None:
                return self._without_payment_link(step, index, order)
            link, source = found
            self.context.pop("payment_link_missing_since", None)
            self.gates.append({"gate": "payment_link", "source": source})
        self.gates.append({"gate": "flow_exits", "checked": sorted(self.definition.get("exit") or []), "met": None})
        recipient = self._recipient(step["channel"])
        greeting: dict = {}
        if step.get("payment_link") and order is not None:
            # The link pays this order: only the order's own address may get it, never a customer who merely
            # shares its phone or email (a guest order is matched to a customer by either).
            recipient = _order_contact(order, step["channel"])
            theirs = order.customer_id is not None and order.customer_id == self.run.customer_id
            if recipient is None and not (step["channel"] == "push" and theirs):
                self.decide("send_skipped_no_order_contact", step, channel=step["channel"], order_id=order.id)
                self.follow(index)
                return "continue"
            if not theirs:
                greeting = {"first_name": ""}  # not the matched customer's name
        subject = self.context.get("subject") or {}
        digest = hashlib.sha256((recipient or f"customer:{self.run.customer_id}").encode()).hexdigest()[:16]
        dedupe_key = (f"flow:{self.run.flow_id}:{step['id']}:{subject.get('type')}:{subject.get('id')}:"
                      f"{self.context.get('version')}:{digest}")
        message_context = {**link, "flow_id": self.run.flow_id, "flow_run_id": self.run.id, "step": step["id"],
                           "cart_id": cart.id if cart else None, "order_id": order.id if order else None,
                           "recovery_url": cart.recovery_url if cart else None,
                           "coupon_code": self.context.get("coupon_code"),
                           **message_details(self.session, self.shop.id, self.context, cart_lines=self.book.cart_lines),
                           **greeting}
        exit_conditions = []
        if cart is not None and step.get("kind") == "recovery":
            exit_conditions.append({"name": "cart_converted", "args": {"cart_id": cart.id}})
        for name in ("order_paid", "order_cancelled"):  # the outbox re-checks them right before the send
            if order is not None and name in (self.definition.get("exit") or []):
                exit_conditions.append({"name": name, "args": {"order_id": order.id}})
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

    def _payment_link(self, order: Order | None) -> tuple[dict, str] | None:
        """The link the live store gives for paying `order` now (read moments ago, so fresh); None without one.

        Only the store's own payment page counts: on Shopify `additionalPaymentCollectionUrl` is there exactly
        when money is still owed, and the order status page, without it, takes no payment (so it never stands in).
        """
        fresh = self._fresh_order(order)
        if fresh is None or not fresh.payment_url or not self._store_link(fresh.payment_url):
            return None
        return {"payment_url": fresh.payment_url}, "store_payment_page"

    def _fresh_order(self, order: Order | None):
        if order is None or not isinstance(self.live, LiveState):
            return None
        return next((o for o in self.live.orders if o.platform_id == order.platform_id), None)

    def _store_link(self, url: str) -> bool:
        """A WooCommerce store's payment link must lead to the store itself (its API could be told otherwise)."""
        return self.shop.platform != "woocommerce" or same_site(url, self.shop.domain)

    def _without_payment_link(self, step: dict, index: int, order: Order | None) -> str:
        """No link to pay with. When the store returned the order, it said there is nothing to pay there (paid,
        authorized, on hold...): the step ends now. When it did not return it (not there yet), ask again every
        LIVE_RETRY and after LIVE_GIVE_UP skip the step: never a message whose link leads nowhere."""
        if order is None:
            self.decide("send_skipped_no_order", step)
            self.follow(index)
            return "continue"
        fresh = self._fresh_order(order)
        if fresh is not None:
            self.context.pop("payment_link_missing_since", None)
            if fresh.payment_url:
                self.decide("send_skipped_payment_link_off_store", step, order_id=order.id)
            else:
                self.decide("send_skipped_store_takes_no_payment", step, order_id=order.id, status=fresh.status,
                            financial_status=fresh.financial_status)
            self.follow(index)
            return "continue"
        first = self.context.get("payment_link_missing_since")
        first_at = dt.datetime.fromisoformat(first) if first else self.now
        if self.now - first_at >= LIVE_GIVE_UP:
            self.context.pop("payment_link_missing_since", None)
            self.decide("send_skipped_no_payment_link", step, order_id=order.id, missing_since=first_at.isoformat())
            self.follow(index)
            return "continue"
        self.context["payment_link_missing_since"] = first_at.isoformat()
        self.decide("postponed_no_payment_link", step, order_id=order.id)
        self.run.state, self.run.due_at = "waiting", self.now + LIVE_RETRY
        return "stop"

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
        """Tags change as by hand (app.automations.tags): names in any case, and `tag_added` / `tag_removed`
        signalled when the customer's tags really changed, so tag-triggered flows start from flows too."""
        # This run's chain of flows (the one its trigger names, then its own): carried by the signals its change
        # gives, so no flow in it is started again by them (_loop_refusal).
        cause = _merged(cause_chain(self.context.get("signal")), [self.run.flow_id])
        if step.get("add"):  # written with the batch's other links (and their signals), before tags are read again
            self.book.add_tag(self.run.customer_id, step["add"], self.now, cause=cause)
            self.decide("tag_added", step, tag=step["add"])
        if step.get("remove"):
            self.book.settle()
            removed = remove_tag(self.session, self.shop.id, self.run.customer_id, step["remove"], source="flow",
                                 flow_id=self.run.flow_id, caused_by=cause, now=self.now)
            self.book.forget_tags()
            self.decide("tag_removed", step, tag=step["remove"], had_it=removed)
        self.book.note_cause(self.run.customer_id, cause)  # "has tag" segments, re-checked before the next read
        self.book.now = self.now
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
        self.book.forget_consents()
        self.decide("sunset", step, channel=channel)
        self.follow(index)
        return "continue"

    def step_webhook(self, step: dict, index: int) -> str:
        enqueue(self.session, "automations.call_webhook", shop_id=self.shop.id, run_id=self.run.id, step_id=step["id"],
                dedupe_key=f"automations.webhook:{self.shop.id}:{self.run.id}:{step['id']}")
        self.decide("webhook_queued", step)
        self.follow(index)
        return "continue"


def same_site(url: str, store: str) -> bool:
    """Does `url` lead to the host of `store` (a shop's domain or store URL)? `www.` aside, the hosts must match."""
    def host(value: str) -> str:
        name = (urlsplit(value if "://" in value else f"https://{value}").hostname or "").lower().rstrip(".")
        return name[4:] if name.startswith("www.") else name

    return bool(host(url)) and host(url) == host(store)


def _order_contact(order: Order, channel: str) -> str | None:
    """The order's own address on `channel` (push has none: it goes to the customer's subscription)."""
    return {"email": order.email, "sms": order.phone}.get(channel) or None


def _purchase_since(run: FlowRun) -> dt.datetime:
    """From when an order counts as the run's customer having bought (the `purchased` exit)."""
    since = (run.context or {}).get("since")
    return dt.datetime.fromisoformat(since) if since else run.started_at


def _finish(session: Session, run: FlowRun, state: str, reason: str | None, now: dt.datetime) -> None:
    run.state, run.exit_reason, run.finished_at, run.due_at = state, reason, now, None


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
