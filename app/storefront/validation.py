"""Strict checks of what the snippet sends; each failure names the field and what was expected."""
from __future__ import annotations

import re
from typing import Any

from app.storefront.guard import Rejected

VISITOR_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
EMAIL = re.compile(r"[^@\s\"<>(),;:]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+")
VERSION = re.compile(r"[A-Za-z0-9._:-]{1,64}")
LOCALES = ("pl", "ro", "en")
COUNTRY_CODES = {"pl": ("48", 9), "ro": ("40", 9)}


class InvalidField(Rejected):
    def __init__(self, field: str, expected: str):
        super().__init__(400, "invalid_field", f"{field}: {expected}")
        self.field, self.expected = field, expected


def visitor_id(body: dict, field: str = "visitor_id", required: bool = True) -> str | None:
    value = body.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not VISITOR_ID.fullmatch(value):
        raise InvalidField(field, "must be the snippet's visitor id (16-64 letters, digits, - or _)")
    return value


def text(body: dict, field: str, max_length: int, required: bool = False, path: str | None = None) -> str | None:
    value = body.get(field)
    name = path or field
    if value is None or value == "":
        if required:
            raise InvalidField(name, "is required")
        return None
    if not isinstance(value, str):
        raise InvalidField(name, f"must be a string, got {type(value).__name__}")
    if len(value) > max_length:
        raise InvalidField(name, f"must be at most {max_length} characters, got {len(value)}")
    return value


def url(body: dict, field: str, required: bool = False, path: str | None = None, https_only: bool = False) -> str | None:
    value = text(body, field, 2048, required, path)
    if value is None:
        return None
    schemes = ("https://",) if https_only else ("http://", "https://")
    if not value.startswith(schemes):
        raise InvalidField(path or field, f"must be an absolute {' or '.join(s[:-3] for s in schemes)} URL")
    return value


def identifier(body: dict, field: str, path: str | None = None) -> str | None:
    value = body.get(field)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidField(path or field, "must be a string or a whole number")
    value = str(value)
    if len(value) > 64:
        raise InvalidField(path or field, "must be at most 64 characters")
    return value


def whole_number(body: dict, field: str, minimum: int, maximum: int, path: str | None = None, default: int | None = None) -> int | None:
    value = body.get(field, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise InvalidField(path or field, f"must be a whole number from {minimum} to {maximum}")
    return value


def email(body: dict, field: str = "email", required: bool = False) -> str | None:
    value = text(body, field, 320, required)
    if value is None:
        return None
    value = value.strip()
    if not EMAIL.fullmatch(value):
        raise InvalidField(field, "must be an email address")
    return value.lower()


def phone(body: dict, locale: str, field: str = "phone") -> str | None:
    """An E.164 number; a national number is completed with the shop country's code (pl +48, ro +40)."""
    value = text(body, field, 32)
    if value is None:
        return None
    digits = re.sub(r"[\s().-]", "", value)
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    if not digits.startswith("+"):
        code, national_length = COUNTRY_CODES.get(locale, (None, None))
        national = digits[1:] if digits.startswith("0") and code == "40" else digits
        if code is None or len(national) != national_length or not national.isdigit():
            raise InvalidField(field, "must be a phone number in international form, e.g. +48 600 100 200")
        digits = f"+{code}{national}"
    if not re.fullmatch(r"\+[1-9][0-9]{6,14}", digits):
        raise InvalidField(field, "must be a phone number in international form, e.g. +48 600 100 200")
    return digits


def locale(body: dict, default: str) -> str:
    value = body.get("locale") or default
    if not isinstance(value, str) or value[:2].lower() not in LOCALES:
        raise InvalidField("locale", f"must be one of {', '.join(LOCALES)}")
    return value[:2].lower()


def version(body: dict, field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not VERSION.fullmatch(value):
        raise InvalidField(field, "is required: the version of the consent text the visitor saw")
    return value


def obj(body: dict, field: str, path: str | None = None) -> dict:
    value = body.get(field)
    if not isinstance(value, dict):
        raise InvalidField(path or field, "must be an object")
    return value


def items(body: dict, field: str, maximum: int, path: str | None = None) -> list[Any]:
    value = body.get(field)
    if not isinstance(value, list):
        raise InvalidField(path or field, "must be a list")
    if len(value) > maximum:
        raise InvalidField(path or field, f"must hold at most {maximum} entries, got {len(value)}")
    return value
