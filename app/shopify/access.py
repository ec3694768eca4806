"""A shop's Admin API access: a fresh token (refreshed once, under a per-shop lock) and a client built on it."""
from __future__ import annotations

import datetime as dt
import logging
import time

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.jobs.runner import PermanentJobError
from app.models import Job, Shop, utcnow
from app.shopify.rate_bucket import DatabaseBucketLedger
from app.store.reauthorization import (
    ShopNeedsReauthorization, mark_needs_reauthorization,
)
from connectors.errors import AuthError
from connectors.shopify import OAuthClient, ShopifyClient, TokenSet
from connectors.shopify.retry import Backoff

log = logging.getLogger(__name__)

REFRESH_MARGIN = dt.timedelta(minutes=5)


def oauth_client(settings: Settings) -> OAuthClient:
    base = settings.shopify.admin_base_url
    return OAuthClient(settings.shopify.api_key, settings.shopify.api_secret,
                       base_url=(lambda shop: base) if base else None)


def store_tokens(shop: Shop, tokens: TokenSet) -> None:
    shop.credentials = {"access_token": tokens.access_token, "refresh_token": tokens.refresh_token, "scope": tokens.scope}
    shop.access_token_expires_at = tokens.expires_at
    shop.refresh_token_expires_at = tokens.refresh_token_expires_at


def needs_refresh(shop: Shop, now: dt.datetime) -> bool:
    return shop.access_token_expires_at is not None and shop.access_token_expires_at - REFRESH_MARGIN <= now


def fresh_access_token(sessions: sessionmaker[Session], settings: Settings, shop_id: int, now: dt.datetime | None = None) -> str:
    """The shop's access token, refreshed first when it is about to expire.

    The refresh happens inside a transaction that locks the shop row (SELECT ... FOR UPDATE on PostgreSQL,
    BEGIN IMMEDIATE on SQLite), and the expiry is read again under the lock: a second worker that waited
    finds the token already fresh and uses it, so Shopify never sees two refreshes of one refresh token.
    """
    now = now or utcnow()
    with sessions() as session:
        shop = _load(session, shop_id)
        if not needs_refresh(shop, now):
            return shop.credentials.reveal()["access_token"]
    with sessions.begin() as session:
        shop = session.scalars(select(Shop).where(Shop.id == shop_id).with_for_update()).one()
        _ensure_usable(shop)
        if not needs_refresh(shop, now):
            return shop.credentials.reveal()["access_token"]
        refresh_token = shop.credentials.reveal().get("refresh_token")
        if not refresh_token:
            mark_needs_reauthorization(session, shop, "access token expired and no refresh token is held")
        else:
            try:
                tokens = oauth_client(settings).refresh(shop.domain, refresh_token, now)
            except AuthError as exc:
                mark_needs_reauthorization(session, shop, f"token refresh refused: {exc}")
            else:
                store_tokens(shop, tokens)
                log.info("shopify token refreshed", extra={"shop_id": shop.id})
                return tokens.access_token
    raise ShopNeedsReauthorization(f"shop {shop_id} must re-authorise the app")


def _load(session: Session, shop_id: int) -> Shop:
    shop = session.get(Shop, shop_id)
    if shop is None:
        raise PermanentJobError(f"shop {shop_id} no longer exists")
    _ensure_usable(shop)
    return shop


def _ensure_usable(shop: Shop) -> None:
    if shop.status != "active" or shop.credentials is None:
        raise ShopNeedsReauthorization(f"shop {shop.id} is {shop.status}; no Admin API access")


def admin_client(sessions: sessionmaker[Session], settings: Settings, shop_id: int, *,
                 quick: bool = False) -> ShopifyClient:
    """The shop's Admin API client. `quick` is for live reads that postpone rather than wait: one short retry."""
    with sessions() as session:
        domain = _load(session, shop_id).domain
    token = fresh_access_token(sessions, settings, shop_id)
    # Every worker calling this shop shares one cost bucket (in the database), on the wall clock they share.
    shared = dict(api_version=settings.shopify.api_version, base_url=settings.shopify.admin_base_url or None,
                  bucket_ledger=DatabaseBucketLedger(sessions.kw["bind"], shop_id), clock=time.time)
    if quick:
        return ShopifyClient(domain, token, max_retries=1, backoff=Backoff(base_seconds=0.2, max_seconds=1.0),
                             timeout=(3.0, 10.0), **shared)
    return ShopifyClient(domain, token, **shared)


def stop_shop_jobs(session: Session, shop_id: int, reason: str) -> int:
    """Cancel every queued job of the shop (running ones finish their attempt and find the shop inactive)."""
    from sqlalchemy import update

    return session.execute(
        update(Job).where(Job.shop_id == shop_id, Job.status == "queued")
        .values(status="cancelled", finished_at=utcnow(), last_error=reason)
    ).rowcount
