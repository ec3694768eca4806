"""Shopify connector without the network: shop domains, signatures, session tokens, delivery headers, mapping."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from connectors.errors import InvalidPayload, SignatureError
from connectors.records import MarketingConsent, Money
from connectors.shopify import (
    COMPLIANCE_TOPICS, SUBSCRIPTION_TOPICS, TokenSet, WebhookDelivery, authorize_url, check_signed_query,
    decode_session_token, encode_session_token, enum_to_topic, normalise_shop_domain, sign_query, sign_webhook,
    topic_to_enum, verify_webhook,
)
from connectors.shopify import mapping
from connectors.shopify.bulk import group_bulk_lines
from connectors.shopify.query_signature import canonical_query

FIXTURES = Path(__file__).parent / "fixtures" / "shopify"
SECRET, OLD_SECRET = "shpss_current_secret", "shpss_previous_secret"
CLIENT_ID = "companion-client-id"
SHOP = "kwiaciarnia-roza.myshopify.com"
NOW = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.timezone.utc)
UTC = dt.timezone.utc


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def pln(amount: str) -> Money:
    return Money(Decimal(amount), "PLN")


# --- shop domains ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["my-shop", "my-shop.myshopify.com", "http://my-shop.myshopify.com",
                                   "https://my-shop.myshopify.com", " HTTPS://My-Shop.myshopify.com/ "])
def test_shop_names_and_urls_normalise_to_the_myshopify_domain(value):
    assert normalise_shop_domain(value) == "my-shop.myshopify.com"


@pytest.mark.parametrize("value", ["myshop.com", "myshopify.com", "shopify.com", "two words",
                                   "store.myshopify.com.evil.com", "/foo/bar", "/foo.myshopify.io.evil.ru",
                                   "%0a123.myshopify.io ", "foo.bar.myshopify.io", "my-shop.myshopify.com\nevil.com", "", None])
def test_anything_that_is_not_a_myshopify_domain_is_refused(value):
    assert normalise_shop_domain(value) is None


# --- signed install and callback queries -------------------------------------------------------------

def signed(params: list[tuple[str, str]], secret: str = SECRET) -> list[tuple[str, str]]:
    return params + [("hmac", sign_query(params, secret))]


def callback(timestamp: dt.datetime = NOW) -> list[tuple[str, str]]:
    return [("code", "0907a61c0c8d55e99db179b68161bc00"), ("host", "a3Dpb2NpYXJuaWEtcm96YS5teXNob3BpZnkuY29tL2FkbWlu"),
            ("shop", SHOP), ("state", "5f2b8c0e9d1a4b3c"), ("timestamp", str(int(timestamp.timestamp())))]


def test_a_query_signed_with_our_secret_is_accepted():
    check_signed_query(signed(callback()), [SECRET], NOW)


def test_a_tampered_query_is_refused_as_a_signature_mismatch():
    pairs = [(k, "evil.myshopify.com" if k == "shop" else v) for k, v in signed(callback())]
    with pytest.raises(SignatureError, match="signature mismatch"):
        check_signed_query(pairs, [SECRET], NOW)


def test_a_query_signed_with_the_previous_secret_is_accepted_during_rotation():
    check_signed_query(signed(callback(), OLD_SECRET), [SECRET, OLD_SECRET], NOW)


def test_a_query_signed_with_a_retired_secret_is_refused():
    with pytest.raises(SignatureError, match="signature mismatch"):
        check_signed_query(signed(callback(), OLD_SECRET), [SECRET], NOW)


def test_a_query_signed_too_long_ago_is_refused():
    with pytest.raises(SignatureError, match="timestamp outside window"):
        check_signed_query(signed(callback(NOW - dt.timedelta(minutes=6))), [SECRET], NOW)


def test_a_query_without_hmac_is_refused():
    with pytest.raises(SignatureError, match="missing hmac"):
        check_signed_query(callback(), [SECRET], NOW)


def test_array_parameters_are_signed_as_one_json_list_in_their_original_order():
    pairs = [("ids[]", "2"), ("ids[]", "1"), ("shop", SHOP), ("timestamp", str(int(NOW.timestamp())))]
    message = f'ids=["2", "1"]&shop={SHOP}&timestamp={int(NOW.timestamp())}'
    by_hand = hmac.new(SECRET.encode(), message.encode(), hashlib.sha256).hexdigest()
    check_signed_query(pairs + [("hmac", by_hand)], [SECRET], NOW)
    assert sign_query(pairs, SECRET) == by_hand


def test_delimiters_inside_parameters_are_escaped_before_signing():
    assert canonical_query([("state", "a&b=c%"), ("we=ird", "x"), ("hmac", "ignored")]) == "state=a%26b=c%25&we%3Dird=x"


def test_a_query_signed_over_the_raw_pairs_is_also_accepted():
    pairs = callback() + [("state_note", "50% off")]
    message = "&".join(sorted(f"{k}={v}" for k, v in pairs))
    raw_signature = hmac.new(SECRET.encode(), message.encode(), hashlib.sha256).hexdigest()
    check_signed_query(pairs + [("hmac", raw_signature)], [SECRET], NOW)


# --- authorize URL and tokens ------------------------------------------------------------------------

def test_the_authorize_url_asks_for_offline_access_with_our_scopes_and_state():
    url = authorize_url("kwiaciarnia-roza", CLIENT_ID, ["read_orders", "write_discounts"],
                        "https://companion.example.com/shopify/callback", "5f2b8c0e9d1a4b3c")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", SHOP, "/admin/oauth/authorize")
    assert parse_qs(parts.query) == {"client_id": [CLIENT_ID], "scope": ["read_orders,write_discounts"],
                                     "redirect_uri": ["https://companion.example.com/shopify/callback"],
                                     "state": ["5f2b8c0e9d1a4b3c"]}


def test_the_authorize_url_refuses_a_shop_that_is_not_a_myshopify_domain():
    with pytest.raises(ValueError):
        authorize_url("evil.com", CLIENT_ID, ["read_orders"], "https://companion.example.com/cb", "s")


def test_a_token_set_never_shows_its_tokens():
    tokens = TokenSet("shpat_secret_access", "read_orders", None, "shprt_secret_refresh", None)
    assert "shpat_secret_access" not in repr(tokens) and "shprt_secret_refresh" not in repr(tokens)


# --- session tokens ----------------------------------------------------------------------------------

def claims(**overrides) -> dict:
    base = {"iss": f"https://{SHOP}/admin", "dest": f"https://{SHOP}", "aud": CLIENT_ID, "sub": "42",
            "exp": int(NOW.timestamp()) + 60, "nbf": int(NOW.timestamp()) - 1, "iat": int(NOW.timestamp()) - 1,
            "jti": "f8912129-1af6-4cad-9ca3-76b0f7621087", "sid": "aaea182f2732d44c23057c0fea584021a4485b2bd25d3eb7fd349313ad24c685"}
    return {**base, **overrides}


def test_a_valid_session_token_names_the_shop_user_and_session():
    decoded = decode_session_token(encode_session_token(claims(), SECRET), CLIENT_ID, [SECRET], NOW)
    assert (decoded.shop, decoded.user_id, decoded.session_id) == (SHOP, "42", claims()["sid"])
    assert decoded.expires_at == NOW + dt.timedelta(seconds=60)


def test_a_session_token_signed_with_the_previous_secret_is_accepted():
    assert decode_session_token(encode_session_token(claims(), OLD_SECRET), CLIENT_ID, [SECRET, OLD_SECRET], NOW).shop == SHOP


def test_a_session_token_with_a_future_nbf_inside_the_leeway_is_accepted():
    token = encode_session_token(claims(nbf=int(NOW.timestamp()) + 5), SECRET)
    assert decode_session_token(token, CLIENT_ID, [SECRET], NOW).shop == SHOP


@pytest.mark.parametrize("overrides,reason", [
    ({"exp": int(NOW.timestamp()) - 11}, "token expired"),
    ({"nbf": int(NOW.timestamp()) + 60}, "not yet valid"),
    ({"aud": "someone-elses-app"}, "audience mismatch"),
    ({"dest": "https://other-shop.myshopify.com"}, "issuer and destination differ"),
    ({"iss": "https://evil.example.com/admin", "dest": "https://evil.example.com"}, "issuer is not a shop"),
    ({"iss": None}, "missing claim iss"),
])
def test_a_session_token_failing_a_check_is_refused_with_that_reason(overrides, reason):
    with pytest.raises(SignatureError, match=reason):
        decode_session_token(encode_session_token(claims(**overrides), SECRET), CLIENT_ID, [SECRET], NOW)


def test_an_unsigned_session_token_with_alg_none_is_refused():
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    payload = base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=").decode()
    with pytest.raises(SignatureError, match="unsupported algorithm"):
        decode_session_token(f"{header}.{payload}.", CLIENT_ID, [SECRET], NOW)


def test_a_session_token_with_altered_claims_is_refused():
    header, _, signature = encode_session_token(claims(), SECRET).split(".")
    forged = base64.urlsafe_b64encode(json.dumps(claims(sub="1")).encode()).rstrip(b"=").decode()
    with pytest.raises(SignatureError, match="signature mismatch"):
        decode_session_token(f"{header}.{forged}.{signature}", CLIENT_ID, [SECRET], NOW)


def test_garbage_instead_of_a_session_token_is_refused_as_malformed():
    with pytest.raises(SignatureError, match="malformed"):
        decode_session_token("not-a-jwt", CLIENT_ID, [SECRET], NOW)


# --- webhook signatures and headers ------------------------------------------------------------------

RAW_BODY = (FIXTURES / "app_uninstalled.json").read_bytes()


def test_a_webhook_body_signed_with_our_secret_verifies():
    assert verify_webhook(RAW_BODY, sign_webhook(RAW_BODY, SECRET), [SECRET])


def test_a_tampered_webhook_body_does_not_verify():
    assert not verify_webhook(RAW_BODY.replace(b"Kwiaciarnia", b"Kwiatkarnia"), sign_webhook(RAW_BODY, SECRET), [SECRET])


def test_a_re_serialised_webhook_body_does_not_verify():
    signature = sign_webhook(RAW_BODY, SECRET)
    assert not verify_webhook(json.dumps(json.loads(RAW_BODY)).encode(), signature, [SECRET])


def test_a_webhook_signed_with_the_previous_secret_verifies_during_rotation():
    assert verify_webhook(RAW_BODY, sign_webhook(RAW_BODY, OLD_SECRET), [SECRET, OLD_SECRET])


@pytest.mark.parametrize("signature", [None, "", "not base64 at all!", sign_webhook(b"other body", SECRET)])
def test_a_webhook_without_a_matching_signature_does_not_verify(signature):
    assert not verify_webhook(RAW_BODY, signature, [SECRET])


DELIVERY = {"Topic": "orders/create", "Hmac-Sha256": "c2lnbmF0dXJl", "Shop-Domain": SHOP, "API-Version": "2026-01",
            "Webhook-Id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043", "Event-Id": "98880550-7158-44d4-b7cd-2c97c8a091b5",
            "Triggered-At": "2026-11-20T08:58:03.510Z"}


@pytest.mark.parametrize("prefix", ["X-Shopify-", "x-shopify-", "shopify-"])
def test_delivery_headers_are_read_in_either_spelling_and_any_case(prefix):
    delivery = WebhookDelivery.from_headers({prefix + name: value for name, value in DELIVERY.items()})
    assert delivery == WebhookDelivery(topic="orders/create", shop_domain=SHOP,
                                       webhook_id="b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
                                       event_id="98880550-7158-44d4-b7cd-2c97c8a091b5",
                                       triggered_at=dt.datetime(2026, 11, 20, 8, 58, 3, 510000, tzinfo=UTC),
                                       api_version="2026-01", signature="c2lnbmF0dXJl")


@pytest.mark.parametrize("missing,named", [("Topic", "topic"), ("Shop-Domain", "shop domain"),
                                           ("Webhook-Id", "webhook id"), ("Hmac-Sha256", "hmac")])
def test_a_delivery_missing_a_required_header_is_refused_naming_it(missing, named):
    headers = {f"X-Shopify-{name}": value for name, value in DELIVERY.items() if name != missing}
    with pytest.raises(InvalidPayload, match=f"missing {named} header"):
        WebhookDelivery.from_headers(headers)


def test_a_delivery_from_a_domain_that_is_not_a_shop_is_refused():
    with pytest.raises(InvalidPayload, match="shop domain"):
        WebhookDelivery.from_headers({**{f"X-Shopify-{k}": v for k, v in DELIVERY.items()},
                                      "X-Shopify-Shop-Domain": "evil.example.com"})


@pytest.mark.parametrize("topic,enum", [("orders/create", "ORDERS_CREATE"), ("app/scopes_update", "APP_SCOPES_UPDATE"),
                                        ("customers_email_marketing_consent/update",
                                         "CUSTOMERS_EMAIL_MARKETING_CONSENT_UPDATE"),
                                        ("bulk_operations/finish", "BULK_OPERATIONS_FINISH")])
def test_topics_convert_to_graphql_enums_and_back(topic, enum):
    assert topic_to_enum(topic) == enum and enum_to_topic(enum) == topic


def test_every_subscribed_topic_survives_the_round_trip_and_compliance_topics_are_not_subscribed():
    assert [enum_to_topic(topic_to_enum(t)) for t in SUBSCRIPTION_TOPICS] == list(SUBSCRIPTION_TOPICS)
    assert not set(COMPLIANCE_TOPICS) & set(SUBSCRIPTION_TOPICS)


# --- mapping webhook payloads ------------------------------------------------------------------------

def test_an_order_payload_maps_money_as_decimals_times_as_utc_and_phones_as_e164():
    order = mapping.order_from_payload(fixture("orders_create.json"))
    assert (order.platform_id, order.number, order.currency) == ("820982911946154508", "#1001", "PLN")
    assert (order.total, order.subtotal, order.shipping_total) == (pln("249.93"), pln("229.93"), pln("20.00"))
    assert (order.tax_total, order.discount_total) == (pln("46.73"), pln("20.00"))
    assert order.placed_at == dt.datetime(2026, 11, 20, 8, 58, tzinfo=UTC)
    assert order.updated_at == dt.datetime(2026, 11, 20, 8, 58, 3, tzinfo=UTC)
    assert (order.status, order.financial_status, order.fulfillment_status) == ("processing", "paid", "unfulfilled")
    assert order.paid_at == order.placed_at and order.cancelled_at is None
    assert (order.email, order.phone, order.customer_platform_id) == ("zofia.zolkiewska@example.pl", "+48600111222",
                                                                      "115310627314723954")
    assert (order.payment_method, order.shipping_method) == ("przelewy24", "InPost Paczkomat 24/7")
    assert (order.cart_token, order.checkout_token) == ("68778783ad298f1c80c3bafcddeea02f",
                                                        "2a1ace52255252df566af0faaedfbfa7")
    assert order.shipping_address.street == "ul. Różana 5" and order.shipping_address.country == "PL"
    assert order.shipping_address.phone == "+48600111222" and order.shipping_address.name == "Zofia Żółkiewska"


def test_order_lines_carry_unit_price_and_the_total_after_their_discount_allocations():
    roses, vases = mapping.order_from_payload(fixture("orders_create.json")).lines
    assert (roses.platform_id, roses.name, roses.quantity, roses.sku) == ("466157049", "Bukiet róż - czerwony", 1, "ROZA-CZ")
    assert (roses.unit_price, roses.total) == (pln("149.95"), pln("137.95"))
    assert (vases.quantity, vases.unit_price, vases.total) == (2, pln("49.99"), pln("91.98"))
    assert (vases.product_id, vases.variant_id) == ("632910393", "49148385")


def test_a_cancelled_romanian_order_keeps_its_currency_and_reads_a_0040_phone():
    order = mapping.order_from_payload(fixture("orders_updated.json"))
    assert (order.currency, order.total, order.shipping_total) == ("RON", Money(Decimal("329.99"), "RON"),
                                                                   Money(Decimal("19.99"), "RON"))
    assert order.status == "cancelled" and order.cancelled_at == dt.datetime(2026, 11, 21, 8, 15, tzinfo=UTC)
    assert order.phone == "+40721234567"  # the order has none; the customer's is used
    assert order.shipping_address.phone == "+40721234567" and order.shipping_address.city == "București"
    assert order.lines[0].total == Money(Decimal("310.00"), "RON")


def test_a_customer_payload_maps_both_consents_with_shopifys_own_words_kept():
    customer = mapping.customer_from_payload(fixture("customers_update.json"))
    assert (customer.platform_id, customer.email, customer.phone) == ("115310627314723954",
                                                                      "zofia.zolkiewska@example.pl", "+48600111222")
    assert (customer.first_name, customer.last_name) == ("Zofia", "Żółkiewska")
    assert customer.consents == (
        MarketingConsent("email", "granted", "subscribed", "confirmed_opt_in",
                         dt.datetime(2026, 11, 22, 13, 4, tzinfo=UTC), None),
        MarketingConsent("sms", "pending", "pending", "confirmed_opt_in",
                         dt.datetime(2026, 11, 22, 13, 4, 30, tzinfo=UTC), "SHOPIFY"),
    )
    assert (customer.accepts_email_marketing, customer.accepts_sms_marketing) == (True, False)


@pytest.mark.parametrize("state,ours", [("subscribed", "granted"), ("pending", "pending"), ("unsubscribed", "revoked"),
                                        ("not_subscribed", "revoked"), ("redacted", "revoked"), ("invalid", "revoked"),
                                        ("SUBSCRIBED", "granted"), ("something_new", "unknown")])
def test_shopify_consent_states_map_to_ours(state, ours):
    payload = {**fixture("customers_update.json"), "email_marketing_consent": {"state": state}}
    assert mapping.customer_from_payload(payload).consents[0].state == ours


def test_a_consent_webhook_names_the_customer_and_the_new_email_consent():
    customer_id, consent = mapping.consent_from_payload(
        "customers_email_marketing_consent/update", fixture("customers_email_marketing_consent_update.json"))
    assert customer_id == "115310627314723954"
    assert (consent.channel, consent.state, consent.platform_state) == ("email", "revoked", "unsubscribed")


def test_an_sms_consent_webhook_maps_to_the_sms_channel():
    payload = {"id": 207119551, "phone": "+40721234567", "sms_marketing_consent": {
        "state": "subscribed", "opt_in_level": "single_opt_in", "consent_updated_at": "2026-11-02T10:00:00+02:00",
        "consent_collected_from": "SHOPIFY"}}
    customer_id, consent = mapping.consent_from_payload("customers_marketing_consent/update", payload)
    assert (customer_id, consent.channel, consent.state, consent.source) == ("207119551", "sms", "granted", "SHOPIFY")


def test_a_checkout_payload_maps_to_a_cart_keyed_by_its_token_with_its_recovery_url():
    cart = mapping.cart_from_checkout_payload(fixture("checkouts_update.json"))
    assert (cart.token, cart.currency, cart.total) == ("2a1ace52255252df566af0faaedfbfa7", "PLN", pln("269.93"))
    assert cart.recovery_url.endswith("/checkouts/2a1ace52255252df566af0faaedfbfa7/recover?key=6dacd6065bb80268bda857ee")
    assert (cart.email, cart.phone, cart.customer_platform_id) == ("zofia.zolkiewska@example.pl", "+48600111222",
                                                                   "115310627314723954")
    assert cart.updated_at == dt.datetime(2026, 11, 20, 8, 45, 12, tzinfo=UTC) and cart.completed_at is None
    assert [(l.name, l.quantity, l.unit_price, l.sku) for l in cart.lines] == [
        ("Bukiet róż - czerwony", 1, pln("149.95"), "ROZA-CZ"), ("Wazon szklany - średni", 2, pln("49.99"), "WAZON-M")]


def test_a_refund_counts_only_the_money_that_went_back():
    refund = mapping.refund_from_payload(fixture("refunds_create.json"))
    assert (refund.platform_id, refund.order_platform_id, refund.amount) == ("509562969", "820982911946154508",
                                                                             pln("45.99"))
    assert refund.created_at == dt.datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
    assert refund.reason == "Uszkodzony wazon w transporcie"


def test_a_refund_without_transactions_is_zero_in_the_shops_currency():
    payload = {**fixture("refunds_create.json"), "transactions": []}
    assert mapping.refund_from_payload(payload).amount == pln("0")


def test_a_fulfillment_payload_carries_its_carrier_and_tracking():
    update = mapping.fulfillment_from_payload(fixture("fulfillments_create.json"))
    assert update == mapping.FulfillmentUpdate(
        platform_id="255858046", order_platform_id="820982911946154508", status="success", shipment_status=None,
        tracking_company="InPost", tracking_numbers=("520000011234567890123456",),
        tracking_urls=("https://inpost.pl/sledzenie-przesylek?number=520000011234567890123456",),
        updated_at=dt.datetime(2026, 11, 21, 14, 2, 1, tzinfo=UTC))


@pytest.mark.parametrize("topic,status", [("returns/request", "requested"), ("returns/approve", "open"),
                                          ("returns/decline", "declined"), ("returns/close", "closed"),
                                          ("returns/update", "requested")])
def test_a_return_payload_takes_its_status_from_the_lifecycle_topic(topic, status):
    assert mapping.return_from_payload(topic, fixture("returns_request.json")) == mapping.ReturnRequest(
        platform_id="945000954", order_platform_id="820982911946154508", status=status, updated_at=None)


def test_a_product_payload_is_priced_from_its_cheapest_variant_with_summed_stock():
    product = mapping.product_from_payload(fixture("products_update.json"), shop_url="https://kwiaciarnia-roza.pl")
    assert (product.platform_id, product.title, product.price) == ("632910392", "Bukiet róż", pln("139.95"))
    assert (product.stock_status, product.stock_quantity, product.sku) == ("in_stock", 7, "ROZA-CZ")
    assert product.url == "https://kwiaciarnia-roza.pl/products/bukiet-roz"
    assert product.image_url.startswith("https://cdn.shopify.com/") and product.updated_at.tzinfo == UTC


def test_compliance_payloads_name_the_shop_and_the_customer():
    assert fixture("shop_redact.json")["shop_domain"] == SHOP
    for name in ("customers_redact.json", "customers_data_request.json"):
        assert normalise_shop_domain(fixture(name)["shop_domain"]) == SHOP
        assert mapping.gid_tail(fixture(name)["customer"]["id"]) == "115310627314723954"


def test_webhook_and_graphql_ids_name_the_same_record():
    assert mapping.gid_tail("gid://shopify/Order/820982911946154508") == mapping.gid_tail(820982911946154508)
    assert mapping.to_gid("Order", "820982911946154508") == "gid://shopify/Order/820982911946154508"


def test_times_with_an_offset_come_out_in_utc_and_times_without_one_are_refused():
    assert mapping.parse_time("2026-11-20T09:58:00+01:00") == dt.datetime(2026, 11, 20, 8, 58, tzinfo=UTC)
    assert mapping.parse_time("2026-11-20T08:58:00Z") == dt.datetime(2026, 11, 20, 8, 58, tzinfo=UTC)
    assert mapping.parse_time(None) is None
    with pytest.raises(InvalidPayload, match="offset"):
        mapping.parse_time("2026-11-20T09:58:00")


def test_a_payload_without_an_id_is_refused_as_invalid():
    with pytest.raises(InvalidPayload, match="order has no id"):
        mapping.order_from_payload({**fixture("orders_create.json"), "id": None})


# --- bulk result grouping ----------------------------------------------------------------------------

def test_bulk_lines_group_children_under_the_parent_they_follow():
    lines = [b'{"id":"gid://shopify/Order/1"}', b'{"id":"gid://shopify/LineItem/11","__parentId":"gid://shopify/Order/1"}',
             b"", b'{"id":"gid://shopify/Order/2"}']
    grouped = list(group_bulk_lines(lines, lambda parent, children: (parent["id"], [c["id"] for c in children])))
    assert grouped == [("gid://shopify/Order/1", ["gid://shopify/LineItem/11"]), ("gid://shopify/Order/2", [])]


def test_bulk_children_that_do_not_follow_their_parent_are_refused():
    lines = [b'{"id":"gid://shopify/Order/1"}', b'{"id":"gid://shopify/Order/2"}',
             b'{"id":"gid://shopify/LineItem/11","__parentId":"gid://shopify/Order/1"}']
    with pytest.raises(InvalidPayload, match="does not follow its parent"):
        list(group_bulk_lines(lines, lambda parent, children: parent))
