"""The print station over HTTP: the access code, orders ready to ship with address problems, batches, scan-to-pack."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app.models import LabelBatch, Order, Shipment, Shop, utcnow
from app.shipping.warehouse import set_access_code
from app.tenancy import shop_context
from tests.factories import make_order
from tests.fake_couriers import fake_fan, pdf_pages  # noqa: F401 (fixture)
from tests.shipping_kit import open_ro_shop, ro_address, work

CODE = "depozit-2026"


@pytest.fixture
def runtime(app):
    return app.extensions["companion"]


@pytest.fixture
def station(app, runtime, fake_fan):
    """(shop id, account id, order ids): a shop with three paid orders and its warehouse code set."""
    shop_id, account_id, order_ids = open_ro_shop(runtime, fake_fan, orders=3)
    with runtime.sessions.begin() as session:
        set_access_code(session.get(Shop, shop_id), CODE)
    return shop_id, account_id, order_ids


def signed_in(client, shop_id: int) -> str:
    """Log in with the code; the CSRF token the pages carry."""
    page = client.post(f"/warehouse/{shop_id}/login", data={"code": CODE}, follow_redirects=True)
    assert page.status_code == 200
    return re.search(r'name="csrf" value="([^"]+)"', page.get_data(as_text=True)).group(1)


def test_the_station_asks_for_the_code_first(client, station):
    shop_id = station[0]

    answer = client.get(f"/warehouse/{shop_id}/")

    assert answer.status_code == 302 and f"/warehouse/{shop_id}/login" in answer.headers["Location"]


def test_a_wrong_code_is_refused(client, station):
    answer = client.post(f"/warehouse/{station[0]}/login", data={"code": "guess-123"})

    assert answer.status_code == 401 and "not right" in answer.get_data(as_text=True)


def test_the_code_opens_only_its_own_shop(client, runtime, station, fake_fan):
    other_shop, _, _ = open_ro_shop(runtime, fake_fan)
    signed_in(client, station[0])

    assert client.get(f"/warehouse/{other_shop}/").status_code == 302


def test_ready_orders_are_listed_with_their_address_problems(client, runtime, station):
    shop_id = station[0]
    with runtime.sessions.begin() as session:
        shop = session.get(Shop, shop_id)
        make_order(session, shop, number="#2001", financial_status="pending", payment_method="cod", currency="RON",
                   shipping_address={**ro_address(9, "7002"), "phone": "12"}, placed_at=utcnow())
        make_order(session, shop, number="#2002", financial_status="pending", payment_method="bacs", currency="RON",
                   shipping_address=ro_address(10), placed_at=utcnow())
    signed_in(client, shop_id)

    page = client.get(f"/warehouse/{shop_id}/").get_data(as_text=True)

    assert "#1000" in page and "#2001" in page and "#2002" not in page  # unpaid bank transfer waits
    assert "postcode &#39;7002&#39; is not a RO postcode (6 digits)" in page
    assert "phone &#39;12&#39; is not a valid RO number" in page


def test_a_post_without_the_forms_token_is_refused(client, station):
    shop_id, account_id, order_ids = station
    signed_in(client, shop_id)

    answer = client.post(f"/warehouse/{shop_id}/batches", data={"order_ids": order_ids, "account_id": account_id})

    assert answer.status_code == 400


def test_printing_selected_orders_gives_progress_then_the_pdf_and_the_handover_list(client, runtime, station):
    shop_id, account_id, order_ids = station
    csrf = signed_in(client, shop_id)

    created = client.post(f"/warehouse/{shop_id}/batches", data={"csrf": csrf, "order_ids": order_ids[:2],
                                                                 "account_id": account_id, "size": "a4_4up"})
    batch_url = created.headers["Location"]
    queued = client.get(f"{batch_url}.json").json
    work(runtime)
    finished = client.get(f"{batch_url}.json").json
    labels = client.get(f"{batch_url}/labels")
    handover = client.get(f"{batch_url}/handover").get_data(as_text=True)

    assert created.status_code == 303 and queued["status"] == "queued"
    assert (finished["status"], finished["done"], finished["has_print_file"]) == ("done", 2, True)
    assert labels.mimetype == "application/pdf" and len(pdf_pages(labels.data)) == 1
    with runtime.sessions() as session, shop_context(shop_id):
        numbers = [n for s in session.scalars(select(Shipment)) for n in s.tracking_numbers]
    assert all(number in handover for number in numbers) and "2 shipments, 2 parcels" in handover


def test_scanning_an_order_number_prints_its_label(client, runtime, station):
    shop_id, _, order_ids = station
    csrf = signed_in(client, shop_id)

    answer = client.post(f"/warehouse/{shop_id}/scan", data={"csrf": csrf, "number": "1001"})
    work(runtime)

    with runtime.sessions() as session, shop_context(shop_id):
        batch = session.scalars(select(LabelBatch)).one()
    assert answer.status_code == 303 and "autoprint=1" in answer.headers["Location"]
    assert batch.order_ids == [order_ids[1]] and batch.status == "done" and batch.print_file


def test_cancelling_a_shipment_cancels_it_at_the_courier_and_frees_the_order(client, runtime, station, fake_fan):
    shop_id, account_id, order_ids = station
    csrf = signed_in(client, shop_id)
    client.post(f"/warehouse/{shop_id}/batches", data={"csrf": csrf, "order_ids": order_ids[:1], "account_id": account_id})
    work(runtime)
    with runtime.sessions() as session, shop_context(shop_id):
        shipment = session.scalars(select(Shipment)).one()

    client.post(f"/warehouse/{shop_id}/shipments/{shipment.id}/cancel", data={"csrf": csrf})

    with runtime.sessions() as session, shop_context(shop_id):
        assert session.get(Shipment, shipment.id).status == "cancelled"
    assert fake_fan.awbs[shipment.tracking_numbers[0]]["deleted"] is True
    assert "#1000" in client.get(f"/warehouse/{shop_id}/").get_data(as_text=True)


def test_guessing_the_code_is_stopped_after_ten_tries_a_minute(client, station):
    answers = [client.post(f"/warehouse/{station[0]}/login", data={"code": f"guess-{i}"}).status_code for i in range(11)]

    assert answers[:10] == [401] * 10 and answers[10] == 429


def test_filtering_by_shipping_method_lists_only_those_orders(client, runtime, station):
    shop_id = station[0]
    with runtime.sessions.begin() as session:
        make_order(session, session.get(Shop, shop_id), number="#3001", financial_status="paid", currency="RON",
                   shipping_method="Sameday easybox", shipping_address=ro_address(11), placed_at=utcnow())
    signed_in(client, shop_id)

    page = client.get(f"/warehouse/{shop_id}/?method=Sameday+easybox").get_data(as_text=True)

    assert "#3001" in page and "#1000" not in page


def test_a_reprint_fetches_the_label_again_without_buying_one(client, runtime, station, fake_fan):
    shop_id, account_id, order_ids = station
    csrf = signed_in(client, shop_id)
    client.post(f"/warehouse/{shop_id}/batches", data={"csrf": csrf, "order_ids": order_ids[:1], "account_id": account_id})
    work(runtime)
    with runtime.sessions() as session, shop_context(shop_id):
        shipment_id = session.scalars(select(Shipment.id)).one()

    answer = client.post(f"/warehouse/{shop_id}/shipments/{shipment_id}/reprint", data={"csrf": csrf})
    work(runtime)
    labels = client.get(answer.headers["Location"].split("?")[0] + "/labels")

    assert len(fake_fan.awbs) == 1 and len(pdf_pages(labels.data)) == 1


def test_an_order_whose_parcel_came_back_is_ready_to_ship_again_though_the_store_marked_it_fulfilled(client, runtime, station):
    shop_id, account_id, order_ids = station
    csrf = signed_in(client, shop_id)
    client.post(f"/warehouse/{shop_id}/batches", data={"csrf": csrf, "order_ids": order_ids[:2], "account_id": account_id})
    work(runtime)
    with runtime.sessions.begin() as session, shop_context(shop_id):
        for shipment in session.scalars(select(Shipment)):
            session.get(Order, shipment.order_id).fulfillment_status = "fulfilled"
            shipment.status = "returned_to_sender" if shipment.order_id == order_ids[0] else "delivered"

    page = client.get(f"/warehouse/{shop_id}/").get_data(as_text=True)

    assert "#1000" in page and "#1001" not in page and "#1002" in page
