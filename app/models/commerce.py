"""The shop's own data, mirrored from its platform: customers, orders, carts, products."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import JSON, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdType, TenantScoped, tenant_fk, utcnow

# idle: past the abandonment threshold but not ours to remind (no address, another sender); new activity reactivates it
CART_STATUSES = ("active", "abandoned", "recovered", "converted", "lost", "idle")


class Customer(TenantScoped, Base):
    __tablename__ = "customers"
    __table_args__ = (
        UniqueConstraint("shop_id", "id"),
        UniqueConstraint("shop_id", "platform_id"),
        Index("ix_customers_shop_email", "shop_id", "email"),
        Index("ix_customers_shop_phone", "shop_id", "phone"),
        Index("ix_customers_birthday", "birthday"),  # the birthday scan looks up exact dates across years
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    platform_id: Mapped[str | None] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(20))
    first_name: Mapped[str] = mapped_column(String(255), default="")
    last_name: Mapped[str] = mapped_column(String(255), default="")
    locale: Mapped[str | None] = mapped_column(String(5))
    timezone: Mapped[str | None] = mapped_column(String(64))
    birthday: Mapped[dt.date | None]
    orders_count: Mapped[int] = mapped_column(default=0)
    total_spent: Mapped[Decimal] = mapped_column(default=Decimal("0"))
    currency: Mapped[str | None] = mapped_column(String(3))
    last_order_at: Mapped[dt.datetime | None]
    platform_updated_at: Mapped[dt.datetime | None]
    redacted_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Order(TenantScoped, Base):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("shop_id", "id"),
        UniqueConstraint("shop_id", "platform_id"),
        tenant_fk("customer_id", "customers"),
        Index("ix_orders_shop_email", "shop_id", "email"),
        Index("ix_orders_shop_cart_token", "shop_id", "cart_token"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    platform_id: Mapped[str] = mapped_column(String(64))
    number: Mapped[str] = mapped_column(String(64), default="")
    customer_id: Mapped[int | None] = mapped_column(IdType)
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(32), default="pending")
    financial_status: Mapped[str | None] = mapped_column(String(32))
    fulfillment_status: Mapped[str | None] = mapped_column(String(32))
    payment_method: Mapped[str | None] = mapped_column(String(64))
    shipping_method: Mapped[str | None] = mapped_column(String(128))
    currency: Mapped[str] = mapped_column(String(3))
    subtotal: Mapped[Decimal] = mapped_column(default=Decimal("0"))
    shipping_total: Mapped[Decimal] = mapped_column(default=Decimal("0"))
    tax_total: Mapped[Decimal] = mapped_column(default=Decimal("0"))
    discount_total: Mapped[Decimal] = mapped_column(default=Decimal("0"))
    total: Mapped[Decimal] = mapped_column(default=Decimal("0"))
    cart_token: Mapped[str | None] = mapped_column(String(128))
    checkout_token: Mapped[str | None] = mapped_column(String(128))
    shipping_address: Mapped[dict | None] = mapped_column(JSON)
    billing_address: Mapped[dict | None] = mapped_column(JSON)
    placed_at: Mapped[dt.datetime | None]
    paid_at: Mapped[dt.datetime | None]
    cancelled_at: Mapped[dt.datetime | None]
    platform_updated_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class OrderLine(TenantScoped, Base):
    __tablename__ = "order_lines"
    __table_args__ = (
        UniqueConstraint("shop_id", "order_id", "platform_id"),
        tenant_fk("order_id", "orders", ondelete="CASCADE"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    order_id: Mapped[int] = mapped_column(IdType)
    platform_id: Mapped[str] = mapped_column(String(64))
    product_platform_id: Mapped[str | None] = mapped_column(String(64))
    variant_platform_id: Mapped[str | None] = mapped_column(String(64))
    sku: Mapped[str | None] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(512), default="")
    quantity: Mapped[int] = mapped_column(default=1)
    unit_price: Mapped[Decimal] = mapped_column(default=Decimal("0"))
    total: Mapped[Decimal] = mapped_column(default=Decimal("0"))


class Cart(TenantScoped, Base):
    __tablename__ = "carts"
    __table_args__ = (
        UniqueConstraint("shop_id", "id"),
        UniqueConstraint("shop_id", "platform_token"),
        tenant_fk("customer_id", "customers"),
        Index("ix_carts_status_last_activity", "status", "last_activity_at"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    platform_token: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(16), default="platform")
    customer_id: Mapped[int | None] = mapped_column(IdType)
    visitor_id: Mapped[str | None] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(20))
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[Decimal] = mapped_column(default=Decimal("0"))
    recovery_url: Mapped[str | None] = mapped_column(String(2048))
    status: Mapped[str] = mapped_column(String(16), default="active")
    last_activity_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    abandoned_at: Mapped[dt.datetime | None]
    recovered_order_id: Mapped[int | None] = mapped_column(IdType)
    platform_updated_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CartLine(TenantScoped, Base):
    __tablename__ = "cart_lines"
    __table_args__ = (tenant_fk("cart_id", "carts", ondelete="CASCADE"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    cart_id: Mapped[int] = mapped_column(IdType, index=True)
    product_platform_id: Mapped[str | None] = mapped_column(String(64))
    variant_platform_id: Mapped[str | None] = mapped_column(String(64))
    sku: Mapped[str | None] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(512), default="")
    quantity: Mapped[int] = mapped_column(default=1)
    unit_price: Mapped[Decimal] = mapped_column(default=Decimal("0"))
    image_url: Mapped[str | None] = mapped_column(String(2048))
    product_url: Mapped[str | None] = mapped_column(String(2048))


class Product(TenantScoped, Base):
    __tablename__ = "products"
    __table_args__ = (UniqueConstraint("shop_id", "platform_id"), UniqueConstraint("shop_id", "id"))

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    platform_id: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(512), default="")
    sku: Mapped[str | None] = mapped_column(String(128))
    price: Mapped[Decimal] = mapped_column(default=Decimal("0"))
    currency: Mapped[str] = mapped_column(String(3))
    stock_status: Mapped[str] = mapped_column(String(16), default="instock")
    stock_quantity: Mapped[int | None]
    url: Mapped[str | None] = mapped_column(String(2048))
    image_url: Mapped[str | None] = mapped_column(String(2048))
    platform_updated_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
