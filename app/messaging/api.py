"""The JSON API's outbox endpoints for the shop owner: sends whose outcome is unknown, and settling each one."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, g, jsonify, request
from sqlalchemy import select

from app.automations.api import authenticated
from app.messaging import feedback
from app.models import DeliveryAttempt, Message

messaging_api = Blueprint("messaging_api", __name__, url_prefix="/api/v1")

PAGE_DEFAULT, PAGE_MAX = 100, 500


def _sessions():
    return current_app.extensions["companion"].sessions


def _when(moment) -> str | None:
    return None if moment is None else moment.isoformat()


def describe_message(message: Message, attempts: list[DeliveryAttempt]) -> dict:
    return {
        "id": message.id, "status": message.status, "channel": message.channel, "kind": message.kind,
        "recipient": message.recipient, "customer_id": message.customer_id, "template": message.template,
        "error": message.error, "provider_message_id": message.provider_message_id,
        "due_at": _when(message.due_at), "sent_at": _when(message.sent_at), "created_at": _when(message.created_at),
        "attempts": [{"attempt": a.attempt, "provider": a.provider, "outcome": a.outcome, "response": a.response,
                      "started_at": _when(a.started_at), "finished_at": _when(a.finished_at)} for a in attempts],
        "gate_trace": message.gate_trace,
    }


def _attempts_by_message(session, message_ids: list[int]) -> dict[int, list[DeliveryAttempt]]:
    found: dict[int, list[DeliveryAttempt]] = {message_id: [] for message_id in message_ids}
    if message_ids:
        for attempt in session.scalars(select(DeliveryAttempt).where(DeliveryAttempt.message_id.in_(message_ids))
                                       .order_by(DeliveryAttempt.message_id, DeliveryAttempt.attempt)):
            found[attempt.message_id].append(attempt)
    return found


@messaging_api.get("/messages/unknown")
@authenticated
def list_unknown_messages():
    """Newest first; `before_id` pages on from the last id of the previous page."""
    try:
        limit = min(max(int(request.args.get("limit", PAGE_DEFAULT)), 1), PAGE_MAX)
        before_id = int(request.args["before_id"]) if request.args.get("before_id") else None
    except ValueError:
        abort(400, description="limit and before_id must be integers")
    with _sessions()() as session:
        query = select(Message).where(Message.shop_id == g.shop_id, Message.status == "unknown")
        if before_id is not None:
            query = query.where(Message.id < before_id)
        messages = session.scalars(query.order_by(Message.id.desc()).limit(limit)).all()
        attempts = _attempts_by_message(session, [m.id for m in messages])
        return jsonify(messages=[describe_message(m, attempts[m.id]) for m in messages],
                       next_before_id=messages[-1].id if len(messages) == limit else None)


@messaging_api.post("/messages/<int:message_id>/resolve")
@authenticated
def resolve_unknown_message(message_id: int):
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, description="the body must be a JSON object")
    outcome, note, resend = body.get("outcome"), body.get("note"), body.get("resend", False)
    if outcome not in feedback.RESOLUTIONS:
        abort(400, description=f"outcome must be one of {list(feedback.RESOLUTIONS)}")
    if note is not None and not isinstance(note, str):
        abort(400, description="note must be a string")
    if not isinstance(resend, bool) or (resend and outcome != "not_sent"):
        abort(400, description="resend is a boolean, and only a message that was not sent can be sent again")
    with _sessions().begin() as session:
        message = session.scalars(select(Message).where(Message.shop_id == g.shop_id, Message.id == message_id)).first()
        if message is None:
            abort(404, description=f"no message {message_id}")
        try:
            feedback.resolve_unknown(session, message, outcome, note=note, resend=resend)
        except feedback.NotUnknown as exc:
            return jsonify(error="not_unknown", message=str(exc), status=message.status), 409
        session.flush()
        return jsonify(describe_message(message, _attempts_by_message(session, [message.id])[message.id]))


def openapi_paths() -> tuple[dict, dict]:
    """The schemas and paths these endpoints add to /api/v1/openapi.json."""
    def op(summary: str, answer: dict, *, body: dict | None = None, extra: dict | None = None) -> dict:
        operation = {"summary": summary, "security": [{"bearer": []}],
                     "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": answer}}},
                                   "401": {"description": "missing, unknown or revoked API token"}, **(extra or {})}}
        if body:
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
        return operation

    message = {"$ref": "#/components/schemas/OutboxMessage"}
    schemas = {
        "OutboxMessage": {"type": "object", "properties": {
            "id": {"type": "integer"}, "status": {"enum": ["scheduled", "sending", "sent", "failed", "unknown",
                                                           "suppressed", "cancelled"]},
            "channel": {"enum": ["email", "sms", "push"]},
            "kind": {"enum": ["transactional", "shipping", "recovery", "promotional"]},
            "recipient": {"type": "string"}, "customer_id": {"type": ["integer", "null"]},
            "template": {"type": "string"}, "error": {"type": ["string", "null"]},
            "provider_message_id": {"type": ["string", "null"]},
            "due_at": {"type": "string", "format": "date-time"},
            "sent_at": {"type": ["string", "null"], "format": "date-time"},
            "created_at": {"type": "string", "format": "date-time"},
            "attempts": {"type": "array", "items": {"type": "object"}},
            "gate_trace": {"type": "array", "items": {"type": "object"},
                           "description": "every gate's verdict and every send outcome, oldest first"}}},
        "Resolution": {"type": "object", "required": ["outcome"], "properties": {
            "outcome": {"enum": list(feedback.RESOLUTIONS),
                        "description": "what the owner found out: the recipient got it (sent) or did not (not_sent)"},
            "note": {"type": "string", "description": "how the owner knows, kept in the message's trace"},
            "resend": {"type": "boolean", "default": False,
                       "description": "with not_sent: schedule it again (the send gates run again first)"}}},
    }
    paths = {
        "/messages/unknown": {"get": {
            **op("Messages whose send had an ambiguous outcome (the provider may or may not have them), newest first",
                 {"type": "object", "properties": {"messages": {"type": "array", "items": message},
                                                   "next_before_id": {"type": ["integer", "null"]}}}),
            "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "default": PAGE_DEFAULT,
                                                                          "maximum": PAGE_MAX}},
                           {"name": "before_id", "in": "query", "schema": {"type": "integer"}}]}},
        "/messages/{message_id}/resolve": {
            "parameters": [{"name": "message_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "post": op("Settle an unknown message as sent or not sent", message,
                       body={"$ref": "#/components/schemas/Resolution"},
                       extra={"404": {"description": "no such message in this shop"},
                              "409": {"description": "the message is not in the unknown state"}})},
    }
    return schemas, paths
