"""`/s/product-alert`: a visitor asks to be told when a product is back in stock or cheaper (the snippet's form)."""
from __future__ import annotations

from app.automations.product_alerts import ProductAlertRefused, subscribe_to_product
from app.models.product_alerts import PRODUCT_ALERT_KINDS
from app.storefront import capture
from app.storefront import validation as v
from app.storefront.guard import Rejected, enforce_rate_limits, read_json_body, runtime
from app.storefront.views import _accepted, public_endpoint, storefront
from app.tenancy import shop_context


@storefront.route("/product-alert", methods=["POST", "OPTIONS"])
@public_endpoint
def product_alert(shop):
    """{product_id, kind, email, consent: true, visitor_id?}: one email when it happens, nothing else.
    The answer never says whether the address is known."""
    body = read_json_body()
    visitor_id = v.visitor_id(body, required=False)
    enforce_rate_limits(shop, visitor_id)
    email = v.email(body, required=True)
    product_id = v.identifier(body, "product_id")
    if product_id is None:
        raise v.InvalidField("product_id", "is required")
    kind = body.get("kind")
    if kind not in PRODUCT_ALERT_KINDS:
        raise v.InvalidField("kind", f"must be one of {', '.join(PRODUCT_ALERT_KINDS)}")
    if body.get("consent") is not True:
        raise v.InvalidField("consent", "must be true: the visitor asked to be emailed about this product")
    with runtime().sessions.begin() as session, shop_context(shop.id):
        try:
            subscribe_to_product(session, shop.id, product_platform_id=product_id, kind=kind, email=email,
                                 source="storefront")
        except ProductAlertRefused as exc:
            raise Rejected(422, "product_alert_refused", str(exc)) from None
        if visitor_id is not None:
            capture.link_contact(session, shop.id, visitor_id, email, None)
    return _accepted()
