"""Job kinds over the shop's data that no single platform owns."""
from __future__ import annotations

import logging

from app.jobs.registry import job_kind
from app.store.privacy import erase_shop

log = logging.getLogger(__name__)


@job_kind("privacy.erase_shop")
def erase_shop_data(ctx, erased_shop_id: int) -> None:
    """Erase a shop and everything it owns. Runs as a job of no shop: its own row must survive the erasure."""
    if erase_shop(ctx.session, erased_shop_id):
        log.info("shop erased", extra={"shop_id": erased_shop_id})
