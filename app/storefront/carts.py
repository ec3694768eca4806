"""A visitor's cart as the platform's storefront API shows it (Shopify `/cart.js`, WooCommerce Store API), as a StoreCart.

Both APIs give amounts in minor units (cents): Shopify always, the Store API with `currency_minor_unit`.
The recovery link rebuilds the same lines on the shop's own domain: a Shopify cart permalink
(`/cart/<variant>:<qty>,...`), or a signed `?store_companion_cart=<id>:<qty>,...` link (app/storefront/cart_links.py)
that the WordPress plugin turns back into a cart, chosen variation options included.
"""
from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

from connectors.records import Money, StoreCart, StoreCartLine
from app.models import utcnow
from app.storefront import validation as v
from app.storefront.cart_links import LinkLine, recovery_link

MAX_LINES = 100
MAX_OPTIONS = 20
_CURRENCY = re.compile(r"[A-Z]{3}")
_MINOR = re.compile(r"-?[0-9]{1,15}")
_ITEM_ID = re.compile(r"[1-9][0-9]{0,19}")


def _minor(value, minor_unit: int, path: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not _MINOR.fullmatch(str(value)):
        raise v.InvalidField(path, "must be an amount in minor units (a whole number, e.g. 12999 for 129.99)")
    return Decimal(str(value)).scaleb(-minor_unit)


def _currency(value, path: str) -> str:
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value.upper()):
        raise v.InvalidField(path, "must be a three-letter ISO currency code")
    return value.upper()


def _minor_unit(container: dict, path: str) -> int:
    return v.whole_number(container, "currency_minor_unit", 0, 4, path=path, default=2)


def _quantity(line: dict, path: str) -> int:
    return v.whole_number(line, "quantity", 1, 10_000, path=path)


def shopify_cart(raw: dict, origin: str) -> StoreCart:
    token = v.text(raw, "token", 256, required=True, path="cart.token").split("?", 1)[0]
    currency = _currency(raw.get("currency"), "cart.currency")
    lines = []
    for i, line in enumerate(v.items(raw, "items", MAX_LINES, path="cart.items")):
        path = f"cart.items[{i}]"
        if not isinstance(line, dict):
            raise v.InvalidField(path, "must be an object")
        variant = v.identifier(line, "variant_id", path=f"{path}.variant_id") or v.identifier(line, "id", path=f"{path}.id")
        if variant is None:
            raise v.InvalidField(f"{path}.variant_id", "is required")
        lines.append(StoreCartLine(
            name=v.text(line, "title", 512, path=f"{path}.title") or v.text(line, "product_title", 512, path=f"{path}.product_title") or "",
            quantity=_quantity(line, f"{path}.quantity"),
            unit_price=Money(_minor(line.get("final_price", line.get("price", 0)), 2, f"{path}.price"), currency),
            product_id=v.identifier(line, "product_id", path=f"{path}.product_id"),
            variant_id=variant,
            sku=v.text(line, "sku", 128, path=f"{path}.sku"),
            image_url=_absolute(v.text(line, "image", 2048, path=f"{path}.image"), origin),
            product_url=_absolute(v.text(line, "url", 2048, path=f"{path}.url"), origin),
        ))
    total = Money(_minor(raw.get("total_price", 0), 2, "cart.total_price"), currency)
    permalink = ",".join(f"{line.variant_id}:{line.quantity}" for line in lines)
    recovery = f"{origin}/cart/{permalink}" if lines else None
    return StoreCart(token=token[:128], currency=currency, total=total, updated_at=utcnow(),
                     recovery_url=recovery, lines=tuple(lines))


