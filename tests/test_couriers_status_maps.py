"""Status mapping tables: every code in each courier's data file comes through tracking as its mapped status, and a
code nobody mapped is `unknown`, never `in_transit`."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from connectors.couriers import Cargus, DpdPolska, DpdRomania, FanCourier, InPost, Sameday, TokenCache, load_status_map
from connectors.couriers.base import STATUS_MAPS
from connectors.records import ShipmentStatus
from tests.fake_couriers import (  # noqa: F401 (fixtures)
    Sleeps, fake_fan, fake_inpost, fake_sameday, ro_request,
)

MAPS = {"fan_courier": FanCourier, "sameday": Sameday, "inpost": InPost, "cargus": Cargus,
        "dpd_romania": DpdRomania, "dpd_polska": DpdPolska}


def table(name: str) -> dict[str, ShipmentStatus]:
    data = json.loads((STATUS_MAPS / f"{name}.json").read_text(encoding="utf-8"))
    return {code: ShipmentStatus(entry["status"]) for code, entry in data["codes"].items()}


@pytest.mark.parametrize("name", sorted(MAPS))
def test_each_courier_loads_its_own_table(name):
    assert MAPS[name].status_map.codes == table(name)
    assert MAPS[name].status_map.courier == MAPS[name].name


def test_the_normalised_statuses_are_exactly_the_twelve_of_the_design():
    assert [s.value for s in ShipmentStatus] == [
        "created", "picked_up", "in_transit", "out_for_delivery", "available_for_pickup", "failed_attempt",
        "delivered", "returning", "returned_to_sender", "cancelled", "exception", "unknown"]


def test_a_table_with_a_status_we_do_not_have_is_refused_when_loaded(tmp_path):
    (tmp_path / "broken.json").write_text(json.dumps({"courier": "x", "codes": {"A": {"status": "lost_in_space"}}}))
    with pytest.raises(ValueError, match="lost_in_space"):
        load_status_map("broken", tmp_path)


def test_every_fan_event_id_maps_as_its_table_says_and_an_unmapped_one_is_unknown(fake_fan):
    courier = FanCourier(fake_fan.client_id, fake_fan.username, fake_fan.password, base_url=fake_fan.url,
                         tokens=TokenCache(), sleep=Sleeps())
    awb = courier.create_shipment(ro_request()).tracking_numbers[0]
    codes = {code: status for code, status in table("fan_courier").items() if code != "registered"}
    start = dt.datetime(2026, 11, 1, 8, 0)
    fake_fan.add_events(awb, [(code, f"text {code}", "Bucuresti", (start + dt.timedelta(minutes=n)).strftime(
        "%Y-%m-%d %H:%M:%S")) for n, code in enumerate([*codes, "S999"])])
    [result] = courier.track([awb])
    assert {e.raw_code: e.status for e in result.events} == {**codes, "S999": ShipmentStatus.UNKNOWN}
    assert result.status is ShipmentStatus.UNKNOWN  # the latest event is the unmapped one: no guess


def test_every_sameday_status_id_maps_as_its_table_says_and_an_unmapped_one_is_unknown(fake_sameday):
    courier = Sameday(fake_sameday.username, fake_sameday.password, pickup_point_id=1, service_id=7,
                      base_url=fake_sameday.url, tokens=TokenCache(), sleep=Sleeps())
    fake_sameday.issued_at = "2026-11-01T07:00:00+0200"
    awb = courier.create_shipment(ro_request()).tracking_numbers[0]
    codes = table("sameday")
    for n, code in enumerate([*[c for c in codes if c != "1"], "999"]):
        fake_sameday.add_status(awb, int(code), f"status {code}", f"2026-11-01T08:{n:02d}:00+0200")
    [result] = courier.track([awb])
    assert {e.raw_code: e.status for e in result.events} == {**codes, "999": ShipmentStatus.UNKNOWN}
    assert result.status is ShipmentStatus.UNKNOWN


def test_every_shipx_status_maps_as_its_table_says_and_an_unmapped_one_is_unknown(fake_inpost):
    codes = table("inpost")
    number = "520000011395200025754311"
    fake_inpost.add_tracking(number, [(code, f"2026-11-01T08:{n:02d}:00.000+01:00")
                                      for n, code in enumerate([*codes, "teleported"])])
    [result] = InPost(fake_inpost.api_token, fake_inpost.organization_id, base_url=fake_inpost.url,
                      tokens=TokenCache(), sleep=Sleeps()).track([number])
    assert {e.raw_code: e.status for e in result.events} == {**codes, "teleported": ShipmentStatus.UNKNOWN}
    assert result.status is ShipmentStatus.UNKNOWN


@pytest.mark.parametrize("name", ["cargus", "dpd_romania", "dpd_polska"])
def test_descriptions_map_by_pattern_only_when_the_code_is_unmapped(name):
    statuses = MAPS[name].status_map
    data = json.loads((STATUS_MAPS / f"{name}.json").read_text(encoding="utf-8"))
    for code, entry in data["codes"].items():
        assert statuses.status(code, "Ceva nou / something new") is ShipmentStatus(entry["status"])
    for words, status in data["patterns"]:
        assert statuses.status(999, f"Colet {words.upper()} azi") is ShipmentStatus(status), words
    assert statuses.status(999, "Ceva nou / something new") is ShipmentStatus.UNKNOWN


def test_cargus_words_match_with_or_without_diacritics():
    assert Cargus.status_map.status(999, "Expeditie nelivrată, destinatar absent") is ShipmentStatus.FAILED_ATTEMPT
