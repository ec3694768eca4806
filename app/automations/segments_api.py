"""The JSON API's segment and tag endpoints, on the /api/v1 blueprint (same bearer-token auth as flows)."""
from __future__ import annotations

from flask import abort, g, jsonify, request
from sqlalchemy import select

from app.automations.api import _body, _sessions, authenticated, automations_api
from app.automations.segments import (InvalidSegment, SegmentInUse, bind_stored_names, count_matching, create_segment,
                                      delete_segment, describe_segment, members_page, scope_for, set_segment_enabled,
                                      update_segment, validate_segment)
from app.automations.tags import InvalidTag, add_tag, remove_tag, tags_of
from app.models import Customer, Segment

PAGE_DEFAULT, PAGE_MAX = 100, 1000


def _segment(session, segment_id: int) -> Segment:
    segment = session.scalars(select(Segment).where(Segment.shop_id == g.shop_id, Segment.id == segment_id)).first()
    if segment is None:
        abort(404, description=f"no segment {segment_id}")
    return segment


def _invalid(exc: InvalidSegment):
    return jsonify(error="invalid_segment", problems=exc.problems), 422


def _name(body: dict, required: bool) -> str | None:
    name = body.get("name")
    if name is None and not required:
        return None
    if not isinstance(name, str) or not name.strip():
        abort(400, description="name is required")
    return name.strip()[:255]


def _name_taken(session, name: str, other_than: int | None = None) -> bool:
    query = select(Segment.id).where(Segment.shop_id == g.shop_id, Segment.name == name)
    if other_than is not None:
        query = query.where(Segment.id != other_than)
    return session.scalars(query).first() is not None


@automations_api.get("/segments")
@authenticated
def list_segments():
    with _sessions()() as session:
        found = session.scalars(select(Segment).where(Segment.shop_id == g.shop_id).order_by(Segment.id)).all()
        return jsonify(segments=[describe_segment(s) for s in found])


@automations_api.post("/segments")
@authenticated
def add_segment():
    body = _body()
    name = _name(body, required=True)
    try:
        with _sessions().begin() as session:
            if _name_taken(session, name):
                abort(409, description=f"a segment named {name!r} exists")
            segment = create_segment(session, g.shop_id, name, body.get("definition"), enabled=body.get("enabled") is True)
            return jsonify(describe_segment(segment)), 201
    except InvalidSegment as exc:
        return _invalid(exc)


@automations_api.post("/segments/validate")
@authenticated
def validate_segment_definition():
    """Problems with a definition; when it is valid, how many customers it holds for right now."""
    definition = _body().get("definition")
    problems = validate_segment(definition)
    if problems:
        return jsonify(valid=False, problems=problems)
    with _sessions()() as session:
        return jsonify(valid=True, problems=[], count=count_matching(session, definition, scope_for(session, g.shop_id)))


@automations_api.get("/segments/<int:segment_id>")
@authenticated
def get_segment(segment_id: int):
    with _sessions()() as session:
        return jsonify(describe_segment(_segment(session, segment_id)))


@automations_api.put("/segments/<int:segment_id>")
@authenticated
def edit_segment(segment_id: int):
    body = _body()
    name = _name(body, required=False)
    try:
        with _sessions().begin() as session:
            segment = _segment(session, segment_id)
            if name is not None:
                if _name_taken(session, name, other_than=segment.id):
                    abort(409, description=f"a segment named {name!r} exists")
                if name != segment.name:
                    bind_stored_names(session, segment)  # flows stored before ids were used keep working
                segment.name = name
            if "definition" in body:
                update_segment(session, segment, body["definition"])
            session.flush()
            return jsonify(describe_segment(segment))
    except InvalidSegment as exc:
        return _invalid(exc)


@automations_api.delete("/segments/<int:segment_id>")
@authenticated
def remove_segment(segment_id: int):
    """Delete a segment and its members; 409 naming the flows that still use it (switch them off or edit them)."""
    try:
        with _sessions().begin() as session:
            delete_segment(session, _segment(session, segment_id))
    except SegmentInUse as exc:
        return jsonify(error="segment_in_use", segment_id=segment_id, flows=exc.flows,
                       message="flows that are on, or have runs in flight, use this segment"), 409
    return "", 204


@automations_api.post("/segments/<int:segment_id>/enable")
@authenticated
def enable_segment(segment_id: int):
    with _sessions().begin() as session:
        return jsonify(describe_segment(set_segment_enabled(session, _segment(session, segment_id), True)))


@automations_api.post("/segments/<int:segment_id>/disable")
@authenticated
def disable_segment(segment_id: int):
    with _sessions().begin() as session:
        return jsonify(describe_segment(set_segment_enabled(session, _segment(session, segment_id), False)))


@automations_api.get("/segments/<int:segment_id>/count")
@authenticated
def segment_count(segment_id: int):
    with _sessions()() as session:
        segment = _segment(session, segment_id)
        return jsonify(segment_id=segment.id, enabled=segment.enabled, count=segment.member_count,
                       refreshed_at=segment.refreshed_at.isoformat() if segment.refreshed_at else None)


@automations_api.get("/segments/<int:segment_id>/members")
@authenticated
def segment_members(segment_id: int):
    """Stored members by customer id; pass the answer's `next_after` as `after` for the next page."""
    after = request.args.get("after", default=0, type=int)
    limit = min(max(request.args.get("limit", default=PAGE_DEFAULT, type=int), 1), PAGE_MAX)
    with _sessions()() as session:
        segment = _segment(session, segment_id)
        page = members_page(session, segment, after=after, limit=limit)
        return jsonify(segment_id=segment.id, count=segment.member_count, members=page,
                       refreshed_at=segment.refreshed_at.isoformat() if segment.refreshed_at else None,
                       next_after=page[-1]["customer_id"] if len(page) == limit else None)


