"""`/s/...`: the snippet, its service worker and the public endpoints it calls (CORS-limited, rate-limited, keyed by a public shop key)."""
from __future__ import annotations

import functools
import gzip
import hashlib
import json
from pathlib import Path

from flask import Blueprint, Response, current_app, g, jsonify, make_response, request
from markupsafe import escape
from sqlalchemy import select

from app.models import Shop
from app.storefront import capture, cart_links, optin
from app.storefront import validation as v
from app.storefront.app_proxy import verify_proxy_query
from app.storefront.carts import storefront_cart
from app.storefront.guard import (
    Rejected,
    allowed_origin,
    client_ip,
    cors_headers,
    enforce_rate_limits,
    read_json_body,
    require_origin,
    runtime,
    shop_for_key,
    user_agent,
)
from app.storefront.minify import minify_js, rename_locals
from app.storefront.texts import CONFIRM_PAGE, FORM_TEXTS, PUSH_TEXTS, localised
from app.tenancy import shop_context

storefront = Blueprint("storefront", __name__, url_prefix="/s")
STATIC = Path(__file__).resolve().parent / "static"


class _Asset:
    """A static script read and minified once per process, with its content version and a gzip copy."""

    def __init__(self, name: str):
        # Served minified; the readable source stays the one in static/.
        self.body = rename_locals(minify_js((STATIC / name).read_text(encoding="utf-8"))).encode("utf-8")
        self.gzipped = gzip.compress(self.body, 9, mtime=0)
        self.version = hashlib.sha256(self.body).hexdigest()[:12]

    def response(self, max_age: int, prefix: bytes = b"") -> Response:
        etag = f'"{self.version}{hashlib.sha256(prefix).hexdigest()[:8] if prefix else ""}"'
        if request.if_none_match and etag.strip('"') in request.if_none_match:
            response = Response(status=304)
        elif not prefix and "gzip" in request.headers.get("Accept-Encoding", ""):
            response = Response(self.gzipped, mimetype="application/javascript")
            response.headers["Content-Encoding"] = "gzip"
        else:
            response = Response(prefix + self.body, mimetype="application/javascript")
        response.headers["ETag"] = etag
        response.headers["Vary"] = "Accept-Encoding"
        response.headers["Cache-Control"] = f"public, max-age={max_age}" + (", immutable" if max_age > 86400 else "")
        response.headers["Access-Control-Allow-Origin"] = "*"
        return response


SNIPPET = _Asset("snippet.js")
SERVICE_WORKER = _Asset("sw.js")


@storefront.errorhandler(Rejected)
def _rejected(exc: Rejected):
    response = jsonify(error=exc.error, message=exc.message)
    response.status_code = exc.status
    response.headers.update(exc.headers)
    origin = g.get("storefront_origin")
    if origin:
        response.headers.update(cors_headers(origin))
    return response


