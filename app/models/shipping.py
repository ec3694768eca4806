"""Courier work: shipments, their tracking history and the print station's label batches."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import JSON, Index, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.crypto import EncryptedJSON, Secret
from app.models.base import Base, IdType, TenantScoped, tenant_fk, utcnow

SHIPMENT_STATUSES = (
    "created", "picked_up", "in_transit", "out_for_delivery", "available_for_pickup", "failed_attempt",
    "delivered", "returning", "returned_to_sender", "cancelled", "exception", "unknown",
)


class CourierAccount(TenantScoped, Base):
    """A shop's contract with a courier: its API credentials (encrypted), sender address and defaults."""

    __tablename__ = "courier_accounts"
    __table_args__ = (UniqueConstraint("shop_id", "id"), UniqueConstraint("shop_id", "name"))

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    courier: Mapped[str] = mapped_column(String(32))  # registry name: fancourier, sameday, inpost, manual...
    name: Mapped[str] = mapped_column(String(64))
    credentials: Mapped[Secret | None] = mapped_column(EncryptedJSON(), nullable=True)
    sender: Mapped[dict] = mapped_column(JSON, default=dict)  # an Address as a dict
    default_service: Mapped[str | None] = mapped_column(String(64))
    shipping_methods: Mapped[list] = mapped_column(JSON, default=list)  # shop shipping method titles it serves
    parcel: Mapped[dict] = mapped_column(JSON, default=dict)  # default weight/size
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class LabelBatch(TenantScoped, Base):
    __tablename__ = "label_batches"
    __table_args__ = (UniqueConstraint("shop_id", "id"), tenant_fk("courier_account_id", "courier_accounts"))

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    courier: Mapped[str] = mapped_column(String(32))
    courier_account_id: Mapped[int | None] = mapped_column(IdType)
    service: Mapped[str | None] = mapped_column(String(64))
    label_size: Mapped[str] = mapped_column(String(16), default="a4_4up")
    label_format: Mapped[str] = mapped_column(String(16), default="a4_4up")
    status: Mapped[str] = mapped_column(String(16), default="queued")
    order_ids: Mapped[list] = mapped_column(JSON, default=list)
    done_count: Mapped[int] = mapped_column(default=0)
    failed_count: Mapped[int] = mapped_column(default=0)
    failures: Mapped[dict] = mapped_column(JSON, default=dict)
    print_file: Mapped[bytes | None] = mapped_column(LargeBinary)
    requested_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]


class Shipment(TenantScoped, Base):
    __tablename__ = "shipments"
    __table_args__ = (
        UniqueConstraint("shop_id", "id"),
        UniqueConstraint("shop_id", "idempotency_key"),
        tenant_fk("order_id", "orders"),
        tenant_fk("label_batch_id", "label_batches"),
        tenant_fk("courier_account_id", "courier_accounts"),
        Index("ix_shipments_next_poll_at", "next_poll_at"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    order_id: Mapped[int | None] = mapped_column(IdType)
    label_batch_id: Mapped[int | None] = mapped_column(IdType)
    courier_account_id: Mapped[int | None] = mapped_column(IdType)
    courier: Mapped[str] = mapped_column(String(32))
    shipment_ref: Mapped[str | None] = mapped_column(String(64))  # the courier's own id when not the tracking number
    last_event_at: Mapped[dt.datetime | None]  # when the courier last reported a move (stuck-parcel alerts)
    service: Mapped[str | None] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(128))
    tracking_numbers: Mapped[list] = mapped_column(JSON, default=list)
    tracking_url: Mapped[str | None] = mapped_column(String(2048))
    status: Mapped[str] = mapped_column(String(24), default="created")
    status_raw: Mapped[str | None] = mapped_column(Text)
    cost: Mapped[Decimal | None]
    currency: Mapped[str | None] = mapped_column(String(3))
    label: Mapped[bytes | None] = mapped_column(LargeBinary)
    label_format: Mapped[str | None] = mapped_column(String(16))
    next_poll_at: Mapped[dt.datetime | None]
    platform_fulfillment_id: Mapped[str | None] = mapped_column(String(64))  # the store's record of it, once written back
    delivered_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TrackingEvent(TenantScoped, Base):
    __tablename__ = "tracking_events"
    __table_args__ = (
        UniqueConstraint("shop_id", "shipment_id", "occurred_at", "raw_code"),
        tenant_fk("shipment_id", "shipments", ondelete="CASCADE"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    shipment_id: Mapped[int] = mapped_column(IdType)
    occurred_at: Mapped[dt.datetime]
    status: Mapped[str] = mapped_column(String(24))
    raw_code: Mapped[str] = mapped_column(String(64))
    raw_text: Mapped[str] = mapped_column(Text, default="")
    location: Mapped[str | None] = mapped_column(String(255))


class CourierPickup(TenantScoped, Base):
    """A courier asked to come and collect parcels; written before the courier is called, so a second click is
    seen as the same request rather than a second van."""

    __tablename__ = "courier_pickups"
    __table_args__ = (
        UniqueConstraint("shop_id", "id"),
        UniqueConstraint("shop_id", "dedupe_key"),
        tenant_fk("courier_account_id", "courier_accounts"),
        tenant_fk("label_batch_id", "label_batches"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    courier_account_id: Mapped[int] = mapped_column(IdType)
    label_batch_id: Mapped[int | None] = mapped_column(IdType)
    courier: Mapped[str] = mapped_column(String(32))
    dedupe_key: Mapped[str] = mapped_column(String(128))
    day: Mapped[dt.date]
    ready_from: Mapped[str] = mapped_column(String(5))  # "HH:MM", the warehouse's local time
    ready_until: Mapped[str] = mapped_column(String(5))
    parcels: Mapped[int] = mapped_column(default=0)
    # requesting, requested, refused, unknown; then cancelling, cancelled (or back to requested when the courier
    # would not call it off, with its reason in `message`), or cancel_unknown when the cancel's answer was lost
    # (settled by asking again, or by staff from the courier's panel)
    status: Mapped[str] = mapped_column(String(16), default="requesting")
    pickup_ref: Mapped[str | None] = mapped_column(String(64))  # the courier's order number
    courier_data: Mapped[dict | None] = mapped_column(JSON)  # what the courier needs besides the number to cancel it
    message: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str | None] = mapped_column(String(255))
    cancelled_at: Mapped[dt.datetime | None]
    cancelled_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CourierDocument(TenantScoped, Base):
    """A document the courier issued for a batch (its handover printout), kept so a reprint does not ask again:
    some couriers number a new protocol on every call."""

    __tablename__ = "courier_documents"
    __table_args__ = (
        UniqueConstraint("shop_id", "id"),
        UniqueConstraint("shop_id", "dedupe_key"),
        tenant_fk("label_batch_id", "label_batches"),
        tenant_fk("courier_pickup_id", "courier_pickups"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    label_batch_id: Mapped[int] = mapped_column(IdType)
    courier_pickup_id: Mapped[int | None] = mapped_column(IdType)  # set when the document is that pickup order's
    courier: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16), default="handover")
    dedupe_key: Mapped[str] = mapped_column(String(128))
    reference: Mapped[str | None] = mapped_column(String(64))  # the courier's number for the document
    media_type: Mapped[str] = mapped_column(String(64), default="application/pdf")
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
