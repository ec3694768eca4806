"""What the shipping tests share: a Romanian shop with a FAN Courier account on the loopback fake, and its orders."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

from app.jobs.executors.local import LocalWorker
from app.models import utcnow
from app.shipping.accounts import add_account
from tests.factories import make_customer, make_order, make_shop

SENDER = {"name": "Magazin Floare SRL", "street": "Str. Lunga 10", "city": "Bucuresti", "postcode": "010011",
          "region": "Bucuresti", "country": "RO", "phone": "+40723000000"}


def ro_address(index: int, postcode: str = "700259") -> dict:
    return {"name": f"Ion Popescu {index}", "street": f"Str. 11 Iunie nr. {index + 1}", "city": "Iasi",
            "postcode": postcode, "region": "Iasi", "country": "RO", "phone": "0740123123"}


def fan_credentials(fake) -> dict:
    return {"client_id": fake.client_id, "username": fake.username, "password": fake.password, "base_url": fake.url}


def open_ro_shop(runtime, fake, *, platform: str = "woocommerce", orders: int = 0, bad_postcodes: tuple[int, ...] = (),
                 settings: dict | None = None) -> tuple[int, int, list[int]]:
    """(shop id, FAN account id, order ids): paid orders to Iasi; those at `bad_postcodes` have a 4-digit postcode."""
    with runtime.sessions.begin() as session:
        shop = make_shop(session, platform=platform, currency="RON", timezone="Europe/Bucharest", locale="ro",
                         settings=settings or {})
        account = add_account(session, shop.id, courier="fancourier", name="FAN main", credentials=fan_credentials(fake),
                              sender=SENDER, default_service="Standard", shipping_methods=["FAN Courier"],
                              parcel={"weight_kg": "1.5"})
        customer = make_customer(session, shop, "ion@example.ro")
        order_ids = []
        for index in range(orders):
            order = make_order(session, shop, customer, total="149.90", currency="RON", number=f"#{1000 + index}",
                               financial_status="paid", paid_at=utcnow() - dt.timedelta(hours=2),
                               placed_at=utcnow() - dt.timedelta(hours=3), shipping_method="FAN Courier",
                               shipping_address=ro_address(index, "7002" if index in bad_postcodes else "700259"))
            order_ids.append(order.id)
        return shop.id, account.id, order_ids


def work(runtime) -> None:
    LocalWorker(runtime).run(exit_when_idle=True)


__all__ = ["Decimal", "SENDER", "fan_credentials", "open_ro_shop", "ro_address", "work"]
