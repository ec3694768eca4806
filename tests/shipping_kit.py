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


PL_SENDER = {"name": "Kwiaciarnia Róża", "street": "ul. Floriańska 3", "city": "Kraków", "postcode": "31-019",
             "country": "PL", "phone": "+48600111222"}


def pl_address(index: int) -> dict:
    return {"name": f"Zofia Nowak {index}", "street": f"ul. Długa {index + 1}", "city": "Kraków", "postcode": "31-147",
            "country": "PL", "phone": "600111222"}


def open_pl_shop(runtime, fake, *, orders: int = 0, **courier_settings) -> tuple[int, int, list[int]]:
    """(shop id, InPost account id, order ids): paid orders to Kraków by InPost courier, on the ShipX fake."""
    credentials = {"token": fake.api_token, "organization_id": fake.organization_id, "base_url": fake.url,
                   "confirm_wait": 0, **courier_settings}
    with runtime.sessions.begin() as session:
        shop = make_shop(session, platform="woocommerce", currency="PLN", timezone="Europe/Warsaw", locale="pl")
        account = add_account(session, shop.id, courier="inpost", name="InPost", credentials=credentials,
                              sender=PL_SENDER, default_service="inpost_courier_standard",
                              shipping_methods=["InPost Kurier"], parcel={"weight_kg": "2"})
        customer = make_customer(session, shop, "zofia@example.pl")
        order_ids = [make_order(session, shop, customer, total="249.90", currency="PLN", number=f"#{2000 + index}",
                                financial_status="paid", paid_at=utcnow() - dt.timedelta(hours=2),
                                placed_at=utcnow() - dt.timedelta(hours=3), shipping_method="InPost Kurier",
                                shipping_address=pl_address(index)).id
                     for index in range(orders)]
        return shop.id, account.id, order_ids


def run_due_jobs_now(runtime) -> None:
    """Bring every waiting job forward to now and run them (what the clock's passing would do)."""
    from sqlalchemy import update

    from app.models import Job

    with runtime.sessions.begin() as session:
        session.execute(update(Job).where(Job.status == "queued").values(due_at=utcnow())
                        .execution_options(all_shops=True))
    work(runtime)


def work(runtime) -> None:
    LocalWorker(runtime).run(exit_when_idle=True)


__all__ = ["Decimal", "PL_SENDER", "SENDER", "fan_credentials", "open_pl_shop", "open_ro_shop", "pl_address",
           "ro_address", "run_due_jobs_now", "work"]


def manual_courier_batch(session, access_code: str):
    """(shop, account, batch): a Romanian shop whose staff ship with the manual courier, one printed batch done."""
    from app.models import LabelBatch
    from app.shipping.warehouse import set_access_code

    shop = make_shop(session, platform="woocommerce", currency="RON", timezone="Europe/Bucharest")
    set_access_code(shop, access_code)
    account = add_account(session, shop.id, courier="manual", name="Curier propriu", credentials={}, sender=SENDER)
    batch = LabelBatch(shop_id=shop.id, courier="manual", courier_account_id=account.id, status="done",
                       order_ids=[], failures={}, label_size="a4_4up", label_format="pdf")
    session.add(batch)
    session.flush()
    return shop, account, batch
