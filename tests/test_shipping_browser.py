"""The print station in headless Chromium: sign in with the code, select orders, print, download the PDF; request a
courier pickup and call it off.

Debian's Chromium (/usr/bin/chromium) through Playwright, as in test_storefront_browser.py; a missing browser
skips outside CI and fails under CI=true.
"""
from __future__ import annotations

import threading

import pytest

from app.jobs.executors.local import LocalWorker
from app.models import Shop
from app.shipping.warehouse import set_access_code
from tests.fake_couriers import fake_fan, pdf_pages  # noqa: F401 (fixture)
from tests.shipping_kit import open_ro_shop
from tests.storefront_site import ServedApp

CODE = "depozit-2026"


@pytest.fixture
def database_url(sqlite_database_url) -> str:
    """SQLite only: the HTTP tests already run on both databases; what these add is the browser."""
    return sqlite_database_url


@pytest.fixture
def service(make_settings):
    """The app on a loopback port, with a worker thread running jobs as the real `worker` process would."""
    from app import create_app

    app = create_app(make_settings())
    served = ServedApp(app)
    served.runtime = app.extensions["companion"]
    worker = LocalWorker(served.runtime)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    yield served
    worker.stopping.set()
    thread.join(timeout=10)
    served.close()
    served.runtime.close()


def test_staff_sign_in_select_orders_print_and_download_one_pdf(browser, service, fake_fan):
    shop_id, _, _ = open_ro_shop(service.runtime, fake_fan, orders=6, bad_postcodes=(5,))
    with service.runtime.sessions.begin() as session:
        set_access_code(session.get(Shop, shop_id), CODE)
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()

    page.goto(f"{service.url}/warehouse/{shop_id}/")
    page.fill("input[name=code]", CODE)
    page.click("#login button")
    page.check("#select-all")
    page.select_option("select[name=size]", "a4_4up")
    page.click("#print")
    page.wait_for_selector("#downloads:not([hidden])", timeout=60_000)
    failures = page.inner_text("#failure-list")
    with page.expect_download() as download_info:
        page.click("#download")
    content = open(download_info.value.path(), "rb").read()
    done = page.inner_text("#done")
    context.close()

    assert done == "5" and "#1005" in failures and "zip code is invalid" in failures
    assert len(pdf_pages(content)) == 2


def test_staff_request_a_pickup_then_call_it_off_from_the_batch_page(browser, service, fake_fan):
    shop_id, _, _ = open_ro_shop(service.runtime, fake_fan, orders=2)
    with service.runtime.sessions.begin() as session:
        set_access_code(session.get(Shop, shop_id), CODE)
    page = browser.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # "Call this pickup off at the courier?"

    page.goto(f"{service.url}/warehouse/{shop_id}/")
    page.fill("input[name=code]", CODE)
    page.click("#login button")
    page.check("#select-all")
    page.click("#print")
    page.wait_for_selector("#downloads:not([hidden])", timeout=60_000)
    page.reload()  # the pickup section shows once the batch has printed parcels
    page.click("#request-pickup")
    ordered = page.inner_text("#pickup .pickup-ref")
    page.click("#pickup .cancel-pickup")
    page.wait_for_selector("#pickup .pickup-cancelled")
    shown = page.inner_text("#pickup")
    page.close()

    assert fake_fan.courier_orders[ordered]["cancelled"] and "cancelled" in shown
