"""How each courier is named to a store and its customers (Shopify's carrier list spelling where it has one)."""
from __future__ import annotations

COURIER_DISPLAY_NAMES = {
    "fancourier": "FAN Courier",
    "sameday": "Sameday",
    "cargus": "Cargus",
    "inpost": "InPost",
    "dpd_ro": "DPD",
    "dpd_pl": "DPD",
    "manual": "Other",
}


def courier_display_name(courier: str) -> str:
    return COURIER_DISPLAY_NAMES.get(courier, courier)
