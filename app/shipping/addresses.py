"""Address checks per country, run before printing so staff fix a postcode before the courier refuses it."""
from __future__ import annotations

import re

import phonenumbers

from connectors.records import Address

POSTCODES = {
    "PL": (re.compile(r"\d{2}-\d{3}"), "NN-NNN"),
    "RO": (re.compile(r"\d{6}"), "6 digits"),
}
REQUIRED = (("name", "recipient name"), ("street", "street"), ("city", "city"), ("postcode", "postcode"))


def address_from(data: dict | None) -> Address:
    """An Address record from an order's stored address JSON (unknown keys ignored)."""
    known = set(Address.__dataclass_fields__)
    return Address(**{key: value for key, value in (data or {}).items() if key in known and value is not None})


def e164_phone(phone: str | None, country: str) -> str | None:
    """The phone as E.164 when it is a valid number (read in `country` when it has no +prefix), else None."""
    if not phone:
        return None
    try:
        parsed = phonenumbers.parse(phone, country or None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def address_problems(address: Address) -> list[str]:
    """What a courier would refuse about this recipient address, in words staff understand; empty when fine."""
    problems = [f"{label} is missing" for field, label in REQUIRED if not str(getattr(address, field) or "").strip()]
    country = (address.country or "").upper()
    rule = POSTCODES.get(country)
    postcode = (address.postcode or "").strip()
    if rule and postcode and not rule[0].fullmatch(postcode):
        problems.append(f"postcode {postcode!r} is not a {country} postcode ({rule[1]})")
    if not address.phone:
        problems.append("phone is missing")
    elif e164_phone(address.phone, country) is None:
        problems.append(f"phone {address.phone!r} is not a valid {country or 'international'} number")
    return problems
