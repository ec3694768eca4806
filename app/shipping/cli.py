"""Operator commands for courier work: the warehouse access code and courier accounts."""
from __future__ import annotations

import json

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from app.models import Shop
from app.tenancy import shop_context


@click.command("set-warehouse-code", help="Set the code warehouse staff type to open the print station (prompted).")
@click.argument("shop_id", type=int)
@click.option("--code", prompt=True, hide_input=True, confirmation_prompt=True, help="at least 6 characters")
@with_appcontext
def set_warehouse_code(shop_id: int, code: str):
    from app.shipping.warehouse import set_access_code

    with current_app.extensions["companion"].sessions.begin() as session:
        shop = session.get(Shop, shop_id)
        if shop is None:
            raise click.ClickException(f"no shop {shop_id}")
        try:
            set_access_code(shop, code)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"warehouse code set for shop {shop_id}; the print station is at /warehouse/{shop_id}/")


couriers_group = AppGroup("couriers", help="Shops' courier accounts.")


@couriers_group.command("add", help="Add a courier account; SETTINGS is the client's settings as JSON (stored encrypted).")
@click.argument("shop_id", type=int)
@click.argument("courier")
@click.argument("name")
@click.option("--settings", "settings_json", required=True, help='e.g. {"client_id": "...", "username": "...", "password": "..."}')
@click.option("--sender", "sender_json", required=True, help="sender address as JSON (name, street, city, postcode, country, phone)")
@click.option("--service", default=None, help="default service")
@click.option("--method", "methods", multiple=True, help="a shop shipping method title this account serves (repeatable)")
@click.option("--parcel", "parcel_json", default=None, help='default parcel, e.g. {"weight_kg": "1"}')
def couriers_add(shop_id, courier, name, settings_json, sender_json, service, methods, parcel_json):
    from app.shipping.accounts import add_account

    try:
        settings, sender = json.loads(settings_json), json.loads(sender_json)
        parcel = json.loads(parcel_json) if parcel_json else None
    except ValueError as exc:
        raise click.ClickException(f"not JSON: {exc}") from None
    with current_app.extensions["companion"].sessions.begin() as session, shop_context(shop_id):
        try:
            account = add_account(session, shop_id, courier=courier, name=name, credentials=settings, sender=sender,
                                  default_service=service, shipping_methods=list(methods), parcel=parcel)
        except (ValueError, TypeError) as exc:
            raise click.ClickException(str(exc)) from None
        account_id = account.id
    click.echo(f"courier account {account_id} added")
