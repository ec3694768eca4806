"""Endpoints for the app embedded in the Shopify admin, authenticated by App Bridge session tokens."""
from __future__ import annotations

import functools

from flask import Blueprint, current_app, g, jsonify, request
from sqlalchemy import select

from app.models import Shop, SyncRun, utcnow
from app.tenancy import shop_context
from connectors.errors import SignatureError
from connectors.shopify import decode_session_token

shopify_admin = Blueprint("shopify_admin", __name__, url_prefix="/shopify/admin")


def _problem(status: int, error: str, message: str):
    return jsonify(error=error, message=message), status


def session_token_required(view):
    """Accept only `Authorization: Bearer <session token>` signed for this app and a shop we serve."""

    @functools.wraps(view)
    def checked(*args, **kwargs):
        runtime = current_app.extensions["companion"]
        settings = runtime.settings.shopify
        if not settings.configured:
            return _problem(404, "not_configured", "this service has no Shopify app configured")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _problem(401, "missing_session_token", "send the App Bridge session token as 'Authorization: Bearer ...'")
        try:
            claims = decode_session_token(token.strip(), settings.api_key, settings.secrets, utcnow())
        except SignatureError as exc:
            return _problem(401, "invalid_session_token", f"the session token does not verify: {exc}")
        with runtime.sessions() as session:
            shop = session.scalars(select(Shop).where(Shop.platform == "shopify", Shop.domain == claims.shop)).first()
            if shop is None or shop.status == "erased":
                return _problem(403, "shop_not_installed", f"{claims.shop} has not installed this app")
            g.shop_id, g.shop_status = shop.id, shop.status
        return view(*args, **kwargs)

    return checked


@shopify_admin.get("/status")
@session_token_required
def status():
    """What the embedded admin shows: the shop's connection state, its sync progress and webhook health."""
    runtime = current_app.extensions["companion"]
    with runtime.sessions() as session, shop_context(g.shop_id):
        shop = session.get(Shop, g.shop_id)
        runs = session.scalars(select(SyncRun).order_by(SyncRun.id.desc()).limit(20)).all()
        settings = shop.settings or {}
        return jsonify(
            shop=shop.domain,
            status=shop.status,
            needs_reauthorization=shop.status == "needs_reauth",
            webhooks={"checked_at": settings.get("shopify_webhooks_checked_at"),
                      "refused": settings.get("shopify_webhook_errors", {})},
            sync_runs=[{
                "kind": run.kind, "resource": run.resource, "status": run.status,
                "records_done": run.records_done, "records_total": run.records_total, "error": run.error,
                "started_at": run.started_at.isoformat() if run.started_at else None,
                "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            } for run in reversed(runs)],
        )
