"""Declarative base, column types and the tenant mixin shared by every model."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    Numeric,
    String,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
IdType = BigInteger().with_variant(Integer(), "sqlite")
MoneyAmount = Numeric(14, 4, asdecimal=True)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class UTCDateTime(TypeDecorator):
    """A timestamp stored in UTC and always handed back timezone-aware.

    Naive datetimes are refused: a time without a zone is a bug waiting for a summer-time change.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; store times as timezone-aware UTC")
        value = value.astimezone(dt.timezone.utc)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        dt.datetime: UTCDateTime(),
        Decimal: MoneyAmount,
    }


class TenantScoped:
    """Mixin for rows that belong to one shop; the tenant filter applies to every query on them."""

    @declared_attr
    def shop_id(cls) -> Mapped[int]:
        return mapped_column(IdType, ForeignKey("shops.id", ondelete="CASCADE"), nullable=False, index=True)


def tenant_fk(column: str, target_table: str, ondelete: str | None = None) -> ForeignKeyConstraint:
    """A foreign key on (shop_id, column) so a row can never point at another shop's row."""
    return ForeignKeyConstraint(
        ["shop_id", column],
        [f"{target_table}.shop_id", f"{target_table}.id"],
        ondelete=ondelete,
    )


__all__ = [
    "Base",
    "IdType",
    "MoneyAmount",
    "String",
    "TenantScoped",
    "UTCDateTime",
    "tenant_fk",
    "utcnow",
]
