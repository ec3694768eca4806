"""Connecting a WooCommerce store: pasted REST API keys, or the one-click /wc-auth/v1/authorize flow."""
from __future__ import annotations

import datetime as dt
import logging
import secrets

from flask import Blueprint, current_app, jsonify, redirect, request
from sqlalchemy import select

from app.jobs.queue import enqueue
from app.models import OAuthState, Shop, utcnow
from app.woocommerce.access import check_store, normalise_store_url, store_credentials, url_policy
from connectors.errors import AuthError, ConnectorError, InvalidPayload, UnsafeURL
from connectors.woocommerce.auth import Credentials
from connectors.woocommerce.wc_auth import authorize_url, new_state_token, parse_callback

log = logging.getLogger(__name__)
woocommerce_connect = Blueprint("woocommerce_connect", __name__, url_prefix="/connect/woocommerce")

STATE_LIFETIME = dt.timedelta(minutes=30)
APP_NAME = "Store Companion"


def _runtime():
    return current_app.extensions["companion"]


def _problem(status: int, error: str, message: str):
    return jsonify(error=error, message=message), status


def _store_url_or_problem(value):
    try:
        store_url = normalise_store_url(value)
        url_policy(_runtime().settings).check(store_url)
    except UnsafeURL as exc:
        return None, _problem(400, "invalid_store_url", str(exc))
    return store_url, None


def connect_shop(session, store_url: str, credentials: Credentials, *, key_id: int | None = None,
                 capabilities: dict | None = None) -> Shop:
    """Create or update the store's shop row with these keys, then queue the webhook set-up and the initial sync."""
    shop = session.scalars(select(Shop).where(Shop.platform == "woocommerce", Shop.domain == store_url)).first()
    if shop is None:
        shop = Shop(platform="woocommerce", domain=store_url, name=store_url.split("://", 1)[1],
                    webhook_token=secrets.token_urlsafe(24), public_key=secrets.token_urlsafe(16))
        session.add(shop)
    store_credentials(shop, credentials, key_id=key_id)
    shop.status = "active"
    if capabilities is not None:
        shop.settings = {**(shop.settings or {}), "woocommerce_capabilities": capabilities}
    session.flush()
    enqueue(session, "woocommerce.setup", shop_id=shop.id)
    return shop


@woocommerce_connect.post("")
def connect_with_keys():
    """A shop owner pastes the REST API keys from WooCommerce › Settings › Advanced › REST API."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _problem(400, "invalid_body", "send a JSON object with store_url, consumer_key and consumer_secret")
    missing = [name for name in ("store_url", "consumer_key", "consumer_secret") if not str(body.get(name) or "").strip()]
    if missing:
        return _problem(400, "missing_fields", f"missing {', '.join(missing)}")
    key, secret = str(body["consumer_key"]).strip(), str(body["consumer_secret"]).strip()
    if not key.startswith("ck_") or not secret.startswith("cs_"):
        return _problem(400, "invalid_keys", "consumer_key starts with ck_ and consumer_secret with cs_")
    store_url, problem = _store_url_or_problem(body["store_url"])
    if problem:
        return problem
    credentials = Credentials(key, secret)
    try:
        capabilities = check_store(_runtime().settings, store_url, credentials)
    except AuthError as exc:
        return _problem(400, "keys_refused", f"the store refused these keys: {exc}")
    except UnsafeURL as exc:
        return _problem(400, "invalid_store_url", str(exc))
    except ConnectorError as exc:
        return _problem(502, "store_unreachable", f"could not talk to the store's REST API: {exc}")
    with _runtime().sessions.begin() as session:
        shop = connect_shop(session, store_url, credentials, capabilities=capabilities)
        shop_id = shop.id
    log.info("woocommerce store connected with pasted keys", extra={"shop_id": shop_id, "store": store_url})
    return jsonify(shop_id=shop_id, store_url=store_url, status="active", capabilities=capabilities), 201


@woocommerce_connect.get("/authorize")
def start_one_click():
    """Send the owner to the store's own key-approval screen; the keys come back to /callback."""
    settings = _runtime().settings
    store_url, problem = _store_url_or_problem(request.args.get("store_url"))
    if problem:
        return problem
    if not settings.public_url.startswith("https://"):
        return _problem(409, "public_url_not_https", "WooCommerce posts keys only to an https:// callback; set PUBLIC_URL")
    user_id = new_state_token()
    with _runtime().sessions.begin() as session:
        session.add(OAuthState(state=user_id, platform="woocommerce", shop_domain=store_url, created_at=utcnow()))
    return redirect(authorize_url(store_url, app_name=APP_NAME, user_id=user_id,
                                  return_url=f"{settings.public_url}/connect/woocommerce/return",
                                  callback_url=f"{settings.public_url}/connect/woocommerce/callback"), code=302)


@woocommerce_connect.post("/callback")
def receive_keys():
    """WooCommerce posts the new keys here (unsigned) and revokes them unless we answer exactly 200.

    The one-time `user_id` we put in the authorize URL binds them to the store the owner started from;
    the keys are checked and the webhooks created by a job, not while WooCommerce waits on us.
    """
    try:
        granted = parse_callback(request.get_data(cache=False))
    except InvalidPayload as exc:
        return _problem(400, "invalid_callback", str(exc))
    now = utcnow()
    with _runtime().sessions.begin() as session:
        pending = session.get(OAuthState, granted.user_id)
        if pending is None or pending.platform != "woocommerce" or pending.used_at is not None \
                or pending.created_at + STATE_LIFETIME < now:
            return _problem(403, "unknown_request", "this key grant does not answer a connection we started")
        pending.used_at = now
        shop = connect_shop(session, pending.shop_domain, granted.credentials, key_id=granted.key_id)
        shop_id = shop.id
    log.info("woocommerce store connected by wc-auth", extra={"shop_id": shop_id, "permissions": granted.permissions})
    return jsonify(status="connected"), 200


@woocommerce_connect.get("/return")
def owner_returns():
    """Where the owner's browser lands after approving (success=1) or refusing (success=0)."""
    user_id = request.args.get("user_id", "")
    with _runtime().sessions() as session:
        pending = session.get(OAuthState, user_id) if user_id else None
        if pending is None or pending.platform != "woocommerce":
            return _problem(404, "unknown_request", "no connection was started with this id")
        shop = session.scalars(select(Shop).where(Shop.platform == "woocommerce", Shop.domain == pending.shop_domain)).first()
    if request.args.get("success") != "1":
        return jsonify(status="refused", message="the store owner did not approve the key"), 200
    if pending.used_at is None or shop is None:
        return jsonify(status="waiting", message="approved; the store has not delivered the keys yet"), 202
    return jsonify(status="connected", shop_id=shop.id, store_url=shop.domain), 200
