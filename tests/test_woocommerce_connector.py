"""WooCommerce connector without a network: OAuth signatures, the wc-auth flow, webhook deliveries, mapping."""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from connectors.errors import InvalidPayload
from connectors.records import Money
from connectors.woocommerce import (
    Credentials, Webhook, WebhookDelivery, authorize_url, cart_from_abandoned_cart_lite, cart_from_draft_order,
    cart_from_store_api, tracking_numbers_in_order,
    customer_from_payload, dedupe_key, draft_cart_token, is_silent, is_unpaid, modified_at, oauth_signature,
    order_from_payload, parse_callback, phone_e164, ping_webhook_id, plan_webhooks, product_from_payload,
    refund_from_payload, refund_ids, signature_base_string, verify_webhook,
)
from connectors.woocommerce.auth import oauth_params
from tests.fake_woocommerce import php_json_encode, wc_check_oauth_signature

FIXTURES = Path(__file__).parent / "fixtures" / "woocommerce"
SECRET = "k9Zq2Lr7Vx4Tn8Ws1Py6Hm3Jd5Fb0Gc"
UTC = dt.timezone.utc


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def payload(name: str) -> dict:
    return json.loads(raw(name))


def signed_delivery(body: bytes, topic: str = "order.updated", secret: str = SECRET) -> dict:
    from connectors.woocommerce import sign_webhook
    resource, _, event = topic.partition(".")
    return {"X-WC-Webhook-Source": "https://kwiaciarnia.example/", "X-WC-Webhook-Topic": topic,
            "X-WC-Webhook-Resource": resource, "X-WC-Webhook-Event": event,
            "X-WC-Webhook-Signature": sign_webhook(body, secret), "X-WC-Webhook-ID": "142",
            "X-WC-Webhook-Delivery-ID": "5d2c3f1a0b9e8d7c6b5a4f3e2d1c0b9a"}


# --- OAuth 1.0a, exactly as WooCommerce checks it -------------------------------------------------------

def test_the_signature_matches_the_worked_vector_from_the_research_notes():
    params = {"oauth_consumer_key": "ck_test", "oauth_nonce": "abc123nonce", "oauth_signature_method": "HMAC-SHA256",
              "oauth_timestamp": "1700000000", "per_page": "100", "status": "processing",
              "modified_after": "2024-01-01T00:00:00"}
    assert signature_base_string("GET", "http://example.com/wp-json/wc/v3/orders", params) == (
        "GET&http%3A%2F%2Fexample.com%2Fwp-json%2Fwc%2Fv3%2Forders&modified_after%3D2024-01-01T00%253A00%253A00"
        "%26oauth_consumer_key%3Dck_test%26oauth_nonce%3Dabc123nonce%26oauth_signature_method%3DHMAC-SHA256"
        "%26oauth_timestamp%3D1700000000%26per_page%3D100%26status%3Dprocessing")
    assert oauth_signature("GET", "http://example.com/wp-json/wc/v3/orders", params, "cs_test") == \
        "1/DEOzqhDDU2LG42aSpqAIvTa1Giuji6RyCWR75jm8k="


def test_a_query_with_slash_space_and_unicode_verifies_with_the_independent_php_algorithm():
    credentials = Credentials("ck_test", "cs_secret")
    base = "http://sklep.example/wp-json/wc/v3/products"
    signed = oauth_params("GET", base, {"search": "róża/czerwona 50 cm", "sku": "A/B+C~D"}, credentials,
                          timestamp=1795684800, nonce="n0nce")
    assert wc_check_oauth_signature("GET", "http://sklep.example", "/wp-json/wc/v3/products", signed, "cs_secret")


def test_a_slash_in_a_value_is_encoded_twice_in_the_base_string():
    base = signature_base_string("GET", "http://s.example/wp-json/wc/v3/products", {"sku": "A/B"})
    assert base.endswith("sku%3DA%252FB")  # rawurlencode("/") = %2F, encoded again; wc-api-python leaves "/"


