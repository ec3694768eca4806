"""The automations JSON API under /api/v1: flows, their preview, and a customer's timeline; bearer-token auth per shop."""
from __future__ import annotations

import functools
import hashlib
import secrets
from typing import Callable

import click
from flask import Blueprint, abort, current_app, g, jsonify, request
from sqlalchemy import select

from app.automations.flows import (InvalidFlow, checked_definition, create_flow, describe, install_library_flow, library,
                                   preview_flow, set_enabled, update_flow)
from app.automations.signals import PersonalDataInSignal, emit_signal
from app.automations.timing import zone
from app.models import ApiToken, AutomationDecision, Customer, Flow, FlowRun, Message, Shop, Signal, utcnow
from app.tenancy import shop_context

automations_api = Blueprint("automations_api", __name__, url_prefix="/api/v1", cli_group="api")
TOKEN_PREFIX = "cmp"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_api_token(session, shop_id: int, name: str = "default") -> str:
    """A new bearer token for the shop; returned once, only its hash is kept."""
    token = f"{TOKEN_PREFIX}_{shop_id}_{secrets.token_urlsafe(32)}"
    session.add(ApiToken(shop_id=shop_id, name=name[:64], token_hash=_hash(token)))
    session.flush()
    return token


@automations_api.cli.command("issue-token", help="Print a new API token for SHOP_ID (shown once; only its hash is kept).")
@click.argument("shop_id", type=int)
@click.option("--name", default="default", help="what the token is for, e.g. the integration using it")
def issue_token_command(shop_id: int, name: str):
    with _sessions().begin() as session:
        if session.get(Shop, shop_id) is None:
            raise click.ClickException(f"no shop {shop_id}")
        with shop_context(shop_id):
            click.echo(issue_api_token(session, shop_id, name))


@automations_api.cli.command("revoke-tokens", help="Revoke every API token of SHOP_ID.")
@click.argument("shop_id", type=int)
def revoke_tokens_command(shop_id: int):
    with _sessions().begin() as session, shop_context(shop_id):
        revoked = 0
        for token in session.scalars(select(ApiToken).where(ApiToken.shop_id == shop_id, ApiToken.revoked_at.is_(None))):
            token.revoked_at, revoked = utcnow(), revoked + 1
    click.echo(f"{revoked} token(s) revoked")


def _sessions():
    return current_app.extensions["companion"].sessions


def _authenticate() -> int:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    parts = token.strip().split("_", 2)
    if scheme.lower() != "bearer" or len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[1].isdigit():
        abort(401, description="send Authorization: Bearer <API token>")
    shop_id = int(parts[1])
    with _sessions().begin() as session, shop_context(shop_id):
        held = session.scalars(select(ApiToken).where(ApiToken.shop_id == shop_id, ApiToken.token_hash == _hash(token.strip()),
                                                      ApiToken.revoked_at.is_(None))).first()
        if held is None:
            abort(401, description="unknown or revoked API token")
        held.last_used_at = utcnow()
    return shop_id


def authenticated(view: Callable) -> Callable:
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        g.shop_id = _authenticate()
        with shop_context(g.shop_id):
            return view(*args, **kwargs)

    return wrapper


def _body() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, description="the body must be a JSON object")
    return body


def _flow(session, flow_id: int) -> Flow:
    flow = session.scalars(select(Flow).where(Flow.shop_id == g.shop_id, Flow.id == flow_id)).first()
    if flow is None:
        abort(404, description=f"no flow {flow_id}")
    return flow


def _invalid(exc: InvalidFlow):
    return jsonify(error="invalid_flow", problems=exc.problems), 422


@automations_api.get("/openapi.json")
def openapi():
    from app.automations.openapi import openapi_document

    return jsonify(openapi_document())


@automations_api.get("/flows")
@authenticated
def list_flows():
    with _sessions()() as session:
        flows = session.scalars(select(Flow).where(Flow.shop_id == g.shop_id).order_by(Flow.id)).all()
        return jsonify(flows=[describe(f) for f in flows])


@automations_api.get("/flow-library")
@authenticated
def list_library():
    return jsonify(flows=[{"key": key, **template} for key, template in library().items()])


@automations_api.post("/flows")
@authenticated
def add_flow():
    body = _body()
    try:
        with _sessions().begin() as session:
            if body.get("library"):
                if body["library"] not in library():
                    abort(404, description=f"no ready flow {body['library']!r}")
                flow = install_library_flow(session, g.shop_id, body["library"], name=body.get("name"))
            else:
                if not isinstance(body.get("name"), str) or not body["name"].strip():
                    abort(400, description="name is required")
                flow = create_flow(session, g.shop_id, body["name"].strip()[:255], body.get("definition"))
            return jsonify(describe(flow)), 201
    except InvalidFlow as exc:
        return _invalid(exc)


@automations_api.get("/flows/<int:flow_id>")
@authenticated
def get_flow(flow_id: int):
    with _sessions()() as session:
        return jsonify(describe(_flow(session, flow_id)))


@automations_api.put("/flows/<int:flow_id>")
@authenticated
def edit_flow(flow_id: int):
    body = _body()
    try:
        with _sessions().begin() as session:
            flow = update_flow(session, _flow(session, flow_id), body.get("definition"))
            if isinstance(body.get("name"), str) and body["name"].strip():
                flow.name = body["name"].strip()[:255]
            return jsonify(describe(flow))
    except InvalidFlow as exc:
        return _invalid(exc)


