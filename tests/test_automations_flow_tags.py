"""Tags set by a flow's tag step are signalled like tags set by hand, so tag-triggered flows start from flows too."""
from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from sqlalchemy import select

from app.automations.definitions import validate_definition
from app.automations.flows import create_flow
from app.automations.segments import create_segment
from app.automations.signals import emit_signal
from app.automations.tags import add_tag, tags_of
from app.jobs.executors.local import LocalWorker
from app.models import AutomationDecision, FlowRun, Message, Shop, Signal, utcnow
from app.tenancy import shop_context
from tests.factories import make_customer, make_shop
from tests.automations_kit import route


@pytest.fixture
def runtime(app):
    return app.extensions["companion"]


@pytest.fixture
def shop_id(runtime):
    with runtime.sessions.begin() as session:
        return make_shop(session, timezone="Europe/Warsaw", locale="pl", currency="PLN").id


def customer(runtime, shop_id: int, email: str = "zofia@example.pl") -> int:
    with runtime.sessions.begin() as session, shop_context(shop_id):
        return make_customer(session, session.get(Shop, shop_id), email).id


def flow(runtime, shop_id: int, name: str, definition: dict) -> int:
    with runtime.sessions.begin() as session, shop_context(shop_id):
        return create_flow(session, shop_id, name, definition, enabled=True).id


def event(runtime, shop_id: int, customer_id: int, key: str = "e1") -> None:
    with runtime.sessions.begin() as session, shop_context(shop_id):
        emit_signal(session, shop_id, "custom_event", dedupe_key=key, customer_id=customer_id, payload={"event": "quiz"})


def signals(runtime, shop_id: int, *kinds: str) -> list[tuple[str, dict]]:
    with runtime.sessions() as session, shop_context(shop_id):
        found = session.execute(select(Signal.kind, Signal.payload).where(Signal.kind.in_(kinds)).order_by(Signal.id))
        return [(kind, payload) for kind, payload in found]


def rows(runtime, shop_id: int, model) -> list:
    with runtime.sessions() as session, shop_context(shop_id):
        return session.scalars(select(model).order_by(model.id)).all()


TAG_VIP = {"trigger": "custom_event", "steps": [{"id": "tag", "type": "tag", "add": "VIP"}]}
WELCOME_VIP = {"trigger": "tag_added", "audience": {"field": "signal.tag", "op": "eq", "value": "VIP"},
               "steps": [{"id": "hello", "type": "send", "channel": "email", "kind": "promotional",
                          "template": "vip_welcome_offer"}]}


def test_a_tag_added_by_a_flow_starts_the_flow_waiting_for_that_tag(runtime, shop_id):
    zofia = customer(runtime, shop_id)
    tagger = flow(runtime, shop_id, "tag quiz winners", TAG_VIP)
    flow(runtime, shop_id, "VIP welcome", WELCOME_VIP)
    event(runtime, shop_id, zofia)

    route(runtime, times=2)  # the event starts the tagger; its tag_added starts the welcome

    assert signals(runtime, shop_id, "tag_added") == [
        ("tag_added", {"tag": "VIP", "source": "flow", "flow_id": tagger, "caused_by": [tagger]})]
    assert [(m.customer_id, m.template) for m in rows(runtime, shop_id, Message)] == [(zofia, "vip_welcome_offer")]


def test_a_tag_the_customer_already_has_is_no_news(runtime, shop_id):
    zofia = customer(runtime, shop_id)
    with runtime.sessions.begin() as session, shop_context(shop_id):
        add_tag(session, shop_id, zofia, "vip", source="api")
    flow(runtime, shop_id, "tag quiz winners", TAG_VIP)
    event(runtime, shop_id, zofia)

    route(runtime)

    assert signals(runtime, shop_id, "tag_added") == [("tag_added", {"tag": "vip", "source": "api"})]
    with runtime.sessions() as session, shop_context(shop_id):
        assert tags_of(session, shop_id, zofia) == ["vip"], "one tag whatever its case, in the spelling kept first"


def test_a_tag_removed_by_a_flow_is_signalled_like_one_removed_by_hand(runtime, shop_id):
    zofia = customer(runtime, shop_id)
    with runtime.sessions.begin() as session, shop_context(shop_id):
        add_tag(session, shop_id, zofia, "newsletter-lapsed", source="api")
    untagger = flow(runtime, shop_id, "welcome back", {"trigger": "custom_event", "steps": [
        {"id": "untag", "type": "tag", "remove": "Newsletter-Lapsed"}]})
    event(runtime, shop_id, zofia)

    route(runtime)

    assert signals(runtime, shop_id, "tag_removed") == [
        ("tag_removed", {"tag": "newsletter-lapsed", "source": "flow", "flow_id": untagger, "caused_by": [untagger]})]
    with runtime.sessions() as session, shop_context(shop_id):
        assert tags_of(session, shop_id, zofia) == []


