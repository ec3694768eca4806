"""The snippet in headless Chromium on a loopback storefront: what a shopper does, and what the service then holds.

Debian's Chromium (/usr/bin/chromium) through Playwright; no browser is downloaded. Outside CI a missing
Chromium skips these tests with the reason; under CI=true it is a failure (.ci/run installs it).
"""
from __future__ import annotations

import socket
import time
from decimal import Decimal
from urllib.parse import parse_qsl, urlsplit

import pytest
from sqlalchemy import select

from app.models import Cart, CartLine, Consent, Customer, DoubleOptIn, PushOptIn, PushSubscription, StorefrontEvent
from app.storefront import cart_links
from app.storefront.optin import confirmation_url
from app.tenancy import shop_context
from tests.conftest import wait_until
from tests.factories import make_shop
from tests.storefront_site import PRODUCT, FakeStorefront, ServedApp

FORM = {"id": "newsletter", "type": "exit_intent", "consent_version": "nl-2026-11", "arm_seconds": 0}
VAPID_PUBLIC_KEY = "BEl62iUYgUivxIkv69yViEuiBIa-Ib9-SkvMeAtA3LFgDzkrxZJjSgSnfckjBJuBkr3qBUYIHBQFLXYp5Nksh8U"



@pytest.fixture
def database_url(sqlite_database_url) -> str:
    """SQLite only: the HTTP tests already run on both databases; what these add is the browser."""
    return sqlite_database_url


@pytest.fixture
def service(make_settings):
    from app import create_app

    app = create_app(make_settings())
    served = ServedApp(app)
    served.runtime = app.extensions["companion"]
    yield served
    served.close()
    served.runtime.close()


def open_shop(service, platform: str, stubs: str = "", **storefront) -> tuple[FakeStorefront, dict]:
    """A loopback storefront of `platform` carrying the snippet, and the shop the service holds for it."""
    site = FakeStorefront(platform, snippet_src=f"{service.url}/s/snippet.js", stubs=stubs)
    with service.runtime.sessions.begin() as session:
        shop = make_shop(session, site.host, platform=platform, locale="pl",
                         settings={"storefront": {"forms": [FORM], **storefront}})
        site.key = shop.public_key
        return site, {"id": shop.id, "key": shop.public_key}


def held(service, shop_id: int, model):
    with service.runtime.sessions() as session, shop_context(shop_id):
        return session.scalars(select(model).order_by(model.id)).all()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    opened = context.new_page()
    opened.errors = []
    opened.on("pageerror", lambda error: opened.errors.append(str(error)))
    yield opened
    context.close()


def snippet_ready(page):
    """The snippet has its shop's configuration and has set everything up."""
    page.wait_for_function("() => window.StoreCompanion && window.StoreCompanion.ready === true")


@pytest.mark.parametrize("platform", ["woocommerce", "shopify"])
def test_a_cart_built_in_the_browser_is_stored_with_its_recovery_link_and_the_checkout_email(service, page, platform):
    site, shop = open_shop(service, platform)
    try:
        page.goto(f"{site.origin}/product/mug")
        snippet_ready(page)
        page.click("#add")
        page.wait_for_function("() => document.getElementById('status').textContent === 'added'")
        carts = wait_until(lambda: [c for c in held(service, shop["id"], Cart) if c.total > 0], timeout=20, message="cart stored")
        page.click("#to-checkout")
        page.fill("#billing_email", "ana@example.com")
        page.click("#billing_first_name")  # the email field loses focus
        wait_until(lambda: held(service, shop["id"], Customer), timeout=20, message="contact stored")
        page.evaluate("() => window.StoreCompanion.flush()")
        wait_until(lambda: {"page_view", "product_view", "add_to_cart"} <= {e.kind for e in held(service, shop["id"], StorefrontEvent)},
                   timeout=20, message="events stored")
    finally:
        site.close()

    [cart] = held(service, shop["id"], Cart)
    [line] = held(service, shop["id"], CartLine)
    [customer] = held(service, shop["id"], Customer)
    visitor = page.evaluate("() => window.StoreCompanion.visitorId()")
    assert (cart.visitor_id, cart.total, cart.currency, line.quantity, line.unit_price) == (visitor, Decimal("29.99"), "PLN", 1, Decimal("29.99"))
    if platform == "shopify":
        assert cart.recovery_url == f"{site.origin}/cart/{PRODUCT['variant_id']}:1"
    else:
        lines = f"{PRODUCT['product_id']}:1"
        issued = int(dict(parse_qsl(urlsplit(cart.recovery_url).query))[cart_links.ISSUED_PARAM])
        assert abs(time.time() - issued) < 300  # dated when the cart was captured
        assert cart.recovery_url == (f"{site.origin}/?store_companion_cart={lines}&store_companion_issued={issued}"
                                     f"&store_companion_lines=1&store_companion_sig="
                                     + cart_links.sign(service.runtime.settings.secret_key, shop["key"], issued, 1, lines))
    assert (customer.email, cart.customer_id, cart.email) == ("ana@example.com", customer.id, "ana@example.com")
    views = [e for e in held(service, shop["id"], StorefrontEvent) if e.kind == "product_view"]
    assert views[0].product_platform_id == str(PRODUCT["product_id"])
    assert page.errors == []


