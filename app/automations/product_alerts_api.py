"""`/api/v1` routes for product alerts: a shop's own systems subscribe a customer to a product's stock or price news."""
from __future__ import annotations

from flask import abort, g, jsonify

from app.automations.api import _body, _sessions, authenticated, automations_api
from app.automations.product_alerts import ProductAlertRefused, cancel_product_alert, subscribe_to_product
from app.models.product_alerts import PRODUCT_ALERT_KINDS


@automations_api.post("/products/<int:product_id>/alerts")
@authenticated
def add_product_alert(product_id: int):
    """{kind: back_in_stock|price_drop, customer_id | email | phone}: the customer hears when it happens."""
    body = _body()
    customer_id = body.get("customer_id")
    if customer_id is not None and not isinstance(customer_id, int):
        abort(400, description="customer_id must be an integer")
    try:
        with _sessions().begin() as session:
            alert = subscribe_to_product(session, g.shop_id, product_platform_id=str(product_id), kind=body.get("kind"),
                                         email=body.get("email") if isinstance(body.get("email"), str) else None,
                                         phone=body.get("phone") if isinstance(body.get("phone"), str) else None,
                                         customer_id=customer_id, source="api")
            answer = {"id": alert.id, "kind": alert.kind, "status": alert.status, "customer_id": alert.customer_id,
                      "product_id": alert.product_id}
    except ProductAlertRefused as exc:
        abort(422, description=str(exc))
    return jsonify(answer), 201


@automations_api.delete("/product-alerts/<int:alert_id>")
@authenticated
def remove_product_alert(alert_id: int):
    with _sessions().begin() as session:
        if not cancel_product_alert(session, g.shop_id, alert_id):
            abort(404, description=f"no active product alert {alert_id}")
    return jsonify(id=alert_id, status="cancelled")


def openapi_paths() -> tuple[dict, dict]:
    """(schemas, paths) for the OpenAPI document."""
    schemas = {"ProductAlertRequest": {"type": "object", "required": ["kind"], "properties": {
        "kind": {"enum": list(PRODUCT_ALERT_KINDS)}, "customer_id": {"type": "integer"},
        "email": {"type": "string", "format": "email"}, "phone": {"type": "string", "description": "E.164"}}}}
    security = [{"bearer": []}]
    paths = {
        "/products/{product_id}/alerts": {
            "parameters": [{"name": "product_id", "in": "path", "required": True, "schema": {"type": "integer"},
                            "description": "the product's id on the platform"}],
            "post": {"summary": "Subscribe a customer to a product coming back in stock or getting cheaper",
                     "security": security,
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": {"$ref": "#/components/schemas/ProductAlertRequest"}}}},
                     "responses": {"201": {"description": "subscribed (asking twice changes nothing)"},
                                   "422": {"description": "unknown product or kind, or no way to reach the customer"}}}},
        "/product-alerts/{alert_id}": {
            "parameters": [{"name": "alert_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "delete": {"summary": "Stop a product alert", "security": security,
                       "responses": {"200": {"description": "cancelled"}, "404": {"description": "no such active alert"}}}},
    }
    return schemas, paths
