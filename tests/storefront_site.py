"""A shop's storefront on loopback for browser tests: pages carrying the snippet, and the platform's cart endpoint.

WooCommerce flavour: Store API `GET /wp-json/wc/store/v1/cart`, `POST .../cart/add-item`.
Shopify flavour: AJAX API `GET /cart.js`, `POST /cart/add.js`. Responses are shaped like the documented ones
(trimmed to the fields a theme would read). One shopper at a time: the cart lives in the server.
"""
from __future__ import annotations

import html
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SNIPPET_FILE = Path(__file__).resolve().parent.parent / "app" / "storefront" / "static" / "snippet.js"

PRODUCT = {"product_id": 12, "variant_id": 4001, "name": "Kubek", "sku": "MUG-1", "price": 2999}

PAGE = """<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><title>{title}</title>
<script>{stubs}</script>
<script async src="{snippet_src}" data-key="{key}"></script></head>
<body class="{body_class}">
<h1>{title}</h1>
<nav><a id="to-product" href="/product/mug">Kubek</a> <a id="to-checkout" href="/checkout">Kasa</a></nav>
{content}
<p id="status">ready</p>
<div data-store-companion-form="footer"></div>
</body></html>"""

PRODUCT_CONTENT = """<div data-sc-product-id="{product_id}" data-sc-title="Kubek">
<button id="add" type="button">Dodaj do koszyka</button></div>
<script>
document.getElementById("add").addEventListener("click", function () {{
  fetch("{add_path}", {{method: "POST", headers: {{"Content-Type": "application/json"}}, body: JSON.stringify({add_body})}})
    .then(function (r) {{ return r.json(); }})
    .then(function () {{ document.getElementById("status").textContent = "added"; }});
}});
</script>"""

CHECKOUT_CONTENT = """<form class="checkout woocommerce-checkout" onsubmit="return false">
<label for="billing_email">E-mail</label><input type="email" id="billing_email" name="billing_email">
<label for="billing_phone">Telefon</label><input type="tel" id="billing_phone" name="billing_phone">
<label for="billing_first_name">Imię</label><input id="billing_first_name" name="billing_first_name">
</form>"""


