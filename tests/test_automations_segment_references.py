"""Flows name segments by id (names accepted on input), so a rename never unhooks them; a segment in use is not deleted."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from app.automations.api import issue_api_token
from app.automations.flows import InvalidFlow, create_flow, set_enabled, update_flow
from app.automations.segments import (SegmentInUse, bind_stored_names, create_segment, delete_segment,
                                      trigger_matches)
from app.models import Flow, FlowRun, FlowVersion, Message, Segment, SegmentMember, Shop, utcnow
from app.tenancy import shop_context
from tests.factories import make_customer, make_shop
from tests.segments_kit import polish_shop_with_api_token
from tests.automations_kit import route, work

VIP = {"rule": "has_tag", "tag": "VIP"}
HELLO = {"id": "hello", "type": "send", "channel": "email", "kind": "promotional", "template": "vip_welcome_offer"}


@pytest.fixture
def runtime(app):
    return app.extensions["companion"]


@pytest.fixture
def shop(runtime):
    return polish_shop_with_api_token(runtime)


def vip_segment(runtime, shop_id: int) -> int:
    with runtime.sessions.begin() as session, shop_context(shop_id):
        segment_id = create_segment(session, shop_id, "VIP", VIP, enabled=True).id
    work(runtime)  # the first refresh
    return segment_id


def new_flow(client, shop: dict, definition: dict, *, enabled: bool = True):
    created = client.post("/api/v1/flows", json={"name": "VIP welcome", "definition": definition}, headers=shop["auth"])
    if created.status_code == 201 and enabled:
        client.post(f"/api/v1/flows/{created.json['id']}/enable", headers=shop["auth"])
    return created


def test_a_segment_named_in_a_flow_is_stored_as_its_id(runtime, client, shop):
    segment_id = vip_segment(runtime, shop["id"])

    created = new_flow(client, shop, {"trigger": "segment_entered", "segment": "VIP", "steps": [
        {"id": "which", "type": "condition", "if": {"any": [{"field": "customer.segments", "op": "in", "value": ["VIP"]}]},
         "then": "hello"}, HELLO]})

    assert created.status_code == 201, created.json
    definition = created.json["definition"]
    assert definition["segment"] == segment_id
    assert definition["steps"][0]["if"]["any"][0]["value"] == [segment_id]


def test_renaming_a_segment_keeps_its_entered_flow_starting(runtime, client, shop):
    vip_segment(runtime, shop["id"])
    new_flow(client, shop, {"trigger": "segment_entered", "segment": "VIP",
                            "audience": {"field": "customer.segments", "op": "eq", "value": "VIP"}, "steps": [HELLO]})
    with runtime.sessions.begin() as session, shop_context(shop["id"]):
        zofia = make_customer(session, session.get(Shop, shop["id"]), "zofia@example.pl").id
    segment_id = client.get("/api/v1/segments", headers=shop["auth"]).json["segments"][0]["id"]
    renamed = client.put(f"/api/v1/segments/{segment_id}", json={"name": "Stałe klientki"}, headers=shop["auth"])
    assert renamed.status_code == 200

    client.post(f"/api/v1/customers/{zofia}/tags", json={"tag": "VIP"}, headers=shop["auth"])
    route(runtime)  # tag_added -> the membership is refreshed -> segment_entered
    route(runtime)  # segment_entered -> the flow

    with runtime.sessions() as session, shop_context(shop["id"]):
        assert session.scalars(select(Message.template)).all() == ["vip_welcome_offer"]


def test_a_flow_naming_a_segment_the_shop_does_not_have_is_refused(client, shop):
    created = new_flow(client, shop, {"trigger": "segment_entered", "segment": "Nie ma takiego", "steps": [HELLO]})

    assert created.status_code == 422
    assert created.json["problems"] == ["segment: no segment named 'Nie ma takiego'"]
    checked = client.post("/api/v1/flows/validate", json={"definition": {
        "trigger": "custom_event", "audience": {"field": "customer.segments", "op": "eq", "value": 999999},
        "steps": [HELLO]}}, headers=shop["auth"])
    assert checked.json == {"valid": False, "problems": ["condition on customer.segments: no segment with id 999999"]}


def test_a_segment_an_enabled_flow_uses_is_not_deleted_and_the_answer_names_the_flow(runtime, client, shop):
    segment_id = vip_segment(runtime, shop["id"])
    flow_id = new_flow(client, shop, {"trigger": "segment_entered", "segment": "VIP", "steps": [HELLO]}).json["id"]

    answer = client.delete(f"/api/v1/segments/{segment_id}", headers=shop["auth"])

    assert answer.status_code == 409
    assert answer.json["error"] == "segment_in_use"
    assert answer.json["flows"] == [{"id": flow_id, "name": "VIP welcome", "enabled": True, "runs_in_flight": False}]
    assert client.get(f"/api/v1/segments/{segment_id}", headers=shop["auth"]).status_code == 200


def test_a_segment_a_run_in_flight_still_asks_about_is_not_deleted_even_if_its_flow_is_off(runtime, client, shop):
    segment_id = vip_segment(runtime, shop["id"])
    with runtime.sessions.begin() as session, shop_context(shop["id"]):
        zofia = make_customer(session, session.get(Shop, shop["id"]), "zofia@example.pl").id
        flow = create_flow(session, shop["id"], "branch", {"trigger": "custom_event", "steps": [
            {"id": "wait", "type": "wait", "days": 1},
            {"id": "which", "type": "condition", "if": {"field": "customer.segments", "op": "eq", "value": "VIP"},
             "then": "hello", "else": "exit"}, HELLO]})
        session.add(FlowRun(shop_id=shop["id"], flow_id=flow.id, flow_version=flow.version, customer_id=zofia,
                            trigger_key="signal:1", state="waiting", next_step=1, due_at=utcnow(), context={},
                            started_at=utcnow()))

    answer = client.delete(f"/api/v1/segments/{segment_id}", headers=shop["auth"])

    assert answer.status_code == 409
    assert answer.json["flows"] == [{"id": flow.id, "name": "branch", "enabled": False, "runs_in_flight": True}]


def test_an_unused_segment_is_deleted_with_its_members(runtime, client, shop):
    with runtime.sessions.begin() as session, shop_context(shop["id"]):
        zofia = make_customer(session, session.get(Shop, shop["id"]), "zofia@example.pl").id
    client.post(f"/api/v1/customers/{zofia}/tags", json={"tag": "VIP"}, headers=shop["auth"])
    segment_id = vip_segment(runtime, shop["id"])
    new_flow(client, shop, {"trigger": "segment_entered", "segment": "VIP", "steps": [HELLO]}, enabled=False)

    answer = client.delete(f"/api/v1/segments/{segment_id}", headers=shop["auth"])

    assert answer.status_code == 204
    assert client.get(f"/api/v1/segments/{segment_id}", headers=shop["auth"]).status_code == 404
    with runtime.sessions() as session, shop_context(shop["id"]):
        assert session.scalars(select(SegmentMember)).all() == []
    assert client.delete(f"/api/v1/segments/{segment_id}", headers=shop["auth"]).status_code == 404


def test_a_flow_whose_segment_was_deleted_cannot_be_switched_on(runtime, client, shop):
    segment_id = vip_segment(runtime, shop["id"])
    flow_id = new_flow(client, shop, {"trigger": "segment_entered", "segment": "VIP", "steps": [HELLO]},
                       enabled=False).json["id"]
    assert client.delete(f"/api/v1/segments/{segment_id}", headers=shop["auth"]).status_code == 204

    answer = client.post(f"/api/v1/flows/{flow_id}/enable", headers=shop["auth"])

    assert answer.status_code == 422
    assert answer.json["problems"] == [f"segment: no segment with id {segment_id}"]
    with runtime.sessions() as session, shop_context(shop["id"]):
        assert session.get(Flow, flow_id).enabled is False
    assert client.post(f"/api/v1/flows/{flow_id}/preview", headers=shop["auth"]).status_code == 422


def test_another_shop_cannot_delete_the_segment(runtime, client, shop):
    segment_id = vip_segment(runtime, shop["id"])
    with runtime.sessions.begin() as session:
        other = make_shop(session)
        other_auth = {"Authorization": f"Bearer {issue_api_token(session, other.id, 'other')}"}

    assert client.delete(f"/api/v1/segments/{segment_id}", headers=other_auth).status_code == 404


def stored_by_name(runtime, shop_id: int) -> int:
    """A flow saved before flows were bound to segment ids: it names its segment by name (written as rows)."""
    definition = {"trigger": "segment_entered", "segment": "VIP",
                  "audience": {"field": "customer.segments", "op": "eq", "value": "VIP"}, "steps": [HELLO]}
    with runtime.sessions.begin() as session, shop_context(shop_id):
        flow = Flow(shop_id=shop_id, name="legacy", trigger="segment_entered", definition=definition, version=1,
                    enabled=True)
        session.add(flow)
        session.flush()
        session.add(FlowVersion(shop_id=shop_id, flow_id=flow.id, version=1, definition=definition))
        return flow.id


def test_renaming_a_segment_binds_flows_that_still_name_it_by_name_to_its_id(runtime, client, shop):
    segment_id = vip_segment(runtime, shop["id"])
    flow_id = stored_by_name(runtime, shop["id"])

    client.put(f"/api/v1/segments/{segment_id}", json={"name": "Stałe klientki"}, headers=shop["auth"])

    with runtime.sessions() as session, shop_context(shop["id"]):
        flow = session.get(Flow, flow_id)
        [version] = session.scalars(select(FlowVersion).where(FlowVersion.flow_id == flow_id)).all()
        assert (flow.definition["segment"], flow.definition["audience"]["value"]) == (segment_id, segment_id)
        assert version.definition["segment"] == segment_id, "runs in flight read their version"


def test_a_flow_naming_the_segment_by_name_also_keeps_it_from_being_deleted(runtime, client, shop):
    segment_id = vip_segment(runtime, shop["id"])
    flow_id = stored_by_name(runtime, shop["id"])

    answer = client.delete(f"/api/v1/segments/{segment_id}", headers=shop["auth"])

    assert (answer.status_code, [f["id"] for f in answer.json["flows"]]) == (409, [flow_id])


# --- two requests at once: a delete or a rename against a flow being saved or switched on ----------------------

def in_other_transaction(work) -> tuple[threading.Thread, dict]:
    """Run `work()` in a thread (its own session and transaction); its result or exception lands in the dict."""
    outcome: dict = {}

    def go() -> None:
        try:
            outcome["result"] = work()
        except Exception as exc:  # noqa: BLE001 - the test reads it
            outcome["error"] = exc

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread, outcome


def delete_in_other_transaction(runtime, shop_id: int, segment_id: int) -> tuple[threading.Thread, dict]:
    def work() -> str:
        with runtime.sessions.begin() as session, shop_context(shop_id):
            delete_segment(session, session.get(Segment, segment_id))
        return "deleted"

    return in_other_transaction(work)


def switched_off_flow(runtime, shop_id: int) -> int:
    with runtime.sessions.begin() as session, shop_context(shop_id):
        return create_flow(session, shop_id, "VIP welcome", {"trigger": "segment_entered", "segment": "VIP",
                                                             "steps": [HELLO]}).id


def test_a_delete_racing_a_flow_being_switched_on_with_its_segment_is_refused(runtime, shop):
    segment_id = vip_segment(runtime, shop["id"])
    flow_id = switched_off_flow(runtime, shop["id"])

    with runtime.sessions.begin() as session, shop_context(shop["id"]):
        set_enabled(session, session.get(Flow, flow_id), True)
        deleting, outcome = delete_in_other_transaction(runtime, shop["id"], segment_id)
        deleting.join(timeout=1.0)  # it has read the flows by now, unless it waits for this transaction
    deleting.join(timeout=30)

    assert isinstance(outcome.get("error"), SegmentInUse), outcome
    with runtime.sessions() as session, shop_context(shop["id"]):
        assert session.get(Segment, segment_id) is not None


def test_a_flow_switched_on_while_its_segment_is_being_deleted_is_refused(runtime, shop):
    segment_id = vip_segment(runtime, shop["id"])
    flow_id = switched_off_flow(runtime, shop["id"])

    def enable() -> bool:
        with runtime.sessions.begin() as session, shop_context(shop["id"]):
            return set_enabled(session, session.get(Flow, flow_id), True).enabled

    with runtime.sessions.begin() as session, shop_context(shop["id"]):
        delete_segment(session, session.get(Segment, segment_id))
        enabling, outcome = in_other_transaction(enable)
        enabling.join(timeout=1.0)  # it has checked the segment by now, unless it waits for this transaction
    enabling.join(timeout=30)

    assert isinstance(outcome.get("error"), InvalidFlow), outcome
    with runtime.sessions() as session, shop_context(shop["id"]):
        assert session.get(Flow, flow_id).enabled is False


def test_a_rename_racing_an_edit_of_a_flow_that_names_the_segment_keeps_the_edit(runtime, shop):
    segment_id = vip_segment(runtime, shop["id"])
    flow_id = stored_by_name(runtime, shop["id"])
    edited = {"trigger": "segment_entered", "segment": segment_id,
              "steps": [{**HELLO, "template": "vip_welcome"}]}

    def rename() -> int:
        with runtime.sessions.begin() as session, shop_context(shop["id"]):
            segment = session.get(Segment, segment_id)
            rewritten = bind_stored_names(session, segment)
            segment.name = "Stałe klientki"
            return rewritten

    with runtime.sessions.begin() as session, shop_context(shop["id"]):
        update_flow(session, session.get(Flow, flow_id), edited)
        renaming, outcome = in_other_transaction(rename)
        renaming.join(timeout=1.0)  # it has read the flow by now, unless it waits for this transaction
    renaming.join(timeout=30)

    assert "error" not in outcome, outcome
    with runtime.sessions() as session, shop_context(shop["id"]):
        flow = session.get(Flow, flow_id)
        assert (flow.version, flow.definition) == (2, edited)


def test_a_definition_stored_by_segment_name_before_ids_still_matches_its_segment():
    payload = {"segment_id": 7, "segment": "VIP", "segment_version": 1}
    assert trigger_matches({"segment": "VIP"}, "segment_entered", payload)
    assert trigger_matches({"segment": 7}, "segment_entered", payload)
    assert not trigger_matches({"segment": 8}, "segment_entered", payload)


def test_the_openapi_document_describes_deleting_a_segment(client):
    operation = client.get("/api/v1/openapi.json").json["paths"]["/segments/{segment_id}"]["delete"]
    assert set(operation["responses"]) >= {"204", "401", "409"}
    assert operation["responses"]["409"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SegmentInUse"}
