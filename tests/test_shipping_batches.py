"""The label batch job against the loopback FAN Courier: one label per order, one print file, never a second label."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.models import CourierAccount, Job, LabelBatch, Order, Shipment, Signal
from app.shipping.batches import create_batch, retry_batch
from app.tenancy import shop_context
from tests.fake_couriers import fake_fan, pdf_pages  # noqa: F401 (fixture)
from tests.shipping_kit import open_ro_shop, work

A4 = (595.28, 841.89)
BAD = (4, 17, 33)


def print_batch(runtime, shop_id: int, account_id: int, order_ids: list[int], **options) -> int:
    with runtime.sessions.begin() as session, shop_context(shop_id):
        batch = create_batch(session, shop_id, order_ids, session.get(CourierAccount, account_id), **options)
        batch_id = batch.id
    work(runtime)
    return batch_id


def held_batch(runtime, shop_id: int, batch_id: int) -> LabelBatch:
    with runtime.sessions() as session, shop_context(shop_id):
        return session.get(LabelBatch, batch_id)


@pytest.fixture
def forty(runtime, fake_fan):
    """40 paid orders, three of them with a postcode FAN refuses."""
    return open_ro_shop(runtime, fake_fan, orders=40, bad_postcodes=BAD)


def test_forty_orders_with_three_refused_make_one_a4_file_of_ten_sheets(runtime, fake_fan, forty):
    shop_id, account_id, order_ids = forty

    batch = held_batch(runtime, shop_id, print_batch(runtime, shop_id, account_id, order_ids))

    assert (batch.status, batch.done_count, batch.failed_count) == ("partial", 37, 3)
    pages = pdf_pages(batch.print_file)
    assert len(pages) == 10 and all(abs(w - A4[0]) < 1 and abs(h - A4[1]) < 1 for w, h in pages)


def test_each_refused_order_is_listed_with_the_couriers_message(runtime, fake_fan, forty):
    shop_id, account_id, order_ids = forty

    batch = held_batch(runtime, shop_id, print_batch(runtime, shop_id, account_id, order_ids))

    assert set(batch.failures) == {str(order_ids[i]) for i in BAD}
    failure = batch.failures[str(order_ids[4])]
    assert failure["order_number"] == "#1004"
    assert failure["errors"] == {"recipient.address.zipCode": ["The recipient.address.zip code is invalid."]}


def test_retrying_the_failures_buys_no_second_label_for_the_orders_that_worked(runtime, fake_fan, forty):
    shop_id, account_id, order_ids = forty
    batch_id = print_batch(runtime, shop_id, account_id, order_ids)
    with runtime.sessions.begin() as session, shop_context(shop_id):
        for order_id in (order_ids[i] for i in BAD):  # staff fix the postcodes
            order = session.get(Order, order_id)
            order.shipping_address = {**order.shipping_address, "postcode": "700259"}
        retry_batch(session, session.get(LabelBatch, batch_id))
    work(runtime)

    batch = held_batch(runtime, shop_id, batch_id)
    with runtime.sessions() as session, shop_context(shop_id):
        shipments = session.scalar(select(func.count()).select_from(Shipment))
    assert (batch.status, batch.done_count, batch.failed_count) == ("done", 40, 0)
    assert len(fake_fan.awbs) == 40 and shipments == 40
    assert len(pdf_pages(batch.print_file)) == 10


def test_each_new_label_enqueues_the_store_write_back_and_the_shipped_signal(runtime, fake_fan):
    shop_id, account_id, order_ids = open_ro_shop(runtime, fake_fan, orders=3)

    print_batch(runtime, shop_id, account_id, order_ids)

    with runtime.sessions() as session, shop_context(shop_id):
        shipment_ids = set(session.scalars(select(Shipment.id)))
        write_backs = session.scalars(select(Job).where(Job.kind == "woocommerce.write_tracking")).all()
        shipped = session.scalars(select(Signal).where(Signal.kind == "fulfillment_created")).all()
    assert {job.args["shipment_id"] for job in write_backs} == shipment_ids
    assert {signal.payload["shipment_id"] for signal in shipped} == shipment_ids


def test_a_shopify_shop_gets_fulfillments(runtime, fake_fan):
    shop_id, account_id, order_ids = open_ro_shop(runtime, fake_fan, orders=2, platform="shopify")

    print_batch(runtime, shop_id, account_id, order_ids)

    with runtime.sessions() as session, shop_context(shop_id):
        kinds = session.scalars(select(Job.kind).where(Job.shop_id == shop_id)).all()
    assert kinds.count("shopify.fulfill_shipment") == 2 and "woocommerce.write_tracking" not in kinds


def test_a_create_whose_answer_was_lost_is_unknown_then_found_on_retry_without_buying_again(runtime, fake_fan):
    shop_id, account_id, order_ids = open_ro_shop(runtime, fake_fan, orders=1)
    fake_fan.fail_next(502, path="/intern-awb", after=True)  # FAN made the AWB, the answer got lost
    fake_fan.fail_next(502, path="/reports/awb", times=4)  # and the lookup is down for now (all its retries)

    batch_id = print_batch(runtime, shop_id, account_id, order_ids)
    with runtime.sessions() as session, shop_context(shop_id):
        first = session.scalars(select(Shipment)).one()
        batch = session.get(LabelBatch, batch_id)
        assert first.status == "unknown" and batch.failures[str(order_ids[0])]["ambiguous"] is True
        retry_batch(session, batch)
        session.commit()
    work(runtime)

    with runtime.sessions() as session, shop_context(shop_id):
        shipment = session.scalars(select(Shipment)).one()
    assert len(fake_fan.awbs) == 1 and shipment.status == "created", held_batch(runtime, shop_id, batch_id).failures
    assert shipment.tracking_numbers == list(fake_fan.awbs)


def test_thermal_printers_get_one_100x150_page_per_label(runtime, fake_fan):
    shop_id, account_id, order_ids = open_ro_shop(runtime, fake_fan, orders=3)

    batch = held_batch(runtime, shop_id, print_batch(runtime, shop_id, account_id, order_ids, label_size="100x150"))

    pages = pdf_pages(batch.print_file)
    assert len(pages) == 3 and all(abs(w - 283.46) < 1 and abs(h - 425.2) < 1 for w, h in pages)


def test_an_order_whose_label_another_batch_is_buying_right_now_is_not_bought_again(runtime, fake_fan):
    shop_id, account_id, order_ids = open_ro_shop(runtime, fake_fan, orders=1)
    with runtime.sessions.begin() as session, shop_context(shop_id):
        session.add(Shipment(shop_id=shop_id, order_id=order_ids[0], courier_account_id=account_id, courier="fancourier",
                             idempotency_key=f"S{shop_id}-O{order_ids[0]}-A{account_id}", status="creating"))

    batch = held_batch(runtime, shop_id, print_batch(runtime, shop_id, account_id, order_ids))

    assert fake_fan.awbs == {} and "being bought by another batch" in batch.failures[str(order_ids[0])]["message"]


def test_zpl_batches_are_one_raw_stream_with_a_label_per_order(runtime, fake_fan):
    shop_id, account_id, order_ids = open_ro_shop(runtime, fake_fan, orders=3)

    batch = held_batch(runtime, shop_id, print_batch(runtime, shop_id, account_id, order_ids, label_format="zpl",
                                                     label_size="100x150"))

    assert batch.print_file.count(b"^XA") == 3 and all(n.encode() in batch.print_file for n in fake_fan.awbs)


def shipment_rows(runtime, shop_id: int) -> list[Shipment]:
    with runtime.sessions() as session, shop_context(shop_id):
        return list(session.scalars(select(Shipment).order_by(Shipment.id)))


def set_status(runtime, shop_id: int, shipment_id: int, status: str) -> None:
    with runtime.sessions.begin() as session, shop_context(shop_id):
        session.get(Shipment, shipment_id).status = status


@pytest.mark.parametrize("ending", ["returned_to_sender", "cancelled"])
def test_an_order_whose_parcel_came_back_or_was_cancelled_is_shipped_again_under_a_new_reference(runtime, fake_fan, ending):
    shop_id, account_id, order_ids = open_ro_shop(runtime, fake_fan, orders=1)
    print_batch(runtime, shop_id, account_id, order_ids)
    first = shipment_rows(runtime, shop_id)[0]
    set_status(runtime, shop_id, first.id, ending)

    batch = held_batch(runtime, shop_id, print_batch(runtime, shop_id, account_id, order_ids))

    old, new = shipment_rows(runtime, shop_id)
    assert batch.status == "done" and len(fake_fan.awbs) == 2
    assert (old.status, new.status) == (ending, "created")
    assert new.idempotency_key == f"{old.idempotency_key}-R1" and new.tracking_numbers != old.tracking_numbers
    assert fake_fan.awbs[new.tracking_numbers[0]]["shipment"]["info"]["content"] == new.idempotency_key


def test_printing_a_reshipped_order_again_reprints_its_new_label_instead_of_buying_a_third(runtime, fake_fan):
    shop_id, account_id, order_ids = open_ro_shop(runtime, fake_fan, orders=1)
    print_batch(runtime, shop_id, account_id, order_ids)
    set_status(runtime, shop_id, shipment_rows(runtime, shop_id)[0].id, "returned_to_sender")
    print_batch(runtime, shop_id, account_id, order_ids)

    batch = held_batch(runtime, shop_id, print_batch(runtime, shop_id, account_id, order_ids))

    rows = shipment_rows(runtime, shop_id)
    assert len(rows) == 2 and len(fake_fan.awbs) == 2 and batch.status == "done"
    assert fake_fan.requests_to("/awb/label")[-1].query["awbs[]"] == rows[1].tracking_numbers


def test_a_second_return_gets_a_second_fresh_reference(runtime, fake_fan):
    shop_id, account_id, order_ids = open_ro_shop(runtime, fake_fan, orders=1)
    for _ in range(2):
        print_batch(runtime, shop_id, account_id, order_ids)
        set_status(runtime, shop_id, shipment_rows(runtime, shop_id)[-1].id, "returned_to_sender")

    print_batch(runtime, shop_id, account_id, order_ids)

    keys = [row.idempotency_key for row in shipment_rows(runtime, shop_id)]
    assert len(set(keys)) == 3 and keys[1].endswith("-R1") and keys[2].endswith("-R2") and len(fake_fan.awbs) == 3


@pytest.mark.parametrize("status", ["delivered", "returning", "in_transit"])
def test_an_order_whose_parcel_is_still_on_its_way_or_delivered_is_never_shipped_twice(runtime, fake_fan, status):
    shop_id, account_id, order_ids = open_ro_shop(runtime, fake_fan, orders=1)
    print_batch(runtime, shop_id, account_id, order_ids)
    set_status(runtime, shop_id, shipment_rows(runtime, shop_id)[0].id, status)

    batch = held_batch(runtime, shop_id, print_batch(runtime, shop_id, account_id, order_ids))

    assert len(shipment_rows(runtime, shop_id)) == 1 and len(fake_fan.awbs) == 1 and batch.done_count == 1


def test_a_round_of_creates_is_one_courier_call_per_fifty_orders(runtime, fake_fan):
    shop_id, account_id, order_ids = open_ro_shop(runtime, fake_fan, orders=120)

    batch = held_batch(runtime, shop_id, print_batch(runtime, shop_id, account_id, order_ids))

    creates = fake_fan.requests_to("/intern-awb", "POST")
    assert batch.status == "done" and len(fake_fan.awbs) == 120
    assert sorted(len(call.body["shipments"]) for call in creates) == [20, 50, 50]
    assert len(fake_fan.requests_to("/awb/label")) == 3


def test_a_bulk_create_whose_answer_was_lost_is_found_by_reference_without_buying_again(runtime, fake_fan):
    shop_id, account_id, order_ids = open_ro_shop(runtime, fake_fan, orders=30)
    fake_fan.fail_next(502, path="/intern-awb", after=True)  # FAN made all 30 AWBs; the answer got lost

    batch = held_batch(runtime, shop_id, print_batch(runtime, shop_id, account_id, order_ids))

    rows = shipment_rows(runtime, shop_id)
    assert batch.status == "done" and len(fake_fan.awbs) == 30
    assert sorted(n for row in rows for n in row.tracking_numbers) == sorted(fake_fan.awbs)
