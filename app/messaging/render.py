"""Message texts from Jinja2 templates per locale: shop branding, inlined CSS, plural forms, money and dates."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

import css_inline
from babel import Locale
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency
from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateNotFound, select_autoescape

LOCALES = ("pl", "ro", "en")
TEMPLATES_DIR = Path(__file__).parent / "templates"

# Words of the shared layout; a template's own words live in its files.
LAYOUT_WORDS = {
    "pl": {"unsubscribe": "Wypisz się z tych wiadomości", "why": "Otrzymujesz tę wiadomość od sklepu {shop}."},
    "ro": {"unsubscribe": "Dezabonează-te de la aceste mesaje", "why": "Primești acest mesaj de la magazinul {shop}."},
    "en": {"unsubscribe": "Unsubscribe from these messages", "why": "You receive this message from {shop}."},
}


class TemplateMissing(LookupError):
    pass


@dataclass(frozen=True)
class Brand:
    name: str
    logo_url: str | None = None
    primary_color: str = "#1a73e8"
    text_color: str = "#202124"
    background_color: str = "#f5f5f5"

    @classmethod
    def from_shop(cls, shop) -> "Brand":
        brand = (shop.settings or {}).get("brand") or {}
        return cls(
            name=brand.get("name") or shop.name or shop.domain,
            logo_url=brand.get("logo_url"),
            primary_color=_colour(brand.get("primary_color"), "#1a73e8"),
            text_color=_colour(brand.get("text_color"), "#202124"),
            background_color=_colour(brand.get("background_color"), "#f5f5f5"),
        )


def _colour(value: Any, default: str) -> str:
    """Only #rgb/#rrggbb reach the CSS: a shop setting must not be able to inject styles."""
    if isinstance(value, str) and value.startswith("#") and len(value) in (4, 7) and \
            all(ch in "0123456789abcdefABCDEF" for ch in value[1:]):
        return value
    return default


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str
    sms: str
    push_title: str
    push_body: str


def plural(count: int, locale: str, forms: dict[str, str]) -> str:
    """The word form CLDR prescribes: Polish one/few/many, Romanian one/few/other ("20 de produse")."""
    category = Locale.parse(locale).plural_form(abs(count))
    return forms.get(category) or forms.get("other") or forms.get("many") or next(iter(forms.values()))


@lru_cache(maxsize=1)
def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    return env


def render_message(template: str, locale: str, context: dict[str, Any], *, brand: Brand, timezone: str,
                   link: Callable[[str], str] | None = None, open_pixel_url: str | None = None,
                   unsubscribe_url: str | None = None) -> Rendered:
    """Render every part of `template` for `locale` (falling back to English for a missing locale)."""
    locale = locale if locale in LOCALES else "en"
    env = _environment()
    try:
        text_template = env.get_template(f"{locale}/{template}.txt")
        html_template = env.get_template(f"{locale}/{template}.html")
    except TemplateNotFound:
        if locale != "en":
            return render_message(template, "en", context, brand=brand, timezone=timezone, link=link,
                                  open_pixel_url=open_pixel_url, unsubscribe_url=unsubscribe_url)
        raise TemplateMissing(f"no template {template!r}") from None
    zone = ZoneInfo(timezone)

    def money(amount, currency: str) -> str:
        return format_currency(Decimal(str(amount)), currency, locale=locale)

    def date(value, format: str = "long") -> str:
        value = _as_datetime(value)
        return format_date(value.astimezone(zone).date(), format=format, locale=locale)

    def datetime(value, format: str = "medium") -> str:
        return format_datetime(_as_datetime(value), format=format, tzinfo=zone, locale=locale)

    variables = {
        **context,
        "shop": brand,
        "locale": locale,
        "words": {k: v.format(shop=brand.name) for k, v in LAYOUT_WORDS[locale].items()},
        "money": money,
        "date": date,
        "datetime": datetime,
        "plural": lambda count, **forms: plural(int(count), locale, forms),
        "link": link or (lambda url: url),
        "open_pixel_url": open_pixel_url,
        "unsubscribe_url": unsubscribe_url,
    }
    parts = {name: "".join(block(text_template.new_context(variables))).strip()
             for name, block in text_template.blocks.items()}
    html = css_inline.inline(html_template.render(variables))
    return Rendered(
        subject=" ".join(parts.get("subject", "").split()),
        text=parts.get("text", ""),
        html=html,
        sms=" ".join(parts.get("sms", "").split()),
        push_title=parts.get("push_title", "") or brand.name,
        push_body=" ".join(parts.get("push_body", "").split()),
    )


def _as_datetime(value) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time(12), tzinfo=dt.timezone.utc)
    if value.tzinfo is None:
        raise ValueError("naive datetime in a message context; store times as timezone-aware UTC")
    return value