def test_parameters_are_sorted_by_their_raw_keys_in_byte_order():
    base = signature_base_string("GET", "http://s.example/x", {"b": "1", "Z": "2", "a_b": "3", "a": "4"})
    assert base.split("&", 2)[2] == "Z%3D2%26a%3D4%26a_b%3D3%26b%3D1"


def test_a_changed_parameter_no_longer_verifies():
    credentials = Credentials("ck_test", "cs_secret")
    signed = oauth_params("GET", "http://s.example/wp-json/wc/v3/orders", {"status": "processing"}, credentials,
                          timestamp=1795684800, nonce="n")
    signed["status"] = "completed"
    assert not wc_check_oauth_signature("GET", "http://s.example", "/wp-json/wc/v3/orders", signed, "cs_secret")


def test_the_secret_never_shows_in_the_repr_of_credentials():
    assert "cs_secret" not in repr(Credentials("ck_test", "cs_secret"))


# --- /wc-auth/v1/authorize --------------------------------------------------------------------------------

def test_the_authorize_url_carries_the_five_parameters_woocommerce_requires():
    url = authorize_url("https://kwiaciarnia.example/", app_name="Store Companion", user_id="state-123",
                        return_url="https://companion.example/app/woocommerce/connected",
                        callback_url="https://companion.example/connect/woocommerce/callback")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "kwiaciarnia.example", "/wc-auth/v1/authorize")
    assert {k: v[0] for k, v in parse_qs(parts.query).items()} == {
        "app_name": "Store Companion", "scope": "read_write", "user_id": "state-123",
        "return_url": "https://companion.example/app/woocommerce/connected",
        "callback_url": "https://companion.example/connect/woocommerce/callback"}


def test_an_http_callback_url_is_refused_before_the_owner_is_sent_anywhere():
    with pytest.raises(ValueError, match="https"):
        authorize_url("https://kwiaciarnia.example", app_name="A", user_id="s", return_url="https://c.example/r",
                      callback_url="http://c.example/cb")


def test_the_callback_body_gives_the_keys_bound_to_our_state_token():
    body = raw("wc_auth_callback.json").replace(b"REPLACED-BY-TEST", b"state-123")
    granted = parse_callback(body, expected_user_id="state-123")
    assert granted.credentials.consumer_key.startswith("ck_") and granted.permissions == "read_write"
    assert granted.key_id == 1 and granted.user_id == "state-123"


def test_a_callback_with_a_foreign_state_token_is_refused():
    body = raw("wc_auth_callback.json").replace(b"REPLACED-BY-TEST", b"someone-else")
    with pytest.raises(InvalidPayload, match="user_id"):
        parse_callback(body, expected_user_id="state-123")


def test_a_callback_without_a_secret_is_refused():
    body = json.dumps({"key_id": 1, "user_id": "s", "consumer_key": "ck_x", "key_permissions": "read"}).encode()
    with pytest.raises(InvalidPayload, match="consumer_secret"):
        parse_callback(body)


def test_a_numeric_user_id_in_the_callback_still_matches_our_token():
    body = json.dumps({"key_id": 3, "user_id": 123, "consumer_key": "ck_x", "consumer_secret": "cs_y",
                       "key_permissions": "read_write"}).encode()
    assert parse_callback(body, expected_user_id="123").key_id == 3


# --- webhook deliveries -------------------------------------------------------------------------------------

def test_a_delivery_signed_with_our_secret_verifies_on_its_raw_bytes():
    body = raw("order_updated.json")
    headers = signed_delivery(body)
    assert verify_webhook(body, headers["X-WC-Webhook-Signature"], [SECRET])


def test_a_forged_signature_is_rejected():
    body = raw("order_updated.json")
    assert not verify_webhook(body, signed_delivery(body, secret="not-our-secret")["X-WC-Webhook-Signature"], [SECRET])


def test_a_tampered_body_is_rejected():
    body = raw("order_updated.json")
    signature = signed_delivery(body)["X-WC-Webhook-Signature"]
    assert not verify_webhook(body.replace(b'"total":"234.89"', b'"total":"0.01"'), signature, [SECRET])


