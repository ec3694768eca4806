"""The courier's own handover printout, downloadable from the print station next to our handover list: fetched
through the connector once and kept; where the courier issues none, our list stays the document."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from app.models.shipping import CourierDocument
from app.tenancy import shop_context
from tests.fake_couriers import A4, fake_dpd_pl, fake_fan, fake_inpost, pdf_pages  # noqa: F401 (fixtures)
from tests.shipping_kit import open_pl_shop, open_ro_shop
from tests.test_shipping_pickup_cancel import cancel, open_dpd_pl_shop
from tests.test_shipping_pickups import ask, pickups, printed_batch


@pytest.fixture
def runtime(app):
    return app.extensions["companion"]


def download(client, shop_id: int, batch_id: int):
    return client.get(f"/warehouse/{shop_id}/batches/{batch_id}/handover/courier")


def documents(runtime, shop_id: int) -> list[CourierDocument]:
    with runtime.sessions() as session, shop_context(shop_id):
        return list(session.scalars(select(CourierDocument).order_by(CourierDocument.id)))


def test_the_inpost_dispatch_order_printout_downloads_next_to_our_handover_list(client, runtime, fake_inpost):
    shop_id, account_id, order_ids = open_pl_shop(runtime, fake_inpost, orders=2)
    csrf, batch_id = printed_batch(client, runtime, shop_id, account_id, order_ids)
    ask(client, shop_id, batch_id, csrf)
    [asked] = pickups(runtime, shop_id)

    page = client.get(f"/warehouse/{shop_id}/batches/{batch_id}").get_data(as_text=True)
    first, again = download(client, shop_id, batch_id), download(client, shop_id, batch_id)

    assert 'id="handover"' in page and 'id="courier-handover"' in page
    assert first.status_code == 200 and first.mimetype == "application/pdf"
    assert f'inpost-handover-batch-{batch_id}-{asked.pickup_ref}.pdf' in first.headers["Content-Disposition"]
    assert pdf_pages(first.data) == [pytest.approx(A4, abs=1)] and again.data == first.data
    assert len(fake_inpost.requests_to(r"/v1/organizations/\d+/dispatch_orders/printouts")) == 1  # kept, not refetched
    [kept] = documents(runtime, shop_id)
    assert kept.courier_pickup_id == asked.id and kept.reference == asked.pickup_ref


def test_before_a_pickup_is_requested_the_inpost_printout_is_not_offered(client, runtime, fake_inpost):
    shop_id, account_id, order_ids = open_pl_shop(runtime, fake_inpost, orders=1)
    csrf, batch_id = printed_batch(client, runtime, shop_id, account_id, order_ids)

    page = client.get(f"/warehouse/{shop_id}/batches/{batch_id}").get_data(as_text=True)
    answer = download(client, shop_id, batch_id)

    assert 'id="courier-handover"' not in page
    assert answer.status_code == 409 and "request the pickup first" in answer.get_data(as_text=True)


def test_a_cancelled_pickups_printout_is_dropped_and_no_longer_offered(client, runtime, fake_inpost):
    shop_id, account_id, order_ids = open_pl_shop(runtime, fake_inpost, orders=1)
    csrf, batch_id = printed_batch(client, runtime, shop_id, account_id, order_ids)
    ask(client, shop_id, batch_id, csrf)
    [asked] = pickups(runtime, shop_id)
    download(client, shop_id, batch_id)

    cancel(client, shop_id, asked.id, csrf)
    answer = download(client, shop_id, batch_id)

    assert documents(runtime, shop_id) == [] and answer.status_code == 409


def test_the_couriers_refusal_is_shown_in_its_own_words(client, runtime, fake_inpost):
    shop_id, account_id, order_ids = open_pl_shop(runtime, fake_inpost, orders=1)
    csrf, batch_id = printed_batch(client, runtime, shop_id, account_id, order_ids)
    ask(client, shop_id, batch_id, csrf)
    fake_inpost.fail_next(400, path=r"/v1/organizations/\d+/dispatch_orders/printouts",
                          body={"status": 400, "error": "invalid_action", "message": "Printout is not available yet.",
                                "details": {}})

    answer = download(client, shop_id, batch_id)

    assert answer.status_code == 502 and "Printout is not available yet." in answer.get_data(as_text=True)
    assert documents(runtime, shop_id) == []


def test_the_dpd_polska_protocol_needs_no_pickup_and_is_kept_for_the_same_parcels(client, runtime, fake_dpd_pl):
    shop_id, account_id, order_ids = open_dpd_pl_shop(runtime, fake_dpd_pl, orders=2)
    _, batch_id = printed_batch(client, runtime, shop_id, account_id, order_ids)

    first, again = download(client, shop_id, batch_id), download(client, shop_id, batch_id)

    assert first.status_code == 200 and first.data.startswith(b"%PDF") and again.data == first.data
    assert len(fake_dpd_pl.protocols) == 1 and len(fake_dpd_pl.protocols[0]) == 2
    assert "PROT000001" in first.headers["Content-Disposition"]


def test_fan_courier_issues_none_and_our_handover_list_stays_the_document(client, runtime, fake_fan):
    shop_id, account_id, order_ids = open_ro_shop(runtime, fake_fan, orders=1)
    csrf, batch_id = printed_batch(client, runtime, shop_id, account_id, order_ids)
    ask(client, shop_id, batch_id, csrf)

    page = client.get(f"/warehouse/{shop_id}/batches/{batch_id}").get_data(as_text=True)
    answer = download(client, shop_id, batch_id)

    assert 'id="handover"' in page and 'id="courier-handover"' not in page
    assert answer.status_code == 409 and "hand the driver our handover list" in answer.get_data(as_text=True)


def test_the_couriers_document_number_cannot_break_out_of_the_file_name(client, runtime, fake_dpd_pl):
    shop_id, account_id, order_ids = open_dpd_pl_shop(runtime, fake_dpd_pl, orders=1)
    _, batch_id = printed_batch(client, runtime, shop_id, account_id, order_ids)
    fake_dpd_pl.protocol_ids.append('P/1"; filename="evil.exe')

    answer = download(client, shop_id, batch_id)

    assert answer.status_code == 200
    assert answer.headers["Content-Disposition"] == \
        f"attachment; filename=dpd_pl-handover-batch-{batch_id}-P_1_filename_evil.exe.pdf"
    [kept] = documents(runtime, shop_id)
    assert kept.reference == 'P/1"; filename="evil.exe'  # kept as the courier wrote it; only the name is made safe


def test_a_failing_courier_is_asked_twice_at_most_while_staff_wait_for_the_printout(client, runtime, fake_inpost):
    shop_id, account_id, order_ids = open_pl_shop(runtime, fake_inpost, orders=1)
    csrf, batch_id = printed_batch(client, runtime, shop_id, account_id, order_ids)
    ask(client, shop_id, batch_id, csrf)
    path = r"/v1/organizations/\d+/dispatch_orders/printouts"
    fake_inpost.fail_next(503, path=path, times=10)

    answer = download(client, shop_id, batch_id)

    assert answer.status_code == 502 and len(fake_inpost.requests_to(path)) == 2


def test_a_rate_limited_courier_answers_503_with_its_retry_after(client, runtime, fake_inpost):
    shop_id, account_id, order_ids = open_pl_shop(runtime, fake_inpost, orders=1)
    csrf, batch_id = printed_batch(client, runtime, shop_id, account_id, order_ids)
    ask(client, shop_id, batch_id, csrf)
    path = r"/v1/organizations/\d+/dispatch_orders/printouts"
    fake_inpost.fail_next(429, path=path, headers={"Retry-After": "20"}, times=10)

    answer = download(client, shop_id, batch_id)

    assert answer.status_code == 503 and answer.headers["Retry-After"] == "20"
    assert len(fake_inpost.requests_to(path)) == 1 and documents(runtime, shop_id) == []
