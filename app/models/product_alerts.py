"""Who asked to hear about a product: back in stock, or a lower price; one row per customer, product and kind."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdType, MoneyAmount, TenantScoped, tenant_fk, utcnow

PRODUCT_ALERT_KINDS = ("back_in_stock", "price_drop")
# active: waiting for the news; notified: a back-in-stock alert went out (it is one-shot); cancelled: asked to stop
PRODUCT_ALERT_STATUSES = ("active", "notified", "cancelled")


class ProductAlert(TenantScoped, Base):
    __tablename__ = "product_alerts"
    __table_args__ = (
        UniqueConstraint("shop_id", "product_id", "customer_id", "kind"),
        tenant_fk("product_id", "products", ondelete="CASCADE"),
        tenant_fk("customer_id", "customers", ondelete="CASCADE"),
        Index("ix_product_alerts_shop_product_status", "shop_id", "product_id", "status"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    product_id: Mapped[int] = mapped_column(IdType)
    customer_id: Mapped[int] = mapped_column(IdType)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="active")
    source: Mapped[str] = mapped_column(String(32), default="api")
    # the price the next drop is measured against: the price when asked, then the last price announced
    reference_price: Mapped[Decimal | None] = mapped_column(MoneyAmount)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    notified_at: Mapped[dt.datetime | None]
