"""The Shopify install: /install sends the owner to Shopify's grant screen, /auth/callback finishes it."""
from __future__ import annotations

import datetime as dt
import logging
import secrets

from flask import Blueprint, current_app, jsonify, redirect, request
from sqlalchemy import select

from app.jobs.queue import enqueue
from app.models import OAuthState, Shop, utcnow
from app.shopify.access import oauth_client, store_tokens
from connectors.errors import AuthError, ConnectorError, SignatureError
from connectors.shopify import authorize_url, check_signed_query, normalise_shop_domain

log = logging.getLogger(__name__)
shopify_install = Blueprint("shopify_install", __name__)

STATE_LIFETIME = dt.timedelta(minutes=10)


def _runtime():
    return current_app.extensions["companion"]


def _problem(status: int, error: str, message: str):
    return jsonify(error=error, message=message), status


def _signed_query_problem(now: dt.datetime):
    try:
        check_signed_query(list(request.args.items(multi=True)), _runtime().settings.shopify.secrets, now)
    except SignatureError as exc:
        return _problem(401, "invalid_signature", f"the request's hmac does not verify: {exc}")
    return None


@shopify_install.get("/install")
def install():
    settings = _runtime().settings
    if not settings.shopify.configured:
        return _problem(404, "not_configured", "this service has no Shopify app configured")
    shop_domain = normalise_shop_domain(request.args.get("shop", ""))
    if shop_domain is None:
        return _problem(400, "invalid_shop", "shop must be a *.myshopify.com domain")
    now = utcnow()
    if (problem := _signed_query_problem(now)) is not None:
        return problem
    state = secrets.token_hex(16)
    with _runtime().sessions.begin() as session:
        session.add(OAuthState(state=state, platform="shopify", shop_domain=shop_domain, created_at=now))
    url = authorize_url(shop_domain, settings.shopify.api_key, settings.shopify.scopes,
                        f"{settings.public_url}/auth/callback", state)
    return redirect(url, code=302)


@shopify_install.get("/auth/callback")
def callback():
    runtime = _runtime()
    settings = runtime.settings
    if not settings.shopify.configured:
        return _problem(404, "not_configured", "this service has no Shopify app configured")
    now = utcnow()
    if (problem := _signed_query_problem(now)) is not None:
        return problem
    shop_domain = normalise_shop_domain(request.args.get("shop", ""))
    if shop_domain is None:
        return _problem(400, "invalid_shop", "shop must be a *.myshopify.com domain")
    code, state = request.args.get("code"), request.args.get("state", "")
    if not code:
        return _problem(400, "missing_code", "the callback carries no authorization code")
    with runtime.sessions.begin() as session:
        pending = session.get(OAuthState, state) if state else None
        if pending is None or pending.used_at is not None or pending.shop_domain != shop_domain \
                or pending.created_at + STATE_LIFETIME < now:
            return _problem(403, "invalid_state", "the install request is unknown, used or expired; start again from /install")
        pending.used_at = now
    try:
        tokens = oauth_client(settings).exchange_code(shop_domain, code, now)
    except AuthError as exc:
        return _problem(403, "code_refused", f"Shopify refused the authorization code: {exc}")
    except ConnectorError as exc:
        return _problem(502, "shopify_unavailable", f"could not reach Shopify to finish the install: {exc}")
    with runtime.sessions.begin() as session:
        shop = session.scalars(select(Shop).where(Shop.platform == "shopify", Shop.domain == shop_domain)).first()
        if shop is None:
            shop = Shop(platform="shopify", domain=shop_domain, name=shop_domain.split(".")[0],
                        webhook_token=secrets.token_urlsafe(24), public_key=secrets.token_urlsafe(16))
            session.add(shop)
        reinstall = shop.id is not None
        shop.status = "active"
        store_tokens(shop, tokens)
        session.flush()
        enqueue(session, "shopify.register_webhooks", shop_id=shop.id)
        enqueue(session, "shopify.start_initial_sync", shop_id=shop.id)
    log.info("shopify shop installed", extra={"shop": shop_domain, "reinstall": reinstall})
    return redirect(f"https://{shop_domain}/admin/apps/{settings.shopify.api_key}", code=302)