def test_the_exit_intent_popup_signs_up_and_the_double_opt_in_link_confirms(service, page):
    site, shop = open_shop(service, "woocommerce")
    try:
        page.goto(f"{site.origin}/")
        snippet_ready(page)
        page.mouse.move(400, 200)
        page.dispatch_event("html", "mouseout", {"clientY": -2, "relatedTarget": None})
        dialog = page.get_by_role("dialog")
        dialog.wait_for()
        assert dialog.get_attribute("aria-modal") == "true"
        assert page.evaluate("() => document.activeElement.type") == "email"
        page.get_by_label("Adres e-mail").fill("ola@example.com")
        page.get_by_label("Wyrażam zgodę", exact=False).check()
        page.get_by_role("button", name="Zapisz mnie").click()
        page.wait_for_selector("[data-sc-done]")
        [pending] = wait_until(lambda: held(service, shop["id"], DoubleOptIn), timeout=20, message="sign-up stored")

        link = confirmation_url(service.runtime.settings, pending).replace(service.runtime.settings.public_url, service.url)
        page.goto(link)
        assert "potwierdzona" in page.text_content("h1")
    finally:
        site.close()

    states = [(c.state, c.form_text_version) for c in held(service, shop["id"], Consent)]
    assert states == [("pending", "nl-2026-11"), ("granted", "nl-2026-11")]
    assert held(service, shop["id"], Customer)[0].email == "ola@example.com"
    assert page.errors == []


def test_an_embedded_form_renders_in_its_placeholder_in_the_shops_language_and_signs_up(service, page):
    embedded = {"id": "footer", "type": "embedded", "consent_version": "footer-1",
                "texts": {"pl": {"title": "Newsletter sklepu"}}}
    site, shop = open_shop(service, "woocommerce", forms=[embedded])
    try:
        page.goto(f"{site.origin}/")
        snippet_ready(page)
        form = page.locator('[data-store-companion-form="footer"] [data-sc-form="footer"]')
        form.wait_for()
        title = form.locator("h2").text_content()
        consent_version = form.locator("[data-consent-version]").get_attribute("data-consent-version")
        form.get_by_label("Adres e-mail").fill("jan@example.com")
        form.get_by_role("button", name="Zapisz mnie").click()
        refused_without_consent = form.locator(".sc-m").text_content()
        form.get_by_label("Wyrażam zgodę", exact=False).check()
        form.get_by_role("button", name="Zapisz mnie").click()
        form.locator("[data-sc-done]").wait_for()
    finally:
        site.close()

    assert (title, consent_version) == ("Newsletter sklepu", "footer-1")
    assert refused_without_consent == "Zaznacz zgodę."
    [pending] = held(service, shop["id"], DoubleOptIn)
    assert (pending.form_id, pending.form_text_version, pending.locale) == ("footer", "footer-1", "pl")
    assert page.errors == []


def test_the_popup_closes_on_escape_returns_focus_and_is_not_shown_again_soon(service, page):
    site, shop = open_shop(service, "woocommerce")
    try:
        page.goto(f"{site.origin}/")
        snippet_ready(page)
        page.dispatch_event("html", "mouseout", {"clientY": -2, "relatedTarget": None})
        page.get_by_role("dialog").wait_for()
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")
        focus_inside = page.evaluate("() => !!document.activeElement.closest('[role=dialog]')")
        page.keyboard.press("Escape")
        closed = page.get_by_role("dialog").count() == 0
        page.reload()
        snippet_ready(page)
        page.dispatch_event("html", "mouseout", {"clientY": -2, "relatedTarget": None})
        page.wait_for_timeout(300)
        shown_again = page.get_by_role("dialog").count()
    finally:
        site.close()

    assert focus_inside and closed
    assert shown_again == 0
    assert page.errors == []


