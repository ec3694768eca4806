"""Courier accounts and address checks: what staff see before printing, and the operator commands."""
from __future__ import annotations

import json

from sqlalchemy import select, text

from app.models import CourierAccount, Shop
from app.shipping.addresses import address_problems
from app.tenancy import shop_context
from connectors.records import Address
from tests.factories import make_shop

PL = Address(name="Zofia Nowak", street="ul. Długa 5", city="Kraków", postcode="31-147", country="PL", phone="600111222")
RO = Address(name="Ion Popescu", street="Str. 11 Iunie nr. 14", city="Iasi", postcode="700259", country="RO",
             phone="0740123123")


def test_a_complete_polish_and_romanian_address_have_no_problems():
    assert address_problems(PL) == [] and address_problems(RO) == []


def test_a_polish_postcode_without_its_dash_is_a_problem():
    assert address_problems(Address(**{**vars(PL), "postcode": "31147"})) == [
        "postcode '31147' is not a PL postcode (NN-NNN)"]


def test_a_romanian_postcode_of_four_digits_is_a_problem():
    assert address_problems(Address(**{**vars(RO), "postcode": "7002"})) == ["postcode '7002' is not a RO postcode (6 digits)"]


def test_a_phone_that_is_no_number_in_its_country_is_a_problem():
    assert address_problems(Address(**{**vars(RO), "phone": "0740"})) == ["phone '0740' is not a valid RO number"]


def test_missing_street_and_phone_are_named():
    assert address_problems(Address(**{**vars(PL), "street": "", "phone": None})) == ["street is missing", "phone is missing"]


def test_the_cli_adds_an_account_with_its_settings_encrypted(app, runtime):
    with runtime.sessions.begin() as session:
        shop_id = make_shop(session).id
    settings = {"client_id": "7032158", "username": "clienttest", "password": "s3cret-pass"}

    result = app.test_cli_runner().invoke(args=[
        "couriers", "add", str(shop_id), "fancourier", "FAN main", "--settings", json.dumps(settings),
        "--sender", json.dumps({"name": "Magazin", "city": "Bucuresti", "country": "RO"}), "--method", "FAN Courier"])

    assert result.exit_code == 0, result.output
    with runtime.sessions() as session, shop_context(shop_id):
        account = session.scalars(select(CourierAccount)).one()
        stored = session.execute(text("SELECT credentials FROM courier_accounts")).scalar()
    assert account.credentials.reveal() == settings and "s3cret-pass" not in stored
    assert account.shipping_methods == ["FAN Courier"]


def test_the_cli_refuses_settings_the_courier_client_does_not_take(app, runtime):
    with runtime.sessions.begin() as session:
        shop_id = make_shop(session).id

    result = app.test_cli_runner().invoke(args=[
        "couriers", "add", str(shop_id), "fancourier", "FAN", "--settings", '{"user": "x"}', "--sender", "{}"])

    assert result.exit_code != 0 and "missing 3 required positional arguments" in result.output


def test_the_cli_sets_the_warehouse_code_hashed(app, runtime):
    with runtime.sessions.begin() as session:
        shop_id = make_shop(session).id

    result = app.test_cli_runner().invoke(args=["shops", "set-warehouse-code", str(shop_id), "--code", "depozit-2026"])

    assert result.exit_code == 0, result.output
    with runtime.sessions() as session:
        stored = session.get(Shop, shop_id).settings["warehouse_code_hash"]
    assert "depozit-2026" not in stored and stored.startswith(("scrypt:", "pbkdf2:"))