def _customer_id(session, customer_id: int) -> int:
    found = session.scalars(select(Customer.id).where(Customer.shop_id == g.shop_id, Customer.id == customer_id,
                                                      Customer.redacted_at.is_(None))).first()
    if found is None:
        abort(404, description=f"no customer {customer_id}")
    return found


@automations_api.get("/customers/<int:customer_id>/tags")
@authenticated
def customer_tags(customer_id: int):
    with _sessions()() as session:
        return jsonify(customer_id=customer_id, tags=tags_of(session, g.shop_id, _customer_id(session, customer_id)))


@automations_api.post("/customers/<int:customer_id>/tags")
@authenticated
def tag_customer(customer_id: int):
    body = _body()
    try:
        with _sessions().begin() as session:
            added = add_tag(session, g.shop_id, _customer_id(session, customer_id), body.get("tag"), source="api")
            return jsonify(customer_id=customer_id, added=added, tags=tags_of(session, g.shop_id, customer_id)), \
                (201 if added else 200)
    except InvalidTag as exc:
        abort(400, description=str(exc))


@automations_api.delete("/customers/<int:customer_id>/tags")
@authenticated
def untag_customer(customer_id: int):
    """Untag: DELETE /customers/<id>/tags?tag=VIP (a query parameter, so any tag name fits)."""
    try:
        with _sessions().begin() as session:
            removed = remove_tag(session, g.shop_id, _customer_id(session, customer_id), request.args.get("tag"),
                                 source="api")
            return jsonify(customer_id=customer_id, removed=removed, tags=tags_of(session, g.shop_id, customer_id))
    except InvalidTag as exc:
        abort(400, description=str(exc))


def openapi_paths() -> tuple[dict, dict]:
    """(schemas, paths) of these endpoints for the /api/v1 OpenAPI document."""
    from app.automations.openapi import _op

    segment = {"$ref": "#/components/schemas/Segment"}
    schemas = {
        "SegmentDefinition": {"type": "object", "description": (
            "{all|any: [...]} or {not: ...} or a rule: bought {within_days, at_least}, lifetime_spend {op, amount, "
            "currency}, orders_count {op, value}, opened_email / clicked_email {of_last | within_days}, has_tag {tag}, "
            "locale {in}; op is gt, gte, lt or lte; amounts are decimal strings with an ISO currency")},
        "Segment": {"type": "object", "properties": {
            "id": {"type": "integer"}, "name": {"type": "string"}, "enabled": {"type": "boolean"},
            "version": {"type": "integer"}, "member_count": {"type": "integer"},
            "definition": {"$ref": "#/components/schemas/SegmentDefinition"},
            "refreshed_at": {"type": ["string", "null"], "format": "date-time"}}},
        "SegmentCreate": {"type": "object", "required": ["name", "definition"], "properties": {
            "name": {"type": "string"}, "enabled": {"type": "boolean"},
            "definition": {"$ref": "#/components/schemas/SegmentDefinition"}}},
        "SegmentBody": {"type": "object", "properties": {
            "name": {"type": "string"}, "definition": {"$ref": "#/components/schemas/SegmentDefinition"}}},
        "TagBody": {"type": "object", "required": ["tag"], "properties": {"tag": {"type": "string"}}},
        "SegmentInUse": {"type": "object", "properties": {
            "error": {"const": "segment_in_use"}, "segment_id": {"type": "integer"}, "message": {"type": "string"},
            "flows": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "integer"}, "name": {"type": "string"}, "enabled": {"type": "boolean"},
                "runs_in_flight": {"type": "boolean"}}}}}},
    }
    segment_id = [{"name": "segment_id", "in": "path", "required": True, "schema": {"type": "integer"}}]
    customer_id = [{"name": "customer_id", "in": "path", "required": True, "schema": {"type": "integer"}}]
    members = _op("Stored members by customer id (keyset pages)")
    members["parameters"] = [{"name": "after", "in": "query", "schema": {"type": "integer"}},
                             {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": PAGE_MAX}}]
    remove = _op("Delete a segment and its stored members", status="204")
    remove["responses"]["204"] = {"description": "deleted"}
    remove["responses"]["409"] = {"description": "flows that are on, or have runs in flight, use the segment",
                                  "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SegmentInUse"}}}}
    untag = _op("Untag a customer (signals tag_removed)")
    untag["parameters"] = [{"name": "tag", "in": "query", "required": True, "schema": {"type": "string"}}]
    paths = {
        "/segments": {"get": _op("List the shop's segments"),
                      "post": _op("Create a segment", body="SegmentCreate", answer=segment, status="201")},
        "/segments/validate": {"post": _op("Validate a segment definition; when valid, count who it holds for now",
                                           body="SegmentBody")},
        "/segments/{segment_id}": {"parameters": segment_id, "get": _op("One segment", answer=segment),
                                   "put": _op("Rename or redefine a segment", body="SegmentBody", answer=segment),
                                   "delete": remove},
        "/segments/{segment_id}/enable": {"parameters": segment_id,
                                          "post": _op("Keep the segment's members (refreshed by the clock)", answer=segment)},
        "/segments/{segment_id}/disable": {"parameters": segment_id,
                                           "post": _op("Stop keeping members (forgets them)", answer=segment)},
        "/segments/{segment_id}/count": {"parameters": segment_id, "get": _op("The segment's member count")},
        "/segments/{segment_id}/members": {"parameters": segment_id, "get": members},
        "/customers/{customer_id}/tags": {"parameters": customer_id, "get": _op("A customer's tags"),
                                          "post": _op("Tag a customer (signals tag_added)", body="TagBody", status="201"),
                                          "delete": untag},
    }
    return schemas, paths