def test_on_a_touch_screen_a_quick_scroll_back_up_opens_the_exit_intent_popup(service, browser):
    site, shop = open_shop(service, "woocommerce")
    context = browser.new_context(is_mobile=True, has_touch=True, viewport={"width": 390, "height": 800})
    phone = context.new_page()
    try:
        phone.goto(f"{site.origin}/")
        snippet_ready(phone)
        # Both scrolls happen inside the page, one right after the other's scroll event, as a thumb flick would:
        # a round trip from the test between them could make the flick look slow on a loaded machine.
        no_popup_while_reading = phone.evaluate("""async () => {
            const scrolled = () => new Promise(done => window.addEventListener("scroll", done, {once: true}));
            let seen = scrolled(); window.scrollTo(0, 1500); await seen;
            const reading = document.querySelector("[role=dialog]") === null;
            seen = scrolled(); window.scrollTo(0, 900); await seen;
            return reading;
        }""")
        phone.get_by_role("dialog").wait_for()
    finally:
        context.close()
        site.close()

    assert no_popup_while_reading


PUSH_STUBS = """
(function () {
  var sub = {endpoint: "https://push.example.net/send/abc123",
             toJSON: function () { return {endpoint: this.endpoint, keys: {p256dh: "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM", auth: "tBHItJI5svbpez7KI4CCXg"}}; }};
  var reg = {active: {}, pushManager: {
    getSubscription: function () { return Promise.resolve(localStorage.getItem("stub_sub") ? sub : null); },
    subscribe: function (options) { window.__subscribeOptions = options; localStorage.setItem("stub_sub", "1"); return Promise.resolve(sub); }}};
  Object.defineProperty(navigator, "serviceWorker", {configurable: true, value: {
    register: function (path) { window.__swPath = path; return Promise.resolve(reg); },
    getRegistration: function () { return Promise.resolve(localStorage.getItem("stub_sub") ? reg : null); }}});
  window.PushManager = window.PushManager || function () {};
  function FakeNotification() {}
  FakeNotification.permission = localStorage.getItem("stub_permission") || "default";
  FakeNotification.requestPermission = function () { window.__asked = true; FakeNotification.permission = "granted"; return Promise.resolve("granted"); };
  window.Notification = FakeNotification;
})();
"""


def test_push_asks_softly_first_then_posts_the_subscription_and_a_browser_unsubscribe_is_reflected(service, page):
    push = {"enabled": True, "vapid_public_key": VAPID_PUBLIC_KEY, "consent_version": "push-2026-11", "delay_seconds": 0}
    site, shop = open_shop(service, "woocommerce", stubs=PUSH_STUBS, push=push)
    try:
        page.goto(f"{site.origin}/")
        page.wait_for_selector("#sc-push")
        asked_before_yes = page.evaluate("() => !!window.__asked")
        page.get_by_role("button", name="Tak, powiadamiaj").click()
        [subscription] = wait_until(lambda: held(service, shop["id"], PushSubscription), timeout=20, message="subscription stored")
        sw_path = page.evaluate("() => window.__swPath")
        key_length = page.evaluate("() => window.__subscribeOptions.applicationServerKey.length")

        # The visitor blocks notifications in the browser settings; the next page view reports it.
        page.evaluate("() => { localStorage.setItem('stub_permission', 'denied'); localStorage.removeItem('stub_sub'); }")
        page.reload()
        wait_until(lambda: held(service, shop["id"], PushSubscription)[0].status == "unsubscribed", timeout=20,
                   message="unsubscribe reflected")
    finally:
        site.close()

    assert asked_before_yes is False
    assert (sw_path, key_length) == ("/?store_companion_sw=1", 65)
    assert subscription.endpoint == "https://push.example.net/send/abc123"
    [opt_in] = held(service, shop["id"], PushOptIn)
    assert opt_in.form_text_version == "push-2026-11" and opt_in.revoked_at is not None
    assert page.errors == []