def _chosen_options(line: dict) -> tuple[tuple[str, str], ...]:
    """A variation's options as the Store API names them (`raw_attribute`, e.g. `attribute_pa_size`, and the value).

    Read leniently, like images: a cart is worth keeping even if a plugin reshaped these. Stores older than the
    `raw_attribute` field give none; a variation's own fixed options still apply when the link is opened."""
    raw = line.get("variation")
    options = []
    for option in raw[:MAX_OPTIONS] if isinstance(raw, list) else ():
        name = option.get("raw_attribute") if isinstance(option, dict) else None
        value = option.get("value") if isinstance(option, dict) else None
        if isinstance(name, str) and name.startswith("attribute_") and len(name) <= 128 \
                and isinstance(value, str) and len(value) <= 256:
            options.append((name, value))
    return tuple(options)


def woocommerce_cart(raw: dict, origin: str, visitor_id: str, shop_key: str, secret_key: str,
                     now: dt.datetime | None = None) -> StoreCart:
    """The Store API cart as a StoreCart, its recovery link signed for `shop_key` and dated `now` (the capture)."""
    now = now or utcnow()
    totals = v.obj(raw, "totals", path="cart.totals")
    currency = _currency(totals.get("currency_code"), "cart.totals.currency_code")
    total = Money(_minor(totals.get("total_price", 0), _minor_unit(totals, "cart.totals.currency_minor_unit"),
                         "cart.totals.total_price"), currency)
    lines, link_lines = [], []
    for i, line in enumerate(v.items(raw, "items", MAX_LINES, path="cart.items")):
        path = f"cart.items[{i}]"
        if not isinstance(line, dict):
            raise v.InvalidField(path, "must be an object")
        item_id = v.identifier(line, "id", path=f"{path}.id")
        if item_id is None:
            raise v.InvalidField(f"{path}.id", "is required")
        if not _ITEM_ID.fullmatch(item_id):
            raise v.InvalidField(f"{path}.id", "must be a product or variation id (a whole number)")
        prices = line.get("prices") if isinstance(line.get("prices"), dict) else {}
        images = line.get("images") if isinstance(line.get("images"), list) else []
        image = images[0].get("src") if images and isinstance(images[0], dict) else None
        lines.append(StoreCartLine(
            name=v.text(line, "name", 512, path=f"{path}.name") or "",
            quantity=_quantity(line, f"{path}.quantity"),
            unit_price=Money(_minor(prices.get("price", 0), _minor_unit(prices, f"{path}.prices.currency_minor_unit"),
                                    f"{path}.prices.price"), currency),
            product_id=item_id,
            sku=v.text(line, "sku", 128, path=f"{path}.sku"),
            image_url=image if isinstance(image, str) and len(image) <= 2048 else None,
            product_url=v.text(line, "permalink", 2048, path=f"{path}.permalink"),
        ))
        link_lines.append(LinkLine(item_id, lines[-1].quantity, _chosen_options(line)))
    billing = raw.get("billing_address") if isinstance(raw.get("billing_address"), dict) else {}
    email = billing.get("email") if isinstance(billing.get("email"), str) and v.EMAIL.fullmatch(billing["email"]) else None
    recovery = recovery_link(origin, shop_key, secret_key, link_lines, issued_at=now) if link_lines else None
    # The Store API has no public cart id; the visitor's id names their cart (one cart per browser).
    return StoreCart(token=f"sc-{visitor_id}", currency=currency, total=total, updated_at=now, email=email,
                     recovery_url=recovery, lines=tuple(lines))


def _absolute(value: str | None, origin: str) -> str | None:
    if not value:
        return None
    if value.startswith("//"):
        return "https:" + value
    if value.startswith("/"):
        return origin + value
    return value if value.startswith(("http://", "https://")) else None


def storefront_cart(platform: str, raw: dict, origin: str, visitor_id: str, shop_key: str, secret_key: str) -> StoreCart:
    if platform == "shopify":
        return shopify_cart(raw, origin)
    if platform == "woocommerce":
        return woocommerce_cart(raw, origin, visitor_id, shop_key, secret_key)
    raise v.InvalidField("cart", f"carts of {platform} shops are not read by the snippet")
