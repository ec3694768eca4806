"""POST /s/events: a batch of page views, product views and add-to-carts from the snippet's sendBeacon.

The storefront's busiest endpoint (every page of every shop sends here), so it is a lean route
(app/web/lean_routes.py): the same gate as the other `/s/...` endpoints (key, origin, body cap, rate limits)
and the same answers, read from the WSGI environ without Flask's request machinery.
"""
from __future__ import annotations

import json

from app.storefront import capture
from app.storefront import validation as v
from app.storefront.guard import (
    Gate,
    address_key,
    Rejected,
    body_too_large,
    check_origin,
    cors_headers,
    counted_then,
    find_shop,
    json_object,
)
from app.web.lean_routes import BodyTooLarge, LeanAnswer, LeanRequest, LeanRoutes

EVENTS_PATH = "/s/events"


def add_storefront_events(routes: LeanRoutes, gate: Gate) -> None:
    routes.add(EVENTS_PATH, lambda request: receive_events(gate, request), methods=("POST", "OPTIONS"))


def receive_events(gate: Gate, request: LeanRequest) -> LeanAnswer:
    """Good events are stored even beside bad ones; a refusal is a JSON error, with CORS for the shop's own sites."""
    origin = None
    try:
        shop = find_shop(gate, request.query("k"))
        origin = check_origin(shop, request.header("Origin"))
        if request.method == "OPTIONS":
            return LeanAnswer(204, b"", headers=tuple(cors_headers(origin, preflight=True).items()))
        return _store(gate, shop, origin, request)
    except Rejected as exc:
        headers = {**exc.headers, **(cors_headers(origin) if origin else {})}
        body = json.dumps({"error": exc.error, "message": exc.message}, separators=(",", ":")).encode() + b"\n"
        return LeanAnswer(exc.status, body, headers=tuple(headers.items()))


def _store(gate: Gate, shop, origin: str, request: LeanRequest) -> LeanAnswer:
    settings = gate.runtime.settings.storefront
    cap = settings.max_body_bytes
    declared = request.declared_length()
    try:
        raw = request.body(cap)
    except BodyTooLarge:
        raise body_too_large(cap, declared) from None
    body = json_object(raw)
    visitor_id = v.visitor_id(body)
    raw_events = v.items(body, "events", settings.max_events_per_batch)
    now = capture.utcnow()
    rows, problems = capture.parse_events(raw_events, visitor_id, now)
    if problems and not rows:
        raise Rejected(400, "invalid_events", "no event was valid: " + "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5]))
    batch = capture.EventBatch(gate.runtime.engine.dialect, shop.id, rows)
    stored = counted_then(gate, shop, visitor_id, address_key(request.remote_addr), batch.insert)
    answer = json.dumps({"status": "accepted", "stored": stored, "rejected": problems}, separators=(",", ":")).encode()
    return LeanAnswer(202, answer, headers=(*cors_headers(origin).items(), ("Cache-Control", "no-store")))