def public_endpoint(view):
    """Resolve the shop from `?k=`, refuse foreign origins, and answer CORS for the shop's own sites."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        shop = shop_for_key(request.args.get("k"))
        g.storefront_origin = require_origin(shop)
        if request.method == "OPTIONS":
            return Response(status=204, headers=cors_headers(g.storefront_origin, preflight=True))
        response = view(shop, *args, **kwargs)
        if not isinstance(response, Response):
            response = make_response(response)
        response.headers.update(cors_headers(g.storefront_origin))
        response.headers["Cache-Control"] = "no-store"
        return response

    return wrapper


def _proof() -> optin.Proof:
    return optin.Proof(ip_address=client_ip(), user_agent=user_agent())


def _accepted(**extra) -> Response:
    return Response(json.dumps({"status": "accepted", **extra}, separators=(",", ":")), 202, mimetype="application/json")


# --- assets -----------------------------------------------------------------------------------------

@storefront.get("/snippet.js")
def snippet():
    """Cached for a year when asked for by its version (`?v=`), else for five minutes."""
    versioned = request.args.get("v") == SNIPPET.version
    return SNIPPET.response(31536000 if versioned else 300)


@storefront.get("/sw.js")
def service_worker():
    """The service worker body; the shop serves a one-line stub on its own domain that imports it."""
    return SERVICE_WORKER.response(0)


@storefront.get("/proxy/<path:subpath>")
def app_proxy(subpath: str):
    """Shopify app proxy (`/apps/store-companion/...` on the shop's domain): the service worker, signed by Shopify."""
    settings = runtime().settings.shopify
    pairs = list(request.args.items(multi=True))
    if not settings.configured or not verify_proxy_query(pairs, settings.secrets):
        raise Rejected(401, "invalid_signature", "the app proxy signature is missing or does not match")
    if subpath != "sw.js":
        raise Rejected(404, "not_found", f"nothing is served at /s/proxy/{subpath[:60]}")
    with runtime().sessions() as session:
        key = session.scalar(select(Shop.public_key).where(Shop.platform == "shopify", Shop.domain == request.args.get("shop", "")))
    if key is None:
        raise Rejected(404, "unknown_shop", "this shop has not installed the app")
    config = f"self.STORE_COMPANION={json.dumps({'key': key, 'api': runtime().settings.public_url})};\n".encode()
    response = SERVICE_WORKER.response(0, prefix=config)
    response.headers["Service-Worker-Allowed"] = "/"
    return response


@storefront.get("/cart-link-key")
def cart_link_key():
    """The public key the WordPress plugin checks signed cart recovery links with (app/storefront/cart_links.py)."""
    response = jsonify(alg="Ed25519", key=cart_links.public_key(runtime().settings.secret_key))
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


# --- public endpoints -------------------------------------------------------------------------------

@storefront.get("/config")
def config():
    """What the snippet needs to know about the shop: platform, forms with their wording, push, privacy choices."""
    shop = shop_for_key(request.args.get("k"))
    origin = allowed_origin(shop, request.headers.get("Origin"))
    locale = (request.args.get("l") or shop.locale or "en")[:2].lower()
    locale = locale if locale in v.LOCALES else "en"
    settings = shop.storefront
    forms = []
    for form in settings.get("forms") or []:
        if isinstance(form, dict) and form.get("id") and form.get("consent_version"):
            forms.append({
                "id": form["id"], "type": form.get("type", "embedded"),
                "delay_seconds": form.get("delay_seconds", 15), "frequency_days": form.get("frequency_days", 7),
                "arm_seconds": form.get("arm_seconds", 3),
                "consent_version": form["consent_version"], "texts": localised(FORM_TEXTS, form.get("texts"), locale),
            })
    push = settings.get("push") if isinstance(settings.get("push"), dict) else {}
    vapid_key = push.get("vapid_public_key") or (_installation_vapid_key() if push.get("enabled") else None)
    body = {
        "platform": shop.platform, "locale": locale, "forms": forms,
        "honor_dnt": bool(settings.get("honor_dnt")), "require_consent": bool(settings.get("require_consent")),
        "push": None if not push.get("enabled") or not vapid_key else {
            "vapid_public_key": vapid_key, "consent_version": push.get("consent_version", "push-1"),
            "delay_seconds": push.get("delay_seconds", 10), "sw_path": push.get("sw_path"),
            "texts": localised(PUSH_TEXTS, push.get("texts"), locale),
        },
    }
    response = jsonify(body)
    response.headers["Cache-Control"] = "public, max-age=60"
    response.headers["Vary"] = "Origin"
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
    return response


def _installation_vapid_key() -> str | None:
    """The public half of the VAPID key the push notifier signs with (app/notifiers/push.py), read once per process."""
    cache = current_app.extensions.setdefault("storefront_vapid", {})
    if "key" not in cache:
        from app.notifiers.push import application_server_key, load_or_create_vapid_key

        settings = runtime().settings
        cache["key"] = application_server_key(load_or_create_vapid_key(settings.instance_dir, settings.messaging.vapid_private_key))
    return cache["key"]


@storefront.route("/cart", methods=["POST", "OPTIONS"])
@public_endpoint
def cart(shop):
    """The visitor's cart as the platform's storefront API returned it; or, with `order_id`, that it was bought."""
    body = read_json_body()
    visitor_id = v.visitor_id(body)
    enforce_rate_limits(shop, visitor_id)
    order_id = v.identifier(body, "order_id")
    if order_id is not None:
        with runtime().sessions.begin() as session, shop_context(shop.id):
            capture.complete_carts(session, visitor_id, order_id)
        return _accepted()
    record = storefront_cart(shop.platform, v.obj(body, "cart"), g.storefront_origin, visitor_id,
                             shop.public_key, runtime().settings.secret_key)
    with runtime().sessions.begin() as session, shop_context(shop.id):
        capture.sync_cart(session, shop.id, visitor_id, record)
    # The recovery link stays with the cart, for the shopper's own reminders: this endpoint is public, and answering
    # with it would sign any cart for whoever posts one (app/storefront/cart_links.py).
    return _accepted()


@storefront.route("/contact", methods=["POST", "OPTIONS"])
@public_endpoint
def contact(shop):
    """An email or phone typed at checkout: the visitor (and their cart) now has a contact."""
    body = read_json_body()
    visitor_id = v.visitor_id(body)
    enforce_rate_limits(shop, visitor_id)
    email, phone = v.email(body), v.phone(body, shop.locale)
    if email is None and phone is None:
        raise v.InvalidField("email", "an email or a phone is required")
    with runtime().sessions.begin() as session, shop_context(shop.id):
        capture.link_contact(session, shop.id, visitor_id, email, phone)
    return _accepted()


@storefront.route("/signup", methods=["POST", "OPTIONS"])
@public_endpoint
def signup(shop):
    """A sign-up form: a pending consent and a confirmation to send. The answer never says whether the address is known."""
    body = read_json_body()
    visitor_id = v.visitor_id(body, required=False)
    enforce_rate_limits(shop, visitor_id)
    email = v.email(body, required=True)
    form_id = v.text(body, "form_id", 64, required=True)
    version = v.version(body, "consent_text_version")
    if body.get("consent") is not True:
        raise v.InvalidField("consent", "must be true: the visitor ticked the consent box")
    problem = optin.form_problem(shop.storefront, form_id, version)
    if problem == "unknown_form":
        raise v.InvalidField("form_id", f"no form {form_id!r} is set up for this shop")
    if problem == "consent_text_changed":
        raise Rejected(409, "consent_text_changed",
                       f"consent_text_version {version!r} is not the current wording of form {form_id!r}; reload the form")
    locale = v.locale(body, shop.locale)
    with runtime().sessions.begin() as session, shop_context(shop.id):
        optin.request_sign_up(session, shop.id, email=email, form_id=form_id, form_text_version=version,
                              locale=locale, visitor_id=visitor_id, proof=_proof())
    return jsonify(status="confirmation_sent"), 202


@storefront.get("/confirm/<token>")
def confirm(token: str):
    """The double opt-in link: records the granted consent with its proof, then says so in the visitor's language."""
    settings = runtime().settings
    try:
        shop_id, row_id, nonce = optin.read_confirmation_token(settings, token)
    except optin.InvalidConfirmation as exc:
        return _confirm_page("en", exc.reason, 410 if exc.reason == "expired" else 400)
    with runtime().sessions.begin() as session, shop_context(shop_id):
        row = optin.confirm_sign_up(session, row_id, nonce, _proof())
        locale = row.locale if row is not None else "en"
    if row is None:
        return _confirm_page("en", "invalid", 404)
    return _confirm_page(locale, "confirmed", 200)


def _confirm_page(locale: str, outcome: str, status: int):
    message = CONFIRM_PAGE.get(locale, CONFIRM_PAGE["en"])[outcome]
    html = (f'<!doctype html><html lang="{escape(locale)}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{escape(message)}</title></head>'
            f'<body style="font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem">'
            f'<h1 style="font-size:1.4rem" data-outcome="{outcome}">{escape(message)}</h1></body></html>')
    response = make_response(html, status)
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@storefront.route("/push-subscription", methods=["POST", "DELETE", "OPTIONS"])
@public_endpoint
def push_subscription(shop):
    """POST: a browser push subscription, stored with the consent wording the visitor accepted in the soft prompt.
    DELETE: the browser no longer holds it; answered the same whether or not we knew it."""
    if request.method == "DELETE":
        return _push_unsubscribe(shop)
    body = read_json_body()
    visitor_id = v.visitor_id(body)
    enforce_rate_limits(shop, visitor_id)
    subscription = v.obj(body, "subscription")
    endpoint = v.url(subscription, "endpoint", required=True, path="subscription.endpoint", https_only=True)
    keys = v.obj(subscription, "keys", path="subscription.keys")
    p256dh = v.text(keys, "p256dh", 255, required=True, path="subscription.keys.p256dh")
    auth = v.text(keys, "auth", 255, required=True, path="subscription.keys.auth")
    if len(endpoint) > 1024:
        raise v.InvalidField("subscription.endpoint", "must be at most 1024 characters")
    version = v.version(body, "consent_text_version")
    with runtime().sessions.begin() as session, shop_context(shop.id):
        optin.subscribe_push(session, shop.id, visitor_id=visitor_id, endpoint=endpoint, p256dh=p256dh, auth=auth,
                             form_text_version=version, proof=_proof())
    return _accepted()


def _push_unsubscribe(shop):
    body = read_json_body()
    visitor_id = v.visitor_id(body)
    enforce_rate_limits(shop, visitor_id)
    endpoint = v.url(body, "endpoint", required=True, https_only=True)
    with runtime().sessions.begin() as session, shop_context(shop.id):
        optin.unsubscribe_push(session, endpoint)
    return _accepted()


from app.storefront import product_alerts  # noqa: E402,F401 - adds /s/product-alert to this blueprint