def test_the_service_worker_installs_from_the_shops_own_domain(service, page):
    site, _shop = open_shop(service, "woocommerce")
    try:
        page.goto(f"{site.origin}/")
        state = page.evaluate("""async () => {
            const reg = await navigator.serviceWorker.register('/sc-sw.js');
            const worker = reg.installing || reg.waiting || reg.active;
            if (worker.state !== 'activated') {
                await new Promise(ok => worker.addEventListener('statechange', () => worker.state === 'activated' && ok()));
            }
            return [worker.state, reg.scope];
        }""")
    finally:
        site.close()

    assert state == ["activated", f"{site.origin}/"]
    assert page.errors == []


def test_a_page_on_another_domain_using_the_shops_key_gets_nothing_stored(service, page):
    shops_site, shop = open_shop(service, "woocommerce")
    copycat = FakeStorefront("woocommerce", snippet_src=f"{service.url}/s/snippet.js", key=shop["key"])
    try:
        page.goto(f"{copycat.origin}/product/mug")
        page.click("#add")
        page.wait_for_function("() => document.getElementById('status').textContent === 'added'")
        page.wait_for_timeout(500)
        configured = page.evaluate("() => window.StoreCompanion.ready === true")
    finally:
        copycat.close()
        shops_site.close()

    assert configured is False  # the service did not let a foreign origin read the shop's configuration
    assert held(service, shop["id"], StorefrontEvent) == [] and held(service, shop["id"], Cart) == []
    assert page.errors == []


def test_the_shops_page_works_when_the_snippet_cannot_be_loaded(page):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    site = FakeStorefront("woocommerce", snippet_src=f"http://127.0.0.1:{dead_port}/s/snippet.js", key="any")
    try:
        page.goto(f"{site.origin}/product/mug")
        page.click("#add")
        page.wait_for_function("() => document.getElementById('status').textContent === 'added'")
    finally:
        site.close()

    assert page.errors == []


def test_the_snippet_raises_no_error_in_the_page_when_its_service_answers_with_failures(page):
    site = FakeStorefront("woocommerce", key="any", broken_service=True)
    site.snippet_src = f"{site.origin}/s/snippet.js"
    try:
        page.goto(f"{site.origin}/product/mug")
        snippet_ready(page)
        page.get_by_role("dialog").wait_for()  # the timed form still opens from the config
        page.get_by_label("E", exact=True).fill("ana@example.com")
        page.get_by_label("C", exact=True).check()
        page.get_by_role("button", name="Go").click()
        page.wait_for_function("() => document.querySelector('.sc-m').textContent === 'Err'")
        page.keyboard.press("Escape")
        page.click("#add")
        page.wait_for_function("() => document.getElementById('status').textContent === 'added'")
        page.click("#to-checkout")
        page.fill("#billing_email", "ana@example.com")
        page.click("#billing_first_name")
        page.evaluate("() => window.StoreCompanion.flush()")
        page.wait_for_timeout(300)
        posts = [r for r in site.requests if r.startswith("POST /s/")]
    finally:
        site.close()

    assert page.errors == []
    assert any(r.startswith("POST /s/cart") for r in posts) and any(r.startswith("POST /s/signup") for r in posts)


GPC_STUB = "Object.defineProperty(navigator, 'globalPrivacyControl', {configurable: true, value: true});"


def test_under_global_privacy_control_nothing_is_tracked_until_the_consent_call_grants_it(service, page):
    site, shop = open_shop(service, "woocommerce", stubs=GPC_STUB, honor_dnt=True)
    try:
        page.goto(f"{site.origin}/product/mug")
        snippet_ready(page)
        page.click("#add")
        page.wait_for_function("() => document.getElementById('status').textContent === 'added'")
        page.evaluate("() => window.StoreCompanion.flush()")
        page.wait_for_timeout(500)
        before_consent = len(held(service, shop["id"], StorefrontEvent)), len(held(service, shop["id"], Cart))
        stored_id_before_consent = page.evaluate("() => localStorage.getItem('sc_vid')")

        page.evaluate("() => window.StoreCompanion.consent(true)")
        wait_until(lambda: held(service, shop["id"], StorefrontEvent), timeout=20, message="events after consent")
        kinds = {e.kind for e in held(service, shop["id"], StorefrontEvent)}
    finally:
        site.close()

    assert before_consent == (0, 0)
    assert stored_id_before_consent is None
    assert {"page_view", "product_view"} <= kinds
    assert page.errors == []
