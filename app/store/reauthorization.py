"""A platform refused our credentials: the shop needs its owner to connect it again, and its jobs stop retrying."""
from __future__ import annotations

import contextlib
import logging
from typing import Iterator

from sqlalchemy.orm import Session, sessionmaker

from app.jobs.runner import PermanentJobError
from app.models import Shop, ShopAlert
from connectors.errors import AuthError

log = logging.getLogger(__name__)

RECONNECT_ADVICE = {
    "shopify": "Shopify refused our access token; open the app in your Shopify admin to authorise it again.",
    "woocommerce": "The store refused our REST API keys; connect the store again.",
}


class ShopNeedsReauthorization(PermanentJobError):
    """The platform refused our credentials (revoked, expired, permissions removed); the owner must reconnect."""


def mark_needs_reauthorization(session: Session, shop: Shop, reason: str) -> None:
    """Put an active shop into `needs_reauth` and tell its owner, once (a shop already marked is left as it is)."""
    if shop.status != "active":
        return
    shop.status = "needs_reauth"
    session.add(ShopAlert(shop_id=shop.id, kind="needs_reauthorization",
                          message=RECONNECT_ADVICE.get(shop.platform, "Connect the shop again."),
                          details={"reason": reason[:500]}))
    log.warning("shop needs re-authorisation", extra={"shop_id": shop.id, "reason": reason[:200]})


@contextlib.contextmanager
def refused_credentials_stop_the_shop(sessions: sessionmaker[Session], shop_id: int) -> Iterator[None]:
    """The platform answering 401/403 means our credentials are gone: mark the shop and end the job
    (PermanentJobError) instead of retrying it forever."""
    try:
        yield
    except AuthError as exc:
        with sessions.begin() as session:
            shop = session.get(Shop, shop_id)
            if shop is not None:
                mark_needs_reauthorization(session, shop, str(exc))
        raise ShopNeedsReauthorization(f"shop {shop_id} must be connected again: {exc}") from exc
