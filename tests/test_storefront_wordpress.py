"""The WooCommerce plugin (connectors/woocommerce/store-companion.php) run under PHP with a WordPress shim:
it puts the snippet on every page with the shop key, never render-blocking, and serves the service worker
on the shop's own domain with the headers a browser needs to register it for the whole site."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests

from tests.conftest import IN_CI, wait_until

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "connectors" / "woocommerce" / "store-companion.php"
SHIM = ROOT / "tests" / "fixtures" / "wordpress"
SERVICE = "https://companion.example.com"
KEY = "pk_Sklep-2026_abc"
PHP = shutil.which("php")


@pytest.fixture(autouse=True)
def _php():
    if PHP is None:
        message = "php is not installed (apt-get install php-cli): the WordPress plugin cannot be run"
        if IN_CI:
            pytest.fail(f"{message}; under CI=true it must (see .ci/run)")
        pytest.skip(message)


@pytest.fixture
def wordpress():
    """Start `php -S` serving the shim's front end with the plugin; call it with the plugin's saved option."""
    started = []

    def start(option: dict | None, legacy_scripts: bool = False) -> str:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = {**os.environ, "WP_SHIM_PLUGIN": str(PLUGIN),
               "WP_SHIM_OPTIONS": json.dumps({"store_companion": option} if option is not None else {}),
               "WP_SHIM_LEGACY_SCRIPTS": "1" if legacy_scripts else "0"}
        process = subprocess.Popen([PHP, "-S", f"127.0.0.1:{port}", str(SHIM / "router.php")], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        started.append(process)
        wait_until(lambda: _answers(port) or process.poll() is not None, timeout=20, message="php -S answers")
        assert process.poll() is None, process.stderr.read().decode(errors="replace")
        return f"http://127.0.0.1:{port}"

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
    page = requests.get(wordpress(CONFIGURED) + "/", timeout=10)

    assert page.status_code == 200
    [snippet] = scripts_on(page.text)
    assert snippet["src"] == f"{SERVICE}/s/snippet.js"
    assert snippet["data-key"] == KEY
    assert "async" in snippet  # never holds up rendering


def test_on_wordpress_before_loading_strategies_the_plugin_still_makes_the_tag_async(wordpress):
    page = requests.get(wordpress(CONFIGURED, legacy_scripts=True) + "/", timeout=10)

    [snippet] = scripts_on(page.text)
    assert (snippet["src"], snippet["data-key"]) == (f"{SERVICE}/s/snippet.js", KEY)
    assert "async" in snippet


def test_a_key_is_written_into_the_page_only_as_the_letters_a_key_can_hold(wordpress):
    page = requests.get(wordpress({"service_url": SERVICE, "public_key": 'pk_1"><script>alert(1)</script>'}) + "/", timeout=10)

    [snippet] = scripts_on(page.text)
    assert snippet["data-key"] == "pk_1scriptalert1script"


def test_the_service_worker_is_served_on_the_shops_domain_for_the_whole_site(wordpress):
    response = requests.get(wordpress(CONFIGURED) + "/?store_companion_sw=1", timeout=10)

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

    page = requests.get(base + "/", timeout=10)
    worker = requests.get(base + "/?store_companion_sw=1", timeout=10)

    assert page.status_code == 200 and scripts_on(page.text) == []
    assert worker.status_code == 404
