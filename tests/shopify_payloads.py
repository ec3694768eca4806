"""Shopify webhook bodies shaped like the documented REST payloads, built for one test at a time."""
from __future__ import annotations

import json

SHOP_DOMAIN = "kwiaciarnia-roza.myshopify.com"


def order(order_id: int = 820982911946154508, updated_at: str = "2026-11-20T10:00:00+01:00", *,
          financial_status: str = "paid", email: str = "zofia.nowak@example.pl", phone: str = "+48600111222",
          customer_id: int = 115310627314723954, cancelled_at: str | None = None, checkout_token: str = "chk-7f3k9q") -> dict:
    return {
        "id": order_id,
        "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
        "name": "#1001",
        "order_number": 1001,
        "email": email,
        "phone": phone,
        "created_at": "2026-11-20T09:58:00+01:00",
        "processed_at": "2026-11-20T09:58:00+01:00",
        "updated_at": updated_at,
        "cancelled_at": cancelled_at,
        "cancel_reason": "customer" if cancelled_at else None,
        "currency": "PLN",
        "presentment_currency": "PLN",
        "total_price": "249.90",
        "subtotal_price": "229.90",
        "total_tax": "46.73",
        "total_discounts": "0.00",
        "total_shipping_price_set": {"shop_money": {"amount": "20.00", "currency_code": "PLN"},
                                     "presentment_money": {"amount": "20.00", "currency_code": "PLN"}},
        "financial_status": financial_status,
        "fulfillment_status": None,
        "cart_token": "68778783ad298f1c80c3bafcddeea02f",
        "checkout_token": checkout_token,
        "payment_gateway_names": ["przelewy24"],
        "customer": {"id": customer_id, "email": email, "first_name": "Zofia", "last_name": "Nowak",
                     "admin_graphql_api_id": f"gid://shopify/Customer/{customer_id}"},
        "shipping_address": {"first_name": "Zofia", "last_name": "Nowak", "address1": "ul. Różana 5", "city": "Kraków",
                             "zip": "30-001", "country_code": "PL", "phone": phone, "name": "Zofia Nowak"},
        "billing_address": {"first_name": "Zofia", "last_name": "Nowak", "address1": "ul. Różana 5", "city": "Kraków",
                            "zip": "30-001", "country_code": "PL", "phone": phone, "name": "Zofia Nowak"},
        "shipping_lines": [{"id": 1, "title": "InPost Paczkomat", "price": "20.00", "code": "inpost"}],
        "line_items": [{"id": 466157049, "admin_graphql_api_id": "gid://shopify/LineItem/466157049", "title": "Bukiet róż",
                        "name": "Bukiet róż - czerwony", "quantity": 1, "price": "229.90", "sku": "ROZA-CZ",
                        "product_id": 632910392, "variant_id": 39072856}],
    }


def customer(customer_id: int = 115310627314723954, updated_at: str = "2026-11-20T10:00:00+01:00", *,
             email: str = "zofia.nowak@example.pl", phone: str = "+48600111222", email_state: str = "subscribed") -> dict:
    return {
        "id": customer_id,
        "admin_graphql_api_id": f"gid://shopify/Customer/{customer_id}",
        "email": email,
        "phone": phone,
        "first_name": "Zofia",
        "last_name": "Nowak",
        "created_at": "2026-11-01T09:00:00+01:00",
        "updated_at": updated_at,
        "orders_count": 1,
        "total_spent": "249.90",
        "currency": "PLN",
        "state": "enabled",
        "email_marketing_consent": {"state": email_state, "opt_in_level": "single_opt_in",
                                    "consent_updated_at": "2026-11-20T09:59:00+01:00"},
        "sms_marketing_consent": {"state": "not_subscribed", "opt_in_level": "single_opt_in",
                                  "consent_updated_at": None, "consent_collected_from": "OTHER"},
    }


def data_request(customer_id: int, email: str, phone: str, request_id: int = 9999) -> dict:
    return {"shop_id": 954889, "shop_domain": SHOP_DOMAIN, "orders_requested": [820982911946154508],
            "customer": {"id": customer_id, "email": email, "phone": phone}, "data_request": {"id": request_id}}


def customer_redact(customer_id: int, email: str, phone: str) -> dict:
    return {"shop_id": 954889, "shop_domain": SHOP_DOMAIN,
            "customer": {"id": customer_id, "email": email, "phone": phone}, "orders_to_redact": [820982911946154508]}


def shop_redact() -> dict:
    return {"shop_id": 954889, "shop_domain": SHOP_DOMAIN}


def app_uninstalled() -> dict:
    return {"id": 954889, "name": "Kwiaciarnia Róża", "domain": "kwiaciarnia-roza.pl", "myshopify_domain": SHOP_DOMAIN}


def raw(payload: dict) -> bytes:
    """Serialised the way Shopify does: compact, '/' escaped, non-ASCII kept as \\u escapes."""
    return json.dumps(payload, separators=(",", ":")).replace("/", "\\/").encode()
