"""The WooCommerce plugin (connectors/woocommerce/store-companion.php) run under PHP with a WordPress shim and a
WooCommerce shim (tests/fixtures/wordpress/): it puts the snippet on every page with the shop key, never
render-blocking; serves the service worker on the shop's own domain; turns the signed cart recovery links the service
makes back into the same cart; and keeps its settings page to administrators."""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from app.storefront import cart_links
from app.storefront.carts import woocommerce_cart
from tests.conftest import IN_CI, wait_until

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "connectors" / "woocommerce" / "store-companion.php"
SHIM = ROOT / "tests" / "fixtures" / "wordpress"
SERVICE = "https://companion.example.com"
KEY = "pk_Sklep-2026_abc"
PHP = shutil.which("php")
SECRET = "the service's SECRET_KEY"
VISITOR = "v1a2b3c4d5e6f7g8h9i0"


@pytest.fixture(autouse=True)
def _php():
    if PHP is None:
        message = "php is not installed (apt-get install php-cli): the WordPress plugin cannot be run"
        if IN_CI:
            pytest.fail(f"{message}; under CI=true it must (see .ci/run)")
        pytest.skip(message)


class Site:
    """One `php -S` WordPress site; `state` is the shim's JSON (options, users, catalogue, cart, log of calls)."""

    def __init__(self, url: str, state_file: Path):
        self.url, self.state_file = url, state_file

    @property
    def state(self) -> dict:
        return json.loads(self.state_file.read_text())

    def calls(self, name: str) -> list[list]:
        return [call[1:] for call in self.state["log"] if call[0] == name]

    def cart(self) -> list[dict]:
        cart = self.state.get("cart") or {}
        return sorted(cart.values() if isinstance(cart, dict) else cart, key=lambda item: item["product_id"])

    def get(self, path: str, user: int | None = None, **kwargs) -> requests.Response:
        return requests.get(self.url + path, cookies=_as(user), allow_redirects=False, timeout=10, **kwargs)

    def post(self, path: str, data: dict, user: int | None = None) -> requests.Response:
        return requests.post(self.url + path, data=data, cookies=_as(user), allow_redirects=False, timeout=10)


def _as(user: int | None) -> dict[str, str]:
    return {"wp_shim_user": str(user)} if user else {}