class FakeStorefront:
    """`platform` is "woocommerce" or "shopify"; `snippet_src` is where the page loads the snippet from."""

    def __init__(self, platform: str, *, key: str = "", snippet_src: str = "", stubs: str = "", lang: str = "pl",
                 broken_service: bool = False):
        self.platform, self.key, self.snippet_src, self.stubs, self.lang = platform, key, snippet_src, stubs, lang
        self.broken_service = broken_service
        self.quantity = 0
        self.requests: list[str] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args):
                pass

            def do_GET(self):
                site.requests.append(f"GET {self.path}")
                site.get(self)

            def do_POST(self):
                site.requests.append(f"POST {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                site.post(self, self.rfile.read(length))

            def do_OPTIONS(self):
                site.requests.append(f"OPTIONS {self.path}")
                site.reply(self, 503, b"down", "text/plain")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.host = f"127.0.0.1:{self.port}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- responses --------------------------------------------------------------------------------------

    @staticmethod
    def reply(handler, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(body)

    def page(self, title: str, content: str, body_class: str = "") -> bytes:
        return PAGE.format(lang=self.lang, title=html.escape(title), stubs=self.stubs, snippet_src=html.escape(self.snippet_src),
                           key=html.escape(self.key), body_class=body_class, content=content).encode()

    def get(self, handler) -> None:
        path = handler.path.split("?", 1)[0]
        if self.broken_service and path.startswith("/s/"):
            return self._broken_service_get(handler, path)
        if path == "/":
            return self.reply(handler, 200, self.page("Sklep", '<p>Witamy</p><div style="height:3000px"></div>', "home"), "text/html; charset=utf-8")
        if path == "/product/mug":
            add_path, add_body = ("/cart/add.js", {"items": [{"id": PRODUCT["variant_id"], "quantity": 1}]}) \
                if self.platform == "shopify" else ("/wp-json/wc/store/v1/cart/add-item", {"id": PRODUCT["product_id"], "quantity": 1})
            content = PRODUCT_CONTENT.format(product_id=PRODUCT["product_id"], add_path=add_path, add_body=json.dumps(add_body))
            return self.reply(handler, 200, self.page("Kubek", content, "single-product"), "text/html; charset=utf-8")
        if path == "/checkout":
            return self.reply(handler, 200, self.page("Kasa", CHECKOUT_CONTENT, "woocommerce-checkout"), "text/html; charset=utf-8")
        if path == "/sc-sw.js":
            # What the WordPress plugin serves at /?store_companion_sw=1: config, then the service's worker.
            service = self.snippet_src.rsplit("/s/", 1)[0]
            stub = f"self.STORE_COMPANION={json.dumps({'key': self.key, 'api': service})};\nimportScripts({json.dumps(service + '/s/sw.js')});\n"
            return self.reply(handler, 200, stub.encode(), "application/javascript")
        if path in ("/cart.js", "/wp-json/wc/store/v1/cart"):
            return self.reply(handler, 200, json.dumps(self.cart()).encode(), "application/json")
        return self.reply(handler, 404, b"not found", "text/plain")

    def post(self, handler, body: bytes) -> None:
        path = handler.path.split("?", 1)[0]
        if self.broken_service and path.startswith("/s/"):
            return self.reply(handler, 503, b"<html>Service Unavailable</html>", "text/html")
        if path in ("/cart/add.js", "/wp-json/wc/store/v1/cart/add-item"):
            self.quantity += 1
            return self.reply(handler, 200, json.dumps(self.cart()).encode(), "application/json")
        return self.reply(handler, 404, b"not found", "text/plain")

    def _broken_service_get(self, handler, path: str) -> None:
        """The service as seen while it fails: the cached snippet still loads, every call answers 503."""
        if path == "/s/snippet.js":
            return self.reply(handler, 200, SNIPPET_FILE.read_bytes(), "application/javascript")
        if path == "/s/config":
            config = {"platform": self.platform, "locale": "pl", "honor_dnt": False, "require_consent": False, "push": None,
                      "forms": [{"id": "nl", "type": "timed", "delay_seconds": 0, "frequency_days": 7, "consent_version": "v1",
                                 "texts": {"title": "T", "body": "B", "email_label": "E", "consent": "C", "button": "Go",
                                           "close": "X", "success": "S", "error": "Err", "invalid_email": "I",
                                           "consent_required": "R"}}]}
            return self.reply(handler, 200, json.dumps(config).encode(), "application/json",
                              {"Access-Control-Allow-Origin": "*"})
        return self.reply(handler, 503, b"<html>Service Unavailable</html>", "text/html")

    # --- the cart, shaped as each platform shows it ----------------------------------------------------------

    def cart(self) -> dict:
        q, p = self.quantity, PRODUCT
        if self.platform == "shopify":
            items = [{
                "id": p["variant_id"], "variant_id": p["variant_id"], "product_id": p["product_id"], "key": f"{p['variant_id']}:abc",
                "title": "Kubek - Biały", "product_title": p["name"], "quantity": q, "price": p["price"], "final_price": p["price"],
                "line_price": p["price"] * q, "sku": p["sku"], "url": f"/products/mug?variant={p['variant_id']}",
                "image": "https://cdn.shopify.com/s/files/mug.jpg", "handle": "mug",
            }] if q else []
            return {"token": "Z2NwLWV1cm9wZS13ZXN0NDowMUhNUEtR?key=6dacd6065bb80268", "note": None, "attributes": {},
                    "original_total_price": p["price"] * q, "total_price": p["price"] * q, "total_discount": 0,
                    "item_count": q, "items": items, "requires_shipping": True, "currency": "PLN"}
        items = [{
            "key": "c74d97b01eae257e44aa9d5bade97baf", "id": p["product_id"], "quantity": q, "name": p["name"], "sku": p["sku"],
            "permalink": f"{self.origin}/product/mug", "images": [{"id": 7, "src": f"{self.origin}/mug.jpg", "thumbnail": f"{self.origin}/mug-100.jpg"}],
            "prices": {"price": str(p["price"]), "regular_price": str(p["price"]), "sale_price": str(p["price"]),
                       "currency_code": "PLN", "currency_minor_unit": 2},
            "totals": {"line_subtotal": str(p["price"] * q), "line_total": str(p["price"] * q), "currency_code": "PLN", "currency_minor_unit": 2},
        }] if q else []
        return {"items": items, "items_count": q, "needs_payment": bool(q), "needs_shipping": bool(q),
                "totals": {"total_items": str(p["price"] * q), "total_price": str(p["price"] * q), "total_tax": "0",
                           "currency_code": "PLN", "currency_minor_unit": 2, "currency_symbol": "zł"},
                "billing_address": {"email": "", "phone": ""}, "coupons": [], "errors": []}


class ServedApp:
    """The Flask app on a real loopback HTTP server (threaded werkzeug), for tests that speak HTTP to it."""

    def __init__(self, app):
        from werkzeug.serving import make_server

        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
