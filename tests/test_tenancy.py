"""A query in one shop's context sees only that shop; crossing shops has to be asked for."""
from __future__ import annotations

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from app.models import Customer, Order
from app.tenancy import CrossTenantWrite, TenantContextMissing, shop_context
from tests.factories import make_customer, make_order, make_shop


@pytest.fixture
def two_shops(runtime):
    with runtime.sessions.begin() as session:
        shop_a, shop_b = make_shop(session, "a.myshopify.com"), make_shop(session, "b.myshopify.com")
        make_order(session, shop_a, make_customer(session, shop_a, "anna@example.pl"), platform_id="A-1")
        make_order(session, shop_b, make_customer(session, shop_b, "bogdan@example.ro"), platform_id="B-1")
        return shop_a.id, shop_b.id


def test_query_in_shop_a_context_cannot_read_shop_b_rows(runtime, two_shops):
    shop_a, shop_b = two_shops
    with runtime.sessions() as session, shop_context(shop_a):
        orders = session.scalars(select(Order)).all()
        by_id = session.scalars(select(Customer).where(Customer.email == "bogdan@example.ro")).all()
    assert [o.platform_id for o in orders] == ["A-1"]
    assert by_id == []


def test_query_on_shop_data_without_a_context_is_refused(runtime, two_shops):
    with runtime.sessions() as session, pytest.raises(TenantContextMissing):
        session.scalars(select(Order)).all()


def test_crossing_shops_works_when_asked_for_explicitly(runtime, two_shops):
    with runtime.sessions() as session:
        orders = session.scalars(select(Order).execution_options(all_shops=True)).all()
    assert sorted(o.platform_id for o in orders) == ["A-1", "B-1"]


def test_bulk_update_in_shop_a_context_leaves_shop_b_untouched(runtime, two_shops):
    shop_a, _ = two_shops
    with runtime.sessions.begin() as session, shop_context(shop_a):
        session.execute(update(Order).values(status="cancelled"))
    with runtime.sessions() as session:
        statuses = dict(session.execute(select(Order.platform_id, Order.status).execution_options(all_shops=True)).all())
    assert statuses == {"A-1": "cancelled", "B-1": "pending"}


def test_writing_shop_b_row_inside_shop_a_context_is_refused(runtime, two_shops):
    shop_a, shop_b = two_shops
    with runtime.sessions() as session, shop_context(shop_a):
        session.add(Customer(shop_id=shop_b, email="intruder@example.com"))
        with pytest.raises(CrossTenantWrite):
            session.flush()


def test_an_order_cannot_point_at_another_shops_customer(runtime, two_shops):
    shop_a, shop_b = two_shops
    with runtime.sessions() as session:
        foreign_customer = session.scalars(
            select(Customer).where(Customer.shop_id == shop_b).execution_options(all_shops=True)).one()
        session.add(Order(shop_id=shop_a, platform_id="A-2", customer_id=foreign_customer.id, currency="PLN"))
        with pytest.raises(IntegrityError):
            session.flush()


def test_switching_shop_context_switches_what_the_same_query_returns(runtime, two_shops):
    shop_a, shop_b = two_shops
    query = select(Order.platform_id)
    with runtime.sessions() as session:
        with shop_context(shop_a):
            seen_by_a = session.scalars(query).all()
        with shop_context(shop_b):
            seen_by_b = session.scalars(query).all()
    assert (seen_by_a, seen_by_b) == (["A-1"], ["B-1"])