def test_a_re_serialised_body_is_rejected_because_woocommerce_escapes_slashes():
    body = raw("order_updated.json")
    signature = signed_delivery(body)["X-WC-Webhook-Signature"]
    reserialised = json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False).encode()
    assert b"\\/" in body and b"\\/" not in reserialised
    assert not verify_webhook(reserialised, signature, [SECRET])


def test_a_signature_that_is_not_base64_is_rejected_without_an_exception():
    assert not verify_webhook(b"{}", "not base64!!", [SECRET])


def test_a_delivery_signed_with_the_previous_secret_verifies_during_a_rotation():
    body = raw("order_updated.json")
    assert verify_webhook(body, signed_delivery(body, secret="old0secret")["X-WC-Webhook-Signature"],
                          [SECRET, "old0secret"])


def test_the_creation_ping_is_recognised_without_a_signature():
    assert ping_webhook_id(b"webhook_id=142", {"Content-Type": "application/x-www-form-urlencoded"}) == 142


def test_a_body_that_looks_like_a_ping_but_carries_a_signature_is_not_a_ping():
    assert ping_webhook_id(b"webhook_id=142", {"X-WC-Webhook-Signature": "abc="}) is None


def test_a_json_delivery_is_not_a_ping():
    assert ping_webhook_id(raw("order_updated.json"), {}) is None


def test_the_delivery_headers_are_read_case_insensitively():
    body = raw("order_updated.json")
    delivery = WebhookDelivery.from_headers({k.lower(): v for k, v in signed_delivery(body).items()})
    assert (delivery.topic, delivery.resource, delivery.event, delivery.webhook_id) == \
        ("order.updated", "order", "updated", "142")
    assert delivery.source == "https://kwiaciarnia.example/"


def test_a_delivery_without_a_topic_header_is_invalid():
    headers = signed_delivery(b"{}")
    del headers["X-WC-Webhook-Topic"]
    with pytest.raises(InvalidPayload, match="Topic"):
        WebhookDelivery.from_headers(headers)


def test_two_deliveries_of_the_same_state_share_a_dedupe_key_even_with_different_delivery_ids():
    body = raw("order_updated.json")
    first = WebhookDelivery.from_headers(signed_delivery(body))
    second = WebhookDelivery.from_headers({**signed_delivery(body), "X-WC-Webhook-Delivery-ID": "other"})
    assert dedupe_key(first, body) == dedupe_key(second, body)


def test_a_coalesced_newer_state_gets_a_new_dedupe_key_and_a_later_modified_time():
    older = raw("order_updated.json")
    newer_payload = json.loads(older)
    newer_payload.update({"status": "completed", "date_modified_gmt": "2026-11-20T11:00:00"})
    newer = php_json_encode(newer_payload)
    delivery = WebhookDelivery.from_headers(signed_delivery(older))
    assert dedupe_key(delivery, older) != dedupe_key(delivery, newer)
    assert dedupe_key(delivery, older).startswith("order:727:2026-11-20T09:28:08:")
    assert modified_at(json.loads(newer)) > modified_at(json.loads(older))


def test_the_same_id_and_second_with_different_bodies_are_not_deduplicated():
    body = raw("order_updated.json")
    changed = body.replace(b'"customer_note":"', b'"customer_note":"!')
    delivery = WebhookDelivery.from_headers(signed_delivery(body))
    assert dedupe_key(delivery, body) != dedupe_key(delivery, changed)


def test_a_disabled_webhook_is_planned_for_re_enabling_and_flags_a_delivery_gap():
    url = "https://companion.example/webhooks/woocommerce/t0ken"
    existing = [Webhook(1, "a", "active", "order.created", url), Webhook(2, "b", "disabled", "order.updated", url),
                Webhook(3, "c", "active", "order.updated", "https://someone-else.example/hook")]
    plan = plan_webhooks(existing, ["order.created", "order.updated", "customer.updated"], url)
    assert plan.to_create == ("customer.updated",)
    assert [hook.id for hook in plan.to_enable] == [2] and plan.gap_suspected
    assert not plan.healthy


