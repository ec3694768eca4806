"""The OpenAPI 3.1 document of the JSON API's automation endpoints (served at /api/v1/openapi.json)."""
from __future__ import annotations

_FLOW = {"type": "object", "properties": {
    "id": {"type": "integer"}, "name": {"type": "string"}, "trigger": {"type": "string"}, "enabled": {"type": "boolean"},
    "version": {"type": "integer"}, "definition": {"$ref": "#/components/schemas/FlowDefinition"},
    "updated_at": {"type": "string", "format": "date-time"}}}
_DEFINITION = {"type": "object", "required": ["trigger", "steps"], "properties": {
    "trigger": {"type": "string", "description": "a signal kind, e.g. cart_abandoned, order_placed, order_paid"},
    "segment": {"type": ["integer", "string"], "description": (
        "for segment_entered / segment_left: the segment's id or name; stored as its id, so renaming the segment "
        "keeps the flow working (so are segment names in conditions on customer.segments)")},
    "audience": {"type": "object", "description": "a condition: {field, op, value} or {all|any: [...]} or {not: ...}"},
    "exit": {"type": "array", "items": {"enum": ["purchased", "unsubscribed", "cart_emptied", "order_paid", "order_cancelled"]}},
    "reentry": {"enum": ["skip", "restart", "parallel"]},
    "steps": {"type": "array", "items": {"type": "object", "required": ["id", "type"], "properties": {
        "id": {"type": "string"}, "type": {"enum": ["wait", "condition", "send", "tag", "coupon", "webhook", "sunset"]},
        "payment_link": {"type": "boolean", "description": (
            "send steps: carry the order's payment link as the live store gives it at send time (or its status "
            "page); without one the step waits up to 48 h and is then skipped, never sent with a dead link")}}}}}}
_PROBLEMS = {"type": "object", "properties": {"error": {"type": "string"}, "problems": {"type": "array", "items": {"type": "string"}}}}


def _op(summary: str, *, body: str | None = None, answer: dict | None = None, status: str = "200") -> dict:
    operation: dict = {"summary": summary, "security": [{"bearer": []}],
                       "responses": {status: {"description": "OK", "content": {"application/json": {"schema": answer or {"type": "object"}}}},
                                     "401": {"description": "missing, unknown or revoked API token"}}}
    if body:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}}}
    return operation


def _enable() -> dict:
    operation = _op("Switch the flow on (refused with 422 when a segment it names no longer exists)",
                    answer={"$ref": "#/components/schemas/Flow"})
    operation["responses"]["422"] = {"description": "the flow names a segment the shop no longer has",
                                     "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problems"}}}}
    return operation


def _flow_id() -> list[dict]:
    return [{"name": "flow_id", "in": "path", "required": True, "schema": {"type": "integer"}}]


def openapi_document() -> dict:
    from app.automations.product_alerts_api import openapi_paths as product_alert_paths
    from app.automations.segments_api import openapi_paths

    flow = {"$ref": "#/components/schemas/Flow"}
    document = {
        "openapi": "3.1.0",
        "info": {"title": "Store companion API", "version": "1"},
        "servers": [{"url": "/api/v1"}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "a per-shop API token"}},
            "schemas": {"Flow": _FLOW, "FlowDefinition": _DEFINITION, "Problems": _PROBLEMS,
                        "FlowCreate": {"type": "object", "properties": {
                            "name": {"type": "string"}, "library": {"type": "string"},
                            "definition": {"$ref": "#/components/schemas/FlowDefinition"}}},
                        "DefinitionBody": {"type": "object", "required": ["definition"], "properties": {
                            "definition": {"$ref": "#/components/schemas/FlowDefinition"}, "name": {"type": "string"}}},
                        "Event": {"type": "object", "required": ["name", "id"], "properties": {
                            "name": {"type": "string"}, "id": {"type": "string", "description": "your idempotency key"},
                            "customer_id": {"type": "integer"},
                            "properties": {"type": "object", "description": "ids, amounts, statuses; no personal data"}}}},
        },
        "paths": {
            "/flows": {"get": _op("List the shop's flows"),
                       "post": _op("Create a flow from a definition or a ready flow of the library", body="FlowCreate",
                                   answer=flow, status="201")},
            "/flow-library": {"get": _op("The ready flows a shop can switch on")},
            "/flows/validate": {"post": _op("Validate a definition (and the segments it names) without saving it",
                                            body="DefinitionBody")},
            "/flows/preview": {"post": _op("What a definition would have done over the last 30 days; sends nothing",
                                           body="DefinitionBody")},
            "/flows/{flow_id}": {"parameters": _flow_id(), "get": _op("One flow", answer=flow),
                                 "put": _op("Publish a new version (runs in flight keep theirs)", body="DefinitionBody",
                                            answer=flow)},
            "/flows/{flow_id}/enable": {"parameters": _flow_id(), "post": _enable()},
            "/flows/{flow_id}/disable": {"parameters": _flow_id(), "post": _op("Switch the flow off", answer=flow)},
            "/flows/{flow_id}/preview": {"parameters": _flow_id(), "post": _op("Preview a saved flow over the last 30 days")},
            "/events": {"post": _op("Record a custom event (a signal flows can start on)", body="Event", status="202")},
            "/customers/{customer_id}/timeline": {
                "parameters": [{"name": "customer_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "get": _op("Signals, flow runs, messages and decisions about one customer, times in UTC and shop time")},
        },
    }
    schemas, paths = openapi_paths()
    document["components"]["schemas"].update(schemas)
    document["paths"].update(paths)
    schemas, paths = product_alert_paths()
    document["components"]["schemas"].update(schemas)
    document["paths"].update(paths)
    from app.messaging.api import openapi_paths as outbox_paths

    schemas, paths = outbox_paths()
    document["components"]["schemas"].update(schemas)
    document["paths"].update(paths)
    return document
