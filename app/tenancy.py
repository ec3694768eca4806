"""Tenant context: inside `shop_context(id)` every ORM query sees only that shop's rows.

Outside a context, a query on shop data must say so with `.execution_options(all_shops=True)`;
forgetting is an error, not a silent cross-shop read.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria

from app.models.base import TenantScoped

_current_shop: contextvars.ContextVar[int | None] = contextvars.ContextVar("current_shop", default=None)


class TenantContextMissing(RuntimeError):
    """A query touched shop data without a shop context and without saying all_shops=True."""


class CrossTenantWrite(RuntimeError):
    """A row of one shop was about to be written from inside another shop's context."""


def current_shop_id() -> int | None:
    return _current_shop.get()


@contextlib.contextmanager
def shop_context(shop_id: int) -> Iterator[int]:
    token = _current_shop.set(shop_id)
    try:
        yield shop_id
    finally:
        _current_shop.reset(token)


def _touches_shop_data(state: ORMExecuteState) -> bool:
    return any(issubclass(mapper.class_, TenantScoped) for mapper in state.all_mappers)


@event.listens_for(Session, "do_orm_execute")
def _limit_to_current_shop(state: ORMExecuteState) -> None:
    if state.is_column_load or state.is_relationship_load:
        return
    if not (state.is_select or state.is_update or state.is_delete):
        return
    if state.execution_options.get("all_shops"):
        return
    shop_id = _current_shop.get()
    if shop_id is None:
        if _touches_shop_data(state):
            raise TenantContextMissing(
                "query on shop data outside a shop context; use shop_context(shop_id) "
                "or .execution_options(all_shops=True) when crossing shops is intended"
            )
        return
    state.statement = state.statement.options(
        with_loader_criteria(TenantScoped, lambda cls: cls.shop_id == shop_id, include_aliases=True)
    )


@event.listens_for(Session, "before_flush")
def _refuse_cross_shop_writes(session: Session, _context, _instances) -> None:
    shop_id = _current_shop.get()
    if shop_id is None:
        return
    for obj in list(session.new) + list(session.dirty):
        if isinstance(obj, TenantScoped):
            if obj.shop_id is None:
                obj.shop_id = shop_id
            elif obj.shop_id != shop_id:
                raise CrossTenantWrite(f"{type(obj).__name__} of shop {obj.shop_id} written in shop {shop_id}'s context")