def test_duplicate_webhooks_for_one_topic_are_planned_for_deletion():
    url = "https://companion.example/webhooks/woocommerce/t0ken"
    existing = [Webhook(5, "a", "active", "order.created", url), Webhook(6, "a", "active", "order.created", url)]
    plan = plan_webhooks(existing, ["order.created"], url)
    assert [hook.id for hook in plan.to_delete] == [6] and not plan.to_enable and not plan.to_create


# --- mapping --------------------------------------------------------------------------------------------------

def test_an_order_maps_gmt_times_as_utc_and_money_as_decimal_in_the_order_currency():
    order = order_from_payload(payload("order_updated.json"))
    assert order.placed_at == dt.datetime(2026, 11, 20, 9, 28, 2, tzinfo=UTC)
    assert order.updated_at == dt.datetime(2026, 11, 20, 9, 28, 8, tzinfo=UTC)
    assert order.total == Money(Decimal("234.89"), "PLN") and order.shipping_total == Money(Decimal("14.99"), "PLN")
    assert order.subtotal == Money(Decimal("229.90"), "PLN")
    assert order.lines[0].unit_price == Money(Decimal("100.00"), "PLN") and order.lines[0].variant_id == "94"


def test_an_order_phone_typed_nationally_becomes_e164_from_the_billing_country():
    assert order_from_payload(payload("order_updated.json")).phone == "+48600111222"


def test_an_order_keeps_status_payment_method_and_coupon_codes():
    order = order_from_payload(payload("order_updated.json"))
    assert (order.status, order.payment_method, order.financial_status) == ("processing", "p24-online-payments", "paid")
    assert order.discount_codes == ("wiosna10",) and order.customer_platform_id == "25"
    assert order.shipping_method == "InPost Paczkomat 24/7"


def test_an_unknown_plugin_status_is_kept_as_is():
    body = payload("order_updated.json")
    body["status"] = "partial-shipped"
    assert order_from_payload(body).status == "partial-shipped"


def test_an_on_hold_bank_transfer_order_is_unpaid():
    assert is_unpaid(order_from_payload(payload("order_on_hold_bacs.json")))


def test_a_processing_order_is_not_unpaid():
    assert not is_unpaid(order_from_payload(payload("order_updated.json")))


@pytest.mark.parametrize("method", ["cod", "payublik", "p24-blik", "przelewy24", "netopiapayments", "cheque"])
def test_a_pending_order_with_a_delayed_payment_method_is_unpaid(method):
    body = payload("order_on_hold_bacs.json")
    body.update({"status": "pending", "payment_method": method})
    assert is_unpaid(order_from_payload(body))


def test_a_pending_card_order_from_an_unknown_gateway_is_not_called_unpaid():
    body = payload("order_on_hold_bacs.json")
    body.update({"status": "pending", "payment_method": "stripe"})
    assert not is_unpaid(order_from_payload(body))


@pytest.mark.parametrize("status", ["checkout-draft", "auto-draft", "trash"])
def test_drafts_and_the_bin_are_silent_statuses(status):
    assert is_silent(status)


def test_a_refunded_order_lists_its_refund_ids_and_reads_as_refunded():
    body = payload("order_refunded.json")
    assert refund_ids(body) == ("726",) and order_from_payload(body).financial_status == "refunded"


def test_a_refund_maps_to_a_positive_amount_with_its_order():
    refund = refund_from_payload(payload("refund.json"), "PLN")
    assert (refund.order_platform_id, refund.amount, refund.reason) == ("728", Money(Decimal("234.89"), "PLN"),
                                                                        "Uszkodzony towar")
    assert refund.created_at == dt.datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


