"""The manual courier: staff give the tracking number, we print our own A6 label whose barcode scans back to the
reference (rendered with poppler, read with zbar)."""
from __future__ import annotations

import io
import os
import shutil
import subprocess

import pytest
from pypdf import PdfReader

from connectors.couriers import Capability, ManualCourier, Unsupported, make
from connectors.records import Address
from tests.fake_couriers import A4, A6, pdf_pages, pl_request, ro_request

IN_CI = os.environ.get("CI", "").lower() == "true"


def require_binaries(*names: str) -> None:
    missing = [name for name in names if shutil.which(name) is None]
    if not missing:
        return
    message = f"{', '.join(missing)} not installed (apt-get install poppler-utils zbar-tools)"
    if IN_CI:
        pytest.fail(f"{message}; under CI=true they must be")
    pytest.skip(message)


def decode_barcodes(pdf: bytes, tmp_path, dpi: int = 200) -> list[str]:
    require_binaries("pdftoppm", "zbarimg")
    source = tmp_path / "label.pdf"
    source.write_bytes(pdf)
    subprocess.run(["pdftoppm", "-r", str(dpi), "-png", str(source), str(tmp_path / "page")], check=True,
                   timeout=60)
    found = []
    for image in sorted(tmp_path.glob("page*.png")):
        scan = subprocess.run(["zbarimg", "--quiet", "--raw", "-Scode128.enable", str(image)], capture_output=True,
                              text=True, timeout=60)
        found += [line for line in scan.stdout.splitlines() if line]
    return found


def test_the_manual_label_is_one_a6_page_carrying_the_scanned_tracking_number():
    result = ManualCourier("Poczta Polska (umowa własna)").create_shipment(
        pl_request("ZAM-2048", options={"tracking_number": "PX1234567890"}))
    assert result.tracking_numbers == ("PX1234567890",) and result.courier == "manual"
    pages = pdf_pages(result.label.content)
    assert len(pages) == 1 and abs(pages[0][0] - A6[0]) < 0.5 and abs(pages[0][1] - A6[1]) < 0.5
    text = PdfReader(io.BytesIO(result.label.content)).pages[0].extract_text()
    assert "PX1234567890" in text and "Zofia Nowak" in text


def test_the_barcode_on_the_manual_label_decodes_to_the_reference(tmp_path):
    result = ManualCourier().create_shipment(ro_request("CMD-2026-00042"))
    assert decode_barcodes(result.label.content, tmp_path) == ["CMD-2026-00042"]


def test_a_long_reference_gets_thinner_bars_and_still_scans_at_300_dpi(tmp_path):
    reference = "SHOP-KWIACIARNIA-ROZA-ORDER-1000234"
    result = ManualCourier().create_shipment(ro_request(reference))
    assert decode_barcodes(result.label.content, tmp_path, dpi=300) == [reference]


def test_manual_labels_reprint_four_to_an_a4_sheet_and_still_scan(tmp_path):
    courier = ManualCourier()
    results = [courier.create_shipment(ro_request(f"CMD-{n}")) for n in range(5)]
    document = courier.label(results, size="a4_4up")
    pages = pdf_pages(document.content)
    assert len(pages) == 2 and all(abs(w - A4[0]) < 0.5 and abs(h - A4[1]) < 0.5 for w, h in pages)
    assert sorted(decode_barcodes(document.content, tmp_path, dpi=300)) == [f"CMD-{n}" for n in range(5)]


def test_polish_and_romanian_letters_are_printed_as_written():
    from connectors.couriers.manual import _fonts

    if _fonts()[0] == "Helvetica":  # the base fonts have no ł, ș, ț: labels fall back to letters without marks
        if IN_CI:
            pytest.fail("DejaVu Sans is missing; under CI=true install fonts-dejavu-core")
        pytest.skip("DejaVu Sans not installed (apt-get install fonts-dejavu-core)")
    recipient = Address(name="Łukasz Żółć", street="Strada Ștefan cel Mare 3", city="Târgu Mureș", country="RO")
    result = ManualCourier().create_shipment(ro_request(recipient=recipient))
    text = PdfReader(io.BytesIO(result.label.content)).pages[0].extract_text()
    assert "Łukasz Żółć" in text and "Târgu Mureș" in text


def test_the_manual_courier_declares_it_cannot_track_and_says_so_when_asked():
    courier = make("manual")
    assert courier.can(Capability.LABEL_PDF) and not courier.can(Capability.TRACKING)
    with pytest.raises(Unsupported):
        courier.track(["PX1"])
    with pytest.raises(Unsupported):
        courier.label(["PX1"])  # a bare number: the label lives with its ShipmentResult