@automations_api.post("/flows/validate")
@authenticated
def validate_flow():
    """Problems with a definition, including segments it names that the shop does not have; nothing is saved."""
    try:
        with _sessions()() as session:
            checked_definition(session, g.shop_id, _body().get("definition"))
    except InvalidFlow as exc:
        return jsonify(valid=False, problems=exc.problems)
    return jsonify(valid=True, problems=[])


@automations_api.post("/flows/<int:flow_id>/enable")
@authenticated
def enable_flow(flow_id: int):
    try:
        with _sessions().begin() as session:
            return jsonify(describe(set_enabled(session, _flow(session, flow_id), True)))
    except InvalidFlow as exc:
        return _invalid(exc)


@automations_api.post("/flows/<int:flow_id>/disable")
@authenticated
def disable_flow(flow_id: int):
    with _sessions().begin() as session:
        return jsonify(describe(set_enabled(session, _flow(session, flow_id), False)))


@automations_api.post("/flows/preview")
@authenticated
def preview_definition():
    try:
        with _sessions()() as session:
            return jsonify(preview_flow(session, g.shop_id, _body().get("definition")))
    except InvalidFlow as exc:
        return _invalid(exc)


@automations_api.post("/flows/<int:flow_id>/preview")
@authenticated
def preview_existing(flow_id: int):
    try:
        with _sessions()() as session:
            return jsonify(preview_flow(session, g.shop_id, _flow(session, flow_id).definition))
    except InvalidFlow as exc:  # e.g. a segment it names was deleted since
        return _invalid(exc)


@automations_api.post("/events")
@authenticated
def custom_event():
    """A custom event from the shop's own systems: {customer_id, name, id, properties} (no personal data)."""
    body = _body()
    if not isinstance(body.get("name"), str) or not isinstance(body.get("id"), str):
        abort(400, description="name and id (your idempotency key) are required strings")
    properties = body.get("properties") or {}
    try:
        with _sessions().begin() as session:
            customer_id = body.get("customer_id")
            if customer_id is not None and session.scalars(select(Customer.id).where(
                    Customer.shop_id == g.shop_id, Customer.id == customer_id)).first() is None:
                abort(404, description=f"no customer {customer_id}")
            signal_id = emit_signal(session, g.shop_id, "custom_event", dedupe_key=f"custom:{body['id']}"[:255],
                                    customer_id=customer_id, payload={**properties, "event": body["name"][:64]})
    except PersonalDataInSignal as exc:
        abort(400, description=str(exc))
    return jsonify(signal_id=signal_id, duplicate=signal_id is None), 202


@automations_api.get("/customers/<int:customer_id>/timeline")
@authenticated
def customer_timeline(customer_id: int):
    """Signals, flow runs, messages and every automation decision about one customer, oldest first."""
    with _sessions()() as session:
        customer = session.scalars(select(Customer).where(Customer.shop_id == g.shop_id, Customer.id == customer_id)).first()
        if customer is None:
            abort(404, description=f"no customer {customer_id}")
        tz = zone(session.get(Shop, g.shop_id).timezone)

        def when(moment):
            return None if moment is None else {"utc": moment.isoformat(), "local": moment.astimezone(tz).isoformat()}

        items = []
        for s in session.scalars(select(Signal).where(Signal.shop_id == g.shop_id, Signal.customer_id == customer_id)):
            items.append({"type": "signal", "at": when(s.occurred_at), "kind": s.kind, "id": s.id, "payload": s.payload,
                          "subject": {"type": s.subject_type, "id": s.subject_id}, "routed_at": when(s.routed_at)})
        for run in session.scalars(select(FlowRun).where(FlowRun.shop_id == g.shop_id, FlowRun.customer_id == customer_id)):
            items.append({"type": "flow_run", "at": when(run.started_at), "id": run.id, "flow_id": run.flow_id,
                          "flow_version": run.flow_version, "state": run.state, "next_step": run.next_step,
                          "due_at": when(run.due_at), "exit_reason": run.exit_reason, "finished_at": when(run.finished_at)})
        for m in session.scalars(select(Message).where(Message.shop_id == g.shop_id, Message.customer_id == customer_id)):
            items.append({"type": "message", "at": when(m.created_at), "id": m.id, "channel": m.channel, "kind": m.kind,
                          "template": m.template, "status": m.status, "flow_run_id": m.flow_run_id,
                          "gate_trace": m.gate_trace, "sent_at": when(m.sent_at)})
        for d in session.scalars(select(AutomationDecision).where(AutomationDecision.shop_id == g.shop_id,
                                                                   AutomationDecision.customer_id == customer_id)):
            items.append({"type": "decision", "at": when(d.created_at), "decision": d.decision, "step": d.step,
                          "flow_run_id": d.flow_run_id, "subject": {"type": d.subject_type, "id": d.subject_id},
                          "detail": d.detail})
        items.sort(key=lambda item: (item["at"]["utc"] if item["at"] else "", item["type"]))
        return jsonify(customer_id=customer_id, timezone=str(tz), items=items)


from app.automations import segments_api  # noqa: E402,F401 - adds the segment and tag routes to this blueprint
from app.automations import product_alerts_api  # noqa: E402,F401 - adds the product alert routes