def test_a_checkout_draft_becomes_a_cart_with_a_recovery_link_and_a_romanian_phone():
    cart = cart_from_draft_order(payload("order_checkout_draft.json"), "https://kwiaciarnia.example")
    assert cart.token == draft_cart_token(731) and cart.completed_at is None
    assert cart.email == "ana.popescu@example.ro" and cart.phone == "+40722123456"
    assert cart.recovery_url == "https://kwiaciarnia.example/checkout/?add-to-cart=94&quantity=2"
    assert cart.total == Money(Decimal("214.99"), "PLN")


def test_the_order_a_block_checkout_draft_turned_into_carries_the_drafts_cart_token():
    body = payload("order_checkout_draft.json")
    body["status"] = "processing"
    assert order_from_payload(body).cart_token == draft_cart_token(731)


def test_a_customer_maps_with_an_e164_phone_and_utc_modified_time():
    customer = customer_from_payload(payload("customer_updated.json"))
    assert (customer.platform_id, customer.email, customer.phone) == ("25", "zofia.nowak@example.pl", "+48600111222")
    assert customer.updated_at == dt.datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def test_a_product_maps_with_the_shop_currency_and_purchasability():
    product = product_from_payload(payload("product_updated.json"), "PLN")
    assert product.price == Money(Decimal("95.00"), "PLN") and product.purchasable is True
    assert product.image_url.endswith("roza.jpg") and product.stock_status == "instock"


def test_an_abandoned_cart_lite_cutoff_becomes_a_cart_with_the_plugins_checkout_link():
    cart = cart_from_abandoned_cart_lite(payload("wcap_cart_cutoff.json"), "RON")
    assert cart.token == "wcal:17" and cart.recovery_url.startswith("https://kwiaciarnia.example/?wcal_action=")
    assert cart.phone == "+40722123456" and cart.total == Money(Decimal("95"), "RON")
    assert cart.updated_at == dt.datetime.fromtimestamp(1795684800, UTC) and cart.customer_platform_id is None


@pytest.mark.parametrize("typed,country,expected", [
    ("600 111 222", "PL", "+48600111222"), ("+48 600-111-222", "RO", "+48600111222"),
    ("0048600111222", None, "+48600111222"), ("48600111222", "PL", "+48600111222"),
    ("0722 123 456", "RO", "+40722123456"), ("722123456", "RO", "+40722123456"),
    ("030 12345678", "DE", "+493012345678"), ("12345", "PL", None), ("600 111 222", None, None),
    ("call me", "PL", None),
])
def test_phones_are_normalised_with_the_billing_country_as_default_region(typed, country, expected):
    assert phone_e164(typed, country) == expected


def test_a_store_api_cart_posted_by_the_snippet_maps_minor_units_to_money():
    received = dt.datetime(2026, 11, 20, 9, 45, tzinfo=UTC)
    cart = cart_from_store_api(payload("store_api_cart.json"), token="snippet-cart-1", store_url="https://kwiaciarnia.example",
                               updated_at=received)
    assert cart.total == Money(Decimal("204.99"), "PLN") and cart.lines[0].unit_price == Money(Decimal("95.00"), "PLN")
    assert (cart.token, cart.email, cart.phone, cart.updated_at) == ("snippet-cart-1", "zofia.nowak@example.pl",
                                                                     "+48600111222", received)
    assert cart.recovery_url == "https://kwiaciarnia.example/checkout/?add-to-cart=94&quantity=2"


def test_a_cart_with_several_products_links_back_to_the_cart_page():
    body = payload("store_api_cart.json")
    body["items"].append({**body["items"][0], "id": 101, "name": "Kartka"})
    cart = cart_from_store_api(body, token="t", store_url="https://kwiaciarnia.example/", updated_at=dt.datetime.now(UTC))
    assert cart.recovery_url == "https://kwiaciarnia.example/cart/"


def test_the_tracking_numbers_an_order_carries_are_read_from_its_meta():
    body = payload("order_updated.json")
    body["meta_data"].append({"id": 9, "key": "_wc_shipment_tracking_items", "value": [
        {"tracking_provider": "inpost", "tracking_number": "620000111", "tracking_id": "ab12", "date_shipped": 1795680000}]})
    assert tracking_numbers_in_order(body) == {"620000111"}
