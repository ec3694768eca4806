"""Message texts per locale: plural forms, money and dates as the customer reads them, the shop's branding."""
from __future__ import annotations

import pytest

from app.messaging.render import Brand, plural, render_message
from tests.outbox_helpers import CART_CONTEXT, SHIPPED_CONTEXT

PRODUCT_PL = {"one": "produkt", "few": "produkty", "many": "produktów"}
PRODUCT_RO = {"one": "produs", "few": "produse", "other": "de produse"}


@pytest.mark.parametrize("count, word", [(1, "produkt"), (2, "produkty"), (4, "produkty"), (5, "produktów"),
                                         (12, "produktów"), (22, "produkty"), (25, "produktów"), (0, "produktów")])
def test_polish_plural_forms(count, word):
    assert plural(count, "pl", PRODUCT_PL) == word


@pytest.mark.parametrize("count, word", [(1, "produs"), (2, "produse"), (19, "produse"), (20, "de produse"),
                                         (101, "produse"), (120, "de produse")])
def test_romanian_plural_forms(count, word):
    assert plural(count, "ro", PRODUCT_RO) == word


def _render(template, locale, context, **kwargs):
    return render_message(template, locale, context, brand=Brand(name="Magazin Ștefan", primary_color="#aa0000"),
                          timezone="Europe/Bucharest", **kwargs)


def test_romanian_cart_reminder_formats_lei_and_diacritics():
    rendered = _render("cart_reminder", "ro", {**CART_CONTEXT, "currency": "RON", "item_count": 20, "first_name": "Ana"})
    assert rendered.subject == "Ana, coșul tău de la Magazin Ștefan te așteaptă"
    assert "20 de produse" in rendered.text and "39,80\xa0RON" in rendered.text


def test_polish_money_uses_a_decimal_comma_and_zloty_sign():
    rendered = _render("cart_reminder", "pl", {**CART_CONTEXT, "first_name": "Marta"})
    assert "Razem: 39,80\xa0zł" in rendered.text


def test_dates_are_shown_in_the_recipients_time_zone_and_language():
    late = {**SHIPPED_CONTEXT, "shipped_at": "2026-06-10T22:30:00+00:00", "first_name": ""}  # 11 June in Bucharest
    assert "11 iunie 2026" in _render("order_shipped", "ro", late).text
    assert "11 czerwca 2026" in render_message("order_shipped", "pl", late, brand=Brand(name="S"),
                                               timezone="Europe/Bucharest").text


def test_the_html_carries_the_shops_colour_inlined_and_escapes_customer_text():
    rendered = _render("cart_reminder", "en", {**CART_CONTEXT, "first_name": "<script>x</script>"})
    assert "background-color: #aa0000" in rendered.html and "<style" not in rendered.html
    assert "<script>x" not in rendered.html and "&lt;script&gt;" in rendered.html


def test_a_colour_setting_that_is_not_a_colour_is_ignored():
    class FakeShop:
        name, domain = "S", "s.example"
        settings = {"brand": {"primary_color": "red;} body{display:none"}}

    assert Brand.from_shop(FakeShop()).primary_color == "#1a73e8"


def test_an_unknown_locale_falls_back_to_english():
    assert _render("cart_reminder", "de", {**CART_CONTEXT, "first_name": "Jo"}).subject.startswith("Jo, your cart")


def test_the_logo_appears_when_the_shop_has_one():
    rendered = render_message("order_shipped", "en", {**SHIPPED_CONTEXT, "first_name": "Jo"}, timezone="UTC",
                              brand=Brand(name="S", logo_url="https://cdn.example/logo.png"))
    assert 'src="https://cdn.example/logo.png"' in rendered.html