@pytest.mark.parametrize("reentry", ["skip", "restart", "parallel"])
def test_a_flow_that_re_adds_the_tag_it_starts_on_runs_once_and_does_not_loop(runtime, shop_id, reentry):
    zofia = customer(runtime, shop_id)
    flow(runtime, shop_id, "refresh VIP", {"trigger": "tag_added", "reentry": reentry, "steps": [
        {"id": "drop", "type": "tag", "remove": "VIP"}, {"id": "again", "type": "tag", "add": "VIP"}]})
    with runtime.sessions.begin() as session, shop_context(shop_id):
        add_tag(session, shop_id, zofia, "VIP", source="api")

    route(runtime, times=5)

    assert [r.customer_id for r in rows(runtime, shop_id, FlowRun)] == [zofia]
    assert [kind for kind, _ in signals(runtime, shop_id, "tag_added", "tag_removed")] == [
        "tag_added", "tag_removed", "tag_added"]
    assert "not_started_own_tag_change" in [d.decision for d in rows(runtime, shop_id, AutomationDecision)]


@pytest.mark.parametrize("reentry", ["skip", "restart", "parallel"])
def test_two_flows_tagging_the_same_customer_each_start_the_other_only_once(runtime, shop_id, reentry):
    zofia = customer(runtime, shop_id)
    flow(runtime, shop_id, "A", {"trigger": "tag_added", "reentry": reentry,
                                 "audience": {"field": "signal.tag", "op": "eq", "value": "a"},
                                 "steps": [{"id": "s", "type": "tag", "remove": "b"},
                                           {"id": "t", "type": "tag", "add": "b"}]})
    flow(runtime, shop_id, "B", {"trigger": "tag_added", "reentry": reentry,
                                 "audience": {"field": "signal.tag", "op": "eq", "value": "b"},
                                 "steps": [{"id": "t", "type": "tag", "remove": "a"}, {"id": "u", "type": "tag", "add": "a"}]})
    with runtime.sessions.begin() as session, shop_context(shop_id):
        add_tag(session, shop_id, zofia, "a", source="api")

    route(runtime, times=8)

    assert len(rows(runtime, shop_id, FlowRun)) == 2, "a flow already in the chain of causes is not started again"


def test_a_cascade_of_flows_each_tagging_for_the_next_stops_after_three(runtime, shop_id):
    zofia = customer(runtime, shop_id)
    for this, following in zip("abcd", "bcde"):
        flow(runtime, shop_id, f"{this} then {following}", {
            "trigger": "tag_added", "audience": {"field": "signal.tag", "op": "eq", "value": this},
            "steps": [{"id": "t", "type": "tag", "add": following}]})
    with runtime.sessions.begin() as session, shop_context(shop_id):
        add_tag(session, shop_id, zofia, "a", source="api")

    route(runtime, times=6)

    assert [payload["tag"] for _, payload in signals(runtime, shop_id, "tag_added")] == ["a", "b", "c", "d"]
    assert "not_started_cause_chain_too_deep" in [d.decision for d in rows(runtime, shop_id, AutomationDecision)]


def test_a_tag_two_flows_add_at_once_starts_neither_of_them_again(runtime, shop_id):
    zofia = customer(runtime, shop_id)
    for name in ("X", "Y"):  # started by the same signal, run in one batch, each adding "vip"
        flow(runtime, shop_id, name, {"trigger": "tag_added", "reentry": "parallel",
                                      "steps": [{"id": "t", "type": "tag", "add": "vip"}]})
    with runtime.sessions.begin() as session, shop_context(shop_id):
        add_tag(session, shop_id, zofia, "start", source="api")

    route(runtime, times=4)

    assert len(rows(runtime, shop_id, FlowRun)) == 2
    [(_, vip)] = signals(runtime, shop_id, "tag_added")[1:]
    assert sorted(vip["caused_by"]) == sorted(r.flow_id for r in rows(runtime, shop_id, FlowRun))


def test_a_segment_change_a_flows_tag_made_does_not_start_that_flow_again(runtime, shop_id):
    zofia = customer(runtime, shop_id)
    with runtime.sessions.begin() as session, shop_context(shop_id):
        create_segment(session, shop_id, "VIP", {"rule": "has_tag", "tag": "vip"}, enabled=True)
    LocalWorker(runtime).run(exit_when_idle=True)  # the segment's first refresh
    flow(runtime, shop_id, "drop", {"trigger": "segment_entered", "segment": "VIP", "reentry": "restart",
                                    "steps": [{"id": "t", "type": "tag", "remove": "vip"}]})
    flow(runtime, shop_id, "back", {"trigger": "segment_left", "segment": "VIP", "reentry": "restart",
                                    "steps": [{"id": "t", "type": "tag", "add": "vip"}]})
    with runtime.sessions.begin() as session, shop_context(shop_id):
        add_tag(session, shop_id, zofia, "vip", source="api")

    for tick in range(8):  # a second apart: segment signals are told apart by the second they happen in
        with time_machine.travel(utcnow() + dt.timedelta(seconds=2 * tick + 2), tick=True):
            route(runtime)

    assert len(rows(runtime, shop_id, FlowRun)) == 2
    assert "not_started_cause_loop" in [d.decision for d in rows(runtime, shop_id, AutomationDecision)]


def test_a_tag_step_names_a_tag_the_way_tags_set_by_hand_must_be_named():
    problems = validate_definition({"trigger": "custom_event", "steps": [
        {"id": "t", "type": "tag", "add": "   "}, {"id": "u", "type": "tag", "remove": "x" * 129}]})
    assert problems == ["step 1 (t): add must be a tag name of 1 to 128 characters",
                        "step 2 (u): remove must be a tag name of 1 to 128 characters"]