@pytest.fixture
def wordpress(tmp_path):
    """Start `php -S` serving the shim with the plugin; call it with the plugin's saved option and more shim state."""
    started = []

    def start(option: dict | None, legacy_scripts: bool = False, **state) -> Site:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        state_file = tmp_path / f"wordpress-{port}.json"
        options = {**state.pop("options", {}), **({"store_companion": option} if option is not None else {})}
        state_file.write_text(json.dumps({"options": options, **state}))
        env = {**os.environ, "WP_SHIM_PLUGIN": str(PLUGIN), "WP_SHIM_STATE": str(state_file),
               "WP_SHIM_LEGACY_SCRIPTS": "1" if legacy_scripts else "0"}
        process = subprocess.Popen([PHP, "-S", f"127.0.0.1:{port}", str(SHIM / "router.php")], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        started.append(process)
        wait_until(lambda: _answers(port) or process.poll() is not None, timeout=20, message="php -S answers")
        assert process.poll() is None, process.stderr.read().decode(errors="replace")
        return Site(f"http://127.0.0.1:{port}", state_file)

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=10)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class _Scripts(HTMLParser):
    def __init__(self):
        super().__init__()
        self.found: list[dict[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.found.append(dict(attrs))


def scripts_on(page: str) -> list[dict[str, str | None]]:
    parser = _Scripts()
    parser.feed(page)
    return parser.found


CONFIGURED = {"service_url": SERVICE + "/", "public_key": KEY}


def test_the_plugin_file_is_valid_php():
    result = subprocess.run([PHP, "-l", str(PLUGIN)], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stdout + result.stderr


def test_every_page_loads_the_snippet_async_with_the_shop_key(wordpress):
    page = wordpress(CONFIGURED).get("/")

    assert page.status_code == 200
    [snippet] = scripts_on(page.text)
    assert snippet["src"] == f"{SERVICE}/s/snippet.js"
    assert snippet["data-key"] == KEY
    assert "async" in snippet  # never holds up rendering


def test_on_wordpress_before_loading_strategies_the_plugin_still_makes_the_tag_async(wordpress):
    page = wordpress(CONFIGURED, legacy_scripts=True).get("/")

    [snippet] = scripts_on(page.text)
    assert (snippet["src"], snippet["data-key"]) == (f"{SERVICE}/s/snippet.js", KEY)
    assert "async" in snippet


def test_a_key_is_written_into_the_page_only_as_the_letters_a_key_can_hold(wordpress):
    page = wordpress({"service_url": SERVICE, "public_key": 'pk_1"><script>alert(1)</script>'}).get("/")

    [snippet] = scripts_on(page.text)
    assert snippet["data-key"] == "pk_1scriptalert1script"


def test_the_service_worker_is_served_on_the_shops_domain_for_the_whole_site(wordpress):
    response = wordpress(CONFIGURED).get("/?store_companion_sw=1")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/javascript; charset=utf-8"
    assert response.headers["Service-Worker-Allowed"] == "/"
    assert "no-store" in response.headers["Cache-Control"]  # a new service address reaches browsers at once
    config_line, import_line = response.text.strip().splitlines()
    assert config_line.startswith("self.STORE_COMPANION=") and config_line.endswith(";")
    assert json.loads(config_line[len("self.STORE_COMPANION="):-1]) == {"key": KEY, "api": SERVICE}
    assert import_line.startswith("importScripts(") and import_line.endswith(");")
    assert json.loads(import_line[len("importScripts("):-2]) == f"{SERVICE}/s/sw.js"


def test_before_the_plugin_is_set_up_it_adds_nothing_and_serves_no_service_worker(wordpress):
    base = wordpress(None)

    page = base.get("/")
    worker = base.get("/?store_companion_sw=1")

    assert page.status_code == 200 and scripts_on(page.text) == []
    assert worker.status_code == 404


# --- cart recovery links --------------------------------------------------------------------------------------------

STORE_API_CART = json.loads((SHIM / "store-api-cart.json").read_text())
# The shop's catalogue: a mug, and a T-shirt variation whose size and print were "any" (chosen by the visitor)
# and whose colour is fixed. Sizes are a taxonomy attribute: the Store API reports the term's name, the cart its slug.
CATALOGUE = {
    "products": {
        "12": {"type": "simple"},
        "30": {"type": "variable"},
        "31": {"type": "variation", "parent_id": 30,
               "attributes": {"attribute_pa_size": "", "attribute_pa_color": "blue", "attribute_nadruk": ""}},
        "55": {"type": "simple"},
    },
    "terms": {"pa_size": [{"name": "M", "slug": "m"}, {"name": "XL", "slug": "extra-large"}],
              "pa_color": [{"name": "Niebieski", "slug": "blue"}]},
}
THE_LEFT_CART = [
    {"product_id": 12, "variation_id": 0, "variation": [], "quantity": 2},
    {"product_id": 30, "variation_id": 31, "quantity": 1,
     "variation": {"attribute_pa_size": "extra-large", "attribute_pa_color": "blue", "attribute_nadruk": "Zosia & Kot: 1/2"}},
]
# What the visitor has in the cart now, in this browser: a tampered link must leave it alone.
CURRENT_CART = {"cart": {"held": {"product_id": 55, "variation_id": 0, "variation": [], "quantity": 1}}}


class FakeService:
    """The service's `/s/cart-link-key`, counting how often the shop asks; `down` makes it answer 503."""

    def __init__(self, secret: str = SECRET):
        self.asked, self.down = 0, False
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args):
                pass

            def do_GET(self):
                service.asked += 1
                ok = self.path == "/s/cart-link-key" and not service.down
                body = json.dumps({"alg": "Ed25519", "key": cart_links.public_key(secret)}).encode() if ok else b"{}"
                self.send_response(200 if ok else 503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def service():
    fake = FakeService()
    yield fake
    fake.close()


@pytest.fixture
def shop(wordpress, service):
    return wordpress({"service_url": service.url, "public_key": KEY}, **CATALOGUE, **CURRENT_CART)


def link_for(site: Site, shop_key: str = KEY, secret: str = SECRET, raw: dict = STORE_API_CART,
             age: dt.timedelta = dt.timedelta(0)) -> str:
    """The recovery link the service stores for this Store API cart when it is captured (`age` ago), as a path on `site`."""
    captured = dt.datetime.now(dt.timezone.utc) - age
    url = woocommerce_cart(raw, site.url, VISITOR, shop_key, secret, now=captured).recovery_url
    assert url.startswith(site.url + "/?")
    return url[len(site.url):]


def param(link: str, name: str) -> str:
    return dict(parse_qsl(urlsplit(link).query))[name]


def signed_parts(link: str) -> tuple[int, int, str, str]:
    """What cart_links.verify() takes after the shop key: issued-at, line count, lines, signature."""
    return (int(param(link, cart_links.ISSUED_PARAM)), int(param(link, cart_links.LINES_PARAM)),
            param(link, cart_links.PARAM), param(link, cart_links.SIGNATURE_PARAM))


def with_param(link: str, name: str, value: str | None) -> str:
    pairs = [(k, v) for k, v in parse_qsl(urlsplit(link).query) if k != name] + ([(name, value)] if value is not None else [])
    return "/?" + "&".join(f"{k}={requests.utils.quote(v, safe=':,')}" for k, v in pairs)


def test_the_link_the_service_makes_names_each_line_with_its_chosen_options_and_when_it_was_made():
    captured = dt.datetime(2026, 11, 29, 14, 0, tzinfo=dt.timezone.utc)
    link = woocommerce_cart(STORE_API_CART, "https://sklep.example.pl", VISITOR, KEY, SECRET, now=captured).recovery_url

    issued, count, lines, signature = signed_parts(link)
    assert lines == ("12:2,31:1:attribute_pa_size=XL:attribute_pa_color=Niebieski"
                     ":attribute_nadruk=Zosia%20%26%20Kot%3A%201%2F2")
    assert (issued, count) == (int(captured.timestamp()), 2)
    assert cart_links.verify(cart_links.public_key(SECRET), KEY, issued, count, lines, signature)
    assert not cart_links.verify(cart_links.public_key(SECRET), "pk_other", issued, count, lines, signature)
    assert not cart_links.verify(cart_links.public_key(SECRET), KEY, issued + 86400, count, lines, signature)


# A cart of 100 T-shirt variations whose long print colour was "any": far more than one link holds.
LONG_OPTION = {"raw_attribute": "attribute_pa_kolor-nadruku", "attribute": "Kolor nadruku", "value": "Ciemnoniebieski " * 8}
LONG_CART = {**STORE_API_CART, "items": [{**STORE_API_CART["items"][1], "id": 1000 + i, "variation": [LONG_OPTION]}
                                         for i in range(100)]}


def test_a_cart_too_long_for_one_link_gets_a_signed_link_to_its_first_lines_that_says_it_is_part_of_a_longer_cart():
    link = woocommerce_cart(LONG_CART, "https://sklep.example.pl", VISITOR, KEY, SECRET).recovery_url

    issued, count, lines, signature = signed_parts(link)
    assert len(link) <= 2048 and lines.startswith("1000:1:attribute_pa_kolor-nadruku=Ciemnoniebieski%20")
    assert count == 100 and 0 < len(lines.split(",")) < 100
    assert cart_links.verify(cart_links.public_key(SECRET), KEY, issued, count, lines, signature)
    assert not cart_links.verify(cart_links.public_key(SECRET), KEY, issued, len(lines.split(",")), lines, signature)

def test_a_signed_link_restores_exactly_the_left_cart_and_opens_the_checkout(shop):
    response = shop.get(link_for(shop) + "&utm_source=newsletter&utm_campaign=cart-1")

    assert response.status_code == 302
    assert response.headers["Location"] == f"{shop.url}/checkout/?utm_source=newsletter&utm_campaign=cart-1"
    assert "no-store" in response.headers["Cache-Control"]
    assert shop.cart() == THE_LEFT_CART
    assert shop.calls("empty_cart") == [[]]
    assert shop.calls("add_to_cart") == [[12, 2, 0, []], [30, 1, 31, THE_LEFT_CART[1]["variation"]]]
    assert shop.calls("set_customer_session_cookie") == [[True]]  # a guest's cart outlives the redirect
    assert "wp_woocommerce_session_shim" in response.cookies


def test_opening_the_same_link_twice_still_gives_the_same_cart(shop):
    link = link_for(shop)

    shop.get(link)
    shop.get(link)

    assert shop.cart() == THE_LEFT_CART


def _tampered(site: Site, case: str) -> str:
    link = link_for(site)
    lines, signature = param(link, cart_links.PARAM), param(link, cart_links.SIGNATURE_PARAM)
    if case == "quantity raised":
        return with_param(link, cart_links.PARAM, lines.replace("12:2", "12:20", 1))
    if case == "variation swapped":
        return with_param(link, cart_links.PARAM, lines.replace("=XL", "=M", 1))
    if case == "line added":
        return with_param(link, cart_links.PARAM, lines + ",55:1")
    if case == "another shop's link":
        return link_for(site, shop_key="pk_another-shop")
    if case == "signed by another service":
        return link_for(site, secret="another installation's SECRET_KEY")
    if case == "no signature":
        return with_param(link, cart_links.SIGNATURE_PARAM, None)
    if case == "signature cut short":
        return with_param(link, cart_links.SIGNATURE_PARAM, signature[:40])
    if case == "signature not base64":
        return with_param(link, cart_links.SIGNATURE_PARAM, "!" * 86)
    if case == "old unsigned link":
        return "/?store_companion_cart=12:2,31:1"
    if case == "issue time moved":
        return with_param(link, cart_links.ISSUED_PARAM, str(int(param(link, cart_links.ISSUED_PARAM)) - 60))
    if case == "no issue time":
        return with_param(link, cart_links.ISSUED_PARAM, None)
    if case == "line count changed":
        return with_param(link, cart_links.LINES_PARAM, "3")
    if case == "no line count":
        return with_param(link, cart_links.LINES_PARAM, None)
    if case == "undated link signed as before":
        # What the service signed before links carried a time: the same key, over context, shop key and lines.
        old = f"store-companion cart link v1\n{KEY}\n{lines}".encode()
        return "/?" + "&".join(f"{k}={requests.utils.quote(v, safe=':,')}" for k, v in [
            (cart_links.PARAM, lines), (cart_links.SIGNATURE_PARAM, cart_links._b64(cart_links._signing_key(SECRET).sign(old)))])
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["quantity raised", "variation swapped", "line added", "another shop's link",
                                  "signed by another service", "no signature", "signature cut short",
                                  "signature not base64", "old unsigned link", "issue time moved", "no issue time",
                                  "line count changed", "no line count", "undated link signed as before"])
def test_a_link_the_service_did_not_sign_for_this_shop_restores_nothing_and_leaves_the_cart_alone(shop, case):
    response = shop.get(_tampered(shop, case))

    assert response.status_code == 302
    assert response.headers["Location"] == f"{shop.url}/cart/"
    assert shop.calls("empty_cart") == [] and shop.calls("add_to_cart") == []
    assert shop.cart() == [CURRENT_CART["cart"]["held"]]
    assert "wp_die" not in {call[0] for call in shop.state["log"]}


def test_a_product_gone_since_the_cart_was_left_is_skipped_and_the_visitor_sees_the_rest_in_the_cart(wordpress, service):
    catalogue = {**CATALOGUE, "products": {**CATALOGUE["products"], "12": {"type": "simple", "purchasable": False}}}
    site = wordpress({"service_url": service.url, "public_key": KEY}, **catalogue)

    response = site.get(link_for(site))

    assert response.headers["Location"] == f"{site.url}/cart/"
    assert site.cart() == THE_LEFT_CART[1:]


@pytest.mark.parametrize("age", [dt.timedelta(days=29, hours=23), -dt.timedelta(minutes=2)],
                         ids=["made almost 30 days ago", "made 2 minutes ahead of the shop's clock"])
def test_a_link_made_within_30_days_restores_the_cart(shop, age):
    response = shop.get(link_for(shop, age=age))

    assert response.headers["Location"] == f"{shop.url}/checkout/"
    assert shop.cart() == THE_LEFT_CART


@pytest.mark.parametrize("age", [dt.timedelta(days=30, minutes=5), dt.timedelta(days=400), -dt.timedelta(hours=1)],
                         ids=["just over 30 days old", "a year old", "dated an hour in the future"])
def test_a_link_older_than_30_days_or_from_the_future_restores_nothing_and_opens_the_cart(shop, service, age):
    response = shop.get(link_for(shop, age=age))

    assert response.status_code == 302 and response.headers["Location"] == f"{shop.url}/cart/"
    assert shop.calls("empty_cart") == [] and shop.calls("add_to_cart") == []
    assert shop.cart() == [CURRENT_CART["cart"]["held"]]
    assert service.asked == 0  # refused on its date alone, without asking the service for its key


def test_a_link_to_the_first_lines_of_a_cart_too_long_for_it_restores_those_and_opens_the_cart_not_the_checkout(
        wordpress, service):
    variations = {str(1000 + i): {"type": "variation", "parent_id": 30, "attributes": {"attribute_pa_kolor-nadruku": ""}}
                  for i in range(100)}
    site = wordpress({"service_url": service.url, "public_key": KEY},
                     **{**CATALOGUE, "products": {**CATALOGUE["products"], **variations}})
    link = link_for(site, raw=LONG_CART)
    in_link = len(param(link, cart_links.PARAM).split(","))

    response = site.get(link)

    assert response.headers["Location"] == f"{site.url}/cart/"
    assert [item["variation_id"] for item in site.cart()] == list(range(1000, 1000 + in_link))
    assert site.cart()[0]["variation"] == {"attribute_pa_kolor-nadruku": LONG_OPTION["value"]}


def test_the_service_key_is_asked_for_once_and_a_forged_link_does_not_make_the_shop_ask_again(shop, service):
    shop.get(link_for(shop))
    shop.get(link_for(shop))
    shop.get(_tampered(shop, "quantity raised"))

    assert service.asked == 1
    assert shop.calls("wp_remote_get") == [[f"{service.url}/s/cart-link-key"]]
    assert shop.state["options"]["store_companion_link_key"] == {
        "service_url": service.url, "key": cart_links.public_key(SECRET)}


def test_while_the_service_is_down_a_link_lands_on_the_cart_without_an_error(shop, service):
    service.down = True

    response = shop.get(link_for(shop))

    assert response.status_code == 302 and response.headers["Location"] == f"{shop.url}/cart/"
    assert shop.cart() == [CURRENT_CART["cart"]["held"]]


def test_a_link_to_a_shop_without_woocommerce_or_before_set_up_just_shows_the_page(wordpress, service):
    without_woocommerce = wordpress({"service_url": service.url, "public_key": KEY}, woocommerce=False)
    not_set_up = wordpress(None, **CATALOGUE)

    for site in (without_woocommerce, not_set_up):
        page = site.get(link_for(site))
        assert page.status_code == 200 and "<h1>Sklep</h1>" in page.text
    assert service.asked == 0



@pytest.fixture
def database_url(sqlite_database_url) -> str:
    """SQLite only: what the round trip below adds is the plugin, not the database (tests/test_storefront.py has both)."""
    return sqlite_database_url


def test_a_cart_the_snippet_posts_comes_back_whole_through_the_link_the_service_stores_for_it(wordpress, make_settings):
    from app import create_app
    from app.models import Cart
    from app.tenancy import shop_context
    from tests.factories import make_shop
    from tests.storefront_site import ServedApp

    app = create_app(make_settings())
    served, companion = ServedApp(app), app.extensions["companion"]
    try:
        site = wordpress({"service_url": served.url, "public_key": KEY}, **CATALOGUE)
        with companion.sessions.begin() as session:
            shop = make_shop(session, urlsplit(site.url).netloc, platform="woocommerce")
            shop.public_key, shop_id = KEY, shop.id
        posted = requests.post(f"{served.url}/s/cart", params={"k": KEY}, timeout=10,
                               headers={"Origin": site.url, "Content-Type": "text/plain;charset=UTF-8"},
                               data=json.dumps({"visitor_id": VISITOR, "cart": STORE_API_CART}))
        assert posted.status_code == 202, posted.text
        assert posted.json() == {"status": "accepted"}  # the link goes only into the shopper's own messages
        with companion.sessions() as session, shop_context(shop_id):
            link = session.query(Cart).one().recovery_url

        response = requests.get(link, allow_redirects=False, timeout=10)
    finally:
        served.close()
        companion.close()

    assert response.headers["Location"] == f"{site.url}/checkout/"
    assert site.cart() == THE_LEFT_CART
    assert site.calls("wp_remote_get") == [[f"{served.url}/s/cart-link-key"]]  # the service's own key endpoint


# --- the settings page ------------------------------------------------------------------------------------------------

OWNER, EDITOR = 1, 2
USERS = {"users": {str(OWNER): {"caps": ["manage_options", "edit_posts"]}, str(EDITOR): {"caps": ["edit_posts"]}}}
SETTINGS_PAGE = "/wp-admin/options-general.php?page=store-companion"


class _Form(HTMLParser):
    def __init__(self):
        super().__init__()
        self.inputs: dict[str, str] = {}
        self.form_action: str | None = None
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.form_action = attrs.get("action")
        elif tag == "input" and attrs.get("name"):
            self.inputs[attrs["name"]] = attrs.get("value") or ""
        elif tag == "script":
            self.scripts += 1


def form_on(page: str) -> _Form:
    form = _Form()
    form.feed(page)
    return form


def save(site: Site, user: int | None, **changes) -> requests.Response:
    """Submit the settings form as `user` would after opening the page (their nonce), with `changes` over its fields."""
    fields = form_on(site.get(SETTINGS_PAGE, user=OWNER).text).inputs
    fields.pop("submit", None)
    return site.post("/wp-admin/options.php", {**fields, **changes}, user=user)


def test_the_settings_page_shows_the_saved_address_and_key_escaped(wordpress):
    site = wordpress({"service_url": 'https://companion.example.com/s?a=1&b="><script>alert(1)</script>',
                      "public_key": KEY}, **USERS)

    page = site.get(SETTINGS_PAGE, user=OWNER)

    assert page.status_code == 200
    form = form_on(page.text)
    assert form.scripts == 0
    assert form.form_action == "options.php"
    assert 'value="https://companion.example.com/s?a=1&amp;b=%22%3E%3Cscript%3Ealert(1)%3C/script%3E"' in page.text
    assert form.inputs["store_companion[service_url]"] == "https://companion.example.com/s?a=1&b=%22%3E%3Cscript%3Ealert(1)%3C/script%3E"
    assert form.inputs["store_companion[public_key]"] == KEY
    assert (form.inputs["option_page"], form.inputs["action"]) == ("store_companion", "update")


def test_an_administrator_saves_the_service_address_and_shop_key_and_the_shop_uses_them(wordpress):
    site = wordpress(None, **USERS)

    response = save(site, OWNER, **{"store_companion[service_url]": "  https://companion.example.com/ ",
                                    "store_companion[public_key]": "pk_Nowy klucz!"})

    assert response.status_code == 302
    assert response.headers["Location"] == SETTINGS_PAGE + "&settings-updated=true"
    assert site.state["options"]["store_companion"] == {"service_url": "https://companion.example.com/", "public_key": "pk_Nowyklucz"}
    [snippet] = scripts_on(site.get("/").text)
    assert (snippet["src"], snippet["data-key"]) == (f"{SERVICE}/s/snippet.js", "pk_Nowyklucz")


def test_a_service_address_that_is_not_http_is_not_saved(wordpress):
    site = wordpress(None, **USERS)

    save(site, OWNER, **{"store_companion[service_url]": "javascript:alert(1)", "store_companion[public_key]": KEY})

    assert site.state["options"]["store_companion"] == {"service_url": "", "public_key": KEY}
    assert scripts_on(site.get("/").text) == []


@pytest.mark.parametrize("who", ["editor", "logged out"])
def test_someone_without_manage_options_can_neither_open_nor_save_the_settings(wordpress, who):
    user = EDITOR if who == "editor" else None
    site = wordpress(CONFIGURED, **USERS)
    own_nonce = form_on(site.get(SETTINGS_PAGE, user=OWNER).text).inputs  # the form's fields, as if copied

    page = site.get(SETTINGS_PAGE, user=user)
    saved = site.post("/wp-admin/options.php", {**own_nonce, "store_companion[public_key]": "pk_stolen"}, user=user)

    assert page.status_code == 403 and "store_companion[public_key]" not in page.text
    assert saved.status_code == 403
    assert site.state["options"]["store_companion"] == CONFIGURED
    assert site.calls("update_option") == []


@pytest.mark.parametrize("nonce", ["missing", "forged", "another user's"])
def test_an_administrator_save_without_their_own_valid_nonce_is_refused(wordpress, nonce):
    site = wordpress(CONFIGURED, **{"users": {**USERS["users"], "3": {"caps": ["manage_options"]}}})
    fields = form_on(site.get(SETTINGS_PAGE, user=OWNER).text).inputs
    if nonce == "missing":
        fields.pop("_wpnonce")
    elif nonce == "forged":
        fields["_wpnonce"] = "0123456789"
    else:
        fields["_wpnonce"] = form_on(site.get(SETTINGS_PAGE, user=3).text).inputs["_wpnonce"]

    response = site.post("/wp-admin/options.php", {**fields, "store_companion[public_key]": "pk_csrf"}, user=OWNER)

    assert response.status_code == 403 and "expired" in response.text
    assert site.state["options"]["store_companion"] == CONFIGURED
