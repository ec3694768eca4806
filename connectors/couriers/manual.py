"""The manual courier: for shops without an API contract, staff scan or type the tracking number and we print our
own A6 label, with the shipment reference as a Code 128 barcode."""
from __future__ import annotations

import functools
import io
import unicodedata
from pathlib import Path
from typing import ClassVar

from reportlab.graphics.barcode.code128 import Code128
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

from connectors.couriers import print_sheet
from connectors.couriers.base import Capability, Courier, LabelFormat, LabelSize, Unsupported
from connectors.couriers.print_sheet import A6
from connectors.records import Address, LabelDocument, ShipmentRequest, ShipmentResult

_MARGIN = 6 * mm
_BARCODE_MARGIN = 4 * mm
_WIDEST_BAR = 0.6 * mm  # wide enough for a hand scanner at arm's length, narrow enough for long references
# Polish and Romanian names need glyphs (ł, ș, ț) that the PDF base fonts lack; DejaVu has them.
_FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))
_ASCII = str.maketrans({"ł": "l", "Ł": "L", "ß": "ss", "đ": "d", "Đ": "D"})


@functools.lru_cache(maxsize=1)
def _fonts() -> tuple[str, str]:
    """(regular, bold) font names: DejaVu Sans where installed, else the base Helvetica."""
    for folder in _FONT_DIRS:
        regular, bold = folder / "DejaVuSans.ttf", folder / "DejaVuSans-Bold.ttf"
        if regular.exists() and bold.exists():
            pdfmetrics.registerFont(TTFont("LabelSans", str(regular)))
            pdfmetrics.registerFont(TTFont("LabelSans-Bold", str(bold)))
            return "LabelSans", "LabelSans-Bold"
    return "Helvetica", "Helvetica-Bold"


def _printable(text: str) -> str:
    """Text the chosen font can draw: as is with DejaVu, without diacritics with Helvetica."""
    if _fonts()[0] != "Helvetica":
        return text
    decomposed = unicodedata.normalize("NFKD", text.translate(_ASCII))
    return "".join(ch for ch in decomposed if ord(ch) < 256 and not unicodedata.combining(ch))


def _address_lines(address: Address) -> list[str]:
    lines = [address.name, address.company, address.street, address.street2,
             " ".join(part for part in (address.postcode, address.city) if part),
             ", ".join(part for part in (address.region, address.country) if part), address.phone or ""]
    return [_printable(line) for line in lines if line]


def render_label(request: ShipmentRequest, tracking_number: str = "", *, courier_name: str = "") -> LabelDocument:
    """Our own A6 label: sender, recipient, reference as a Code 128 barcode, and the courier's number if known."""
    regular, bold = _fonts()
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pagesize=A6, pageCompression=1)
    page.setTitle(f"Label {request.reference}")
    width, height = A6
    top = height - _MARGIN

    page.setFont(regular, 7)
    page.drawString(_MARGIN, top - 7, "FROM")
    y = top - 16
    for line in _address_lines(request.sender)[:5]:
        page.drawString(_MARGIN, y, line[:60])
        y -= 9

    page.setFont(regular, 7)
    y -= 6
    page.drawString(_MARGIN, y, "TO")
    y -= 14
    page.setFont(bold, 11)
    for line in _address_lines(request.recipient)[:6]:
        page.drawString(_MARGIN, y, line[:38])
        y -= 14
    if request.pickup_point_id:
        page.drawString(_MARGIN, y, _printable(f"Pickup point: {request.pickup_point_id}"))
        y -= 14

    page.setFont(regular, 9)
    details = [f"Parcels: {len(request.parcels)}",
               f"Weight: {sum((p.weight_kg for p in request.parcels), start=0)} kg"]
    if request.cash_on_delivery is not None:
        details.append(f"COD: {request.cash_on_delivery.amount} {request.cash_on_delivery.currency}")
    page.drawString(_MARGIN, y - 4, "   ".join(details))
    if courier_name or tracking_number:
        page.drawString(_MARGIN, y - 16, _printable(" ".join(p for p in (courier_name, tracking_number) if p)))

    # The label's own margins are the quiet zone (ten bars of 0.6 mm); long references get thinner bars rather
    # than falling off the label.
    barcode = Code128(request.reference, barHeight=22 * mm, barWidth=_WIDEST_BAR, quiet=False)
    if barcode.width > width - 2 * _BARCODE_MARGIN:
        barcode = Code128(request.reference, barHeight=22 * mm, quiet=False,
                          barWidth=_WIDEST_BAR * (width - 2 * _BARCODE_MARGIN) / barcode.width)
    x = (width - barcode.width) / 2
    barcode.drawOn(page, x, _MARGIN + 12)
    page.setFont(bold, 12)
    page.drawCentredString(width / 2, _MARGIN, _printable(request.reference))
    page.showPage()
    page.save()
    return LabelDocument(buffer.getvalue(), "pdf", "a6")


class ManualCourier(Courier):
    """No API: the shipment exists once staff give its tracking number (or our reference stands in for one)."""

    name: ClassVar[str] = "manual"
    capabilities = frozenset({Capability.LABEL_PDF, Capability.SIZE_A6, Capability.COD})

    def __init__(self, display_name: str = "", **options):
        super().__init__(**options)
        self.display_name = display_name

    @property
    def account(self) -> str:
        return self.display_name

    def _create(self, request: ShipmentRequest) -> ShipmentResult:
        tracking_number = str(request.options.get("tracking_number") or "").strip()
        label = render_label(request, tracking_number, courier_name=self.display_name)
        return ShipmentResult(request.reference, (tracking_number,) if tracking_number else (), courier=self.name,
                              shipment_id=request.reference, label=label)

    def label(self, shipments, label_format=LabelFormat.PDF, size=LabelSize.A6) -> LabelDocument:
        """Reprints come from the label kept with the shipment: this courier knows no addresses of its own."""
        labels = []
        for shipment in shipments:
            if not isinstance(shipment, ShipmentResult) or shipment.label is None:
                raise Unsupported("the manual courier reprints only from the ShipmentResult that carries its label")
            labels.append(shipment.label)
        return print_sheet.compose(labels, LabelSize(size).value, LabelFormat(label_format).value)
