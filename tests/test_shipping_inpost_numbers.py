"""InPost ShipX numbers its shipments after answering the create: the batch waits for the numbers, then prints."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from app.models import CourierAccount, Job, LabelBatch, Shipment, Signal
from app.shipping.batches import create_batch
from app.tenancy import shop_context
from tests.fake_couriers import fake_inpost, pdf_pages  # noqa: F401 (fixture)
from tests.shipping_kit import open_pl_shop, run_due_jobs_now, work

NEVER = 10**9


@pytest.fixture
def slow_shipx(fake_inpost):
    """ShipX that has not confirmed anything yet: every shipment stays `created`, without a number."""
    fake_inpost.confirm_after = NEVER
    return fake_inpost


def start_batch(runtime, shop_id: int, account_id: int, order_ids: list[int]) -> int:
    with runtime.sessions.begin() as session, shop_context(shop_id):
        batch_id = create_batch(session, shop_id, order_ids, session.get(CourierAccount, account_id)).id
    work(runtime)
    return batch_id


def state(runtime, shop_id: int, batch_id: int):
    with runtime.sessions() as session, shop_context(shop_id):
        return session.get(LabelBatch, batch_id), list(session.scalars(select(Shipment).order_by(Shipment.id)))


def test_a_shipment_without_its_number_yet_waits_unprinted_and_unannounced(runtime, slow_shipx):
    shop_id, account_id, order_ids = open_pl_shop(runtime, slow_shipx, orders=2, confirm_reads=1)

    batch, shipments = state(runtime, shop_id, start_batch(runtime, shop_id, account_id, order_ids))

    assert batch.status == "confirming" and batch.print_file is None
    assert [(s.status, s.tracking_numbers, s.next_poll_at) for s in shipments] == [("confirming", [], None)] * 2
    assert all(s.shipment_ref for s in shipments) and len(slow_shipx.shipments) == 2
    assert slow_shipx.requests_to(r"/v1/organizations/\d+/shipments/labels") == []
    with runtime.sessions() as session, shop_context(shop_id):
        assert session.scalars(select(Signal)).all() == []


def test_once_shipx_confirms_the_numbers_are_stored_announced_and_the_labels_printed(runtime, slow_shipx):
    shop_id, account_id, order_ids = open_pl_shop(runtime, slow_shipx, orders=3, confirm_reads=1)
    batch_id = start_batch(runtime, shop_id, account_id, order_ids)
    slow_shipx.confirm_after = 0  # ShipX has processed them meanwhile

    run_due_jobs_now(runtime)

    batch, shipments = state(runtime, shop_id, batch_id)
    numbers = [s.tracking_numbers[0] for s in shipments]
    assert (batch.status, batch.done_count) == ("done", 3) and len(pdf_pages(batch.print_file)) == 1
    assert numbers == [slow_shipx.shipments[int(s.shipment_ref)]["tracking_number"] for s in shipments]
    assert all(s.status == "created" and s.next_poll_at is not None for s in shipments)
    with runtime.sessions() as session, shop_context(shop_id):
        shipped = session.scalars(select(Signal).where(Signal.kind == "fulfillment_created")).all()
        write_backs = session.scalars(select(Job).where(Job.kind == "woocommerce.write_tracking")).all()
    assert sorted(s.payload["tracking_number"] for s in shipped) == sorted(numbers) and len(write_backs) == 3
    assert len(slow_shipx.shipments) == 3  # waiting bought nothing twice


def test_the_batch_keeps_asking_while_shipx_is_still_processing(runtime, slow_shipx):
    shop_id, account_id, order_ids = open_pl_shop(runtime, slow_shipx, orders=1, confirm_reads=1)
    batch_id = start_batch(runtime, shop_id, account_id, order_ids)

    run_due_jobs_now(runtime)
    run_due_jobs_now(runtime)

    batch, shipments = state(runtime, shop_id, batch_id)
    reads = slow_shipx.requests_to(rf"/v1/shipments/{shipments[0].shipment_ref}", "GET")
    assert batch.status == "confirming" and shipments[0].status == "confirming" and len(reads) == 3


def test_a_shipment_numbered_within_the_create_is_printed_at_once(runtime, fake_inpost):
    shop_id, account_id, order_ids = open_pl_shop(runtime, fake_inpost, orders=2)

    batch, shipments = state(runtime, shop_id, start_batch(runtime, shop_id, account_id, order_ids))

    assert batch.status == "done" and all(s.tracking_numbers for s in shipments)
    assert len(pdf_pages(batch.print_file)) == 1


def test_when_shipx_never_numbers_it_the_batch_ends_listing_the_order_and_a_retry_buys_nothing_new(runtime, slow_shipx):
    shop_id, account_id, order_ids = open_pl_shop(runtime, slow_shipx, orders=1, confirm_reads=1)
    batch_id = start_batch(runtime, shop_id, account_id, order_ids)

    for _ in range(12):
        run_due_jobs_now(runtime)

    batch, shipments = state(runtime, shop_id, batch_id)
    assert batch.status == "failed" and batch.print_file is None
    assert "has not given shipment" in batch.failures[str(order_ids[0])]["message"]
    assert shipments[0].status == "confirming" and len(slow_shipx.shipments) == 1


def test_the_batch_page_tells_staff_the_labels_are_waiting_for_the_couriers_numbers(app, runtime, slow_shipx):
    from app.models import Shop
    from app.shipping.warehouse import set_access_code
    from tests.test_shipping_warehouse import CODE

    shop_id, account_id, order_ids = open_pl_shop(runtime, slow_shipx, orders=1, confirm_reads=1)
    batch_id = start_batch(runtime, shop_id, account_id, order_ids)
    with runtime.sessions.begin() as session:
        set_access_code(session.get(Shop, shop_id), CODE)
    client = app.test_client()
    client.post(f"/warehouse/{shop_id}/login", data={"code": CODE})

    page = client.get(f"/warehouse/{shop_id}/batches/{batch_id}").get_data(as_text=True)
    progress = client.get(f"/warehouse/{shop_id}/batches/{batch_id}.json").get_json()

    assert "has not numbered" in page and progress["status"] == "confirming" and progress["finished"] is False
