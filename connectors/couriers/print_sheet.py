"""One print file from many labels: four A6 labels per A4 sheet, 100x150 mm thermal pages, or concatenated ZPL.

Labels are read one document at a time from any iterable (a generator over stored labels is fine). Each label
page becomes a form XObject drawn on the sheet through a transformation matrix: nothing is rasterised, text stays
sharp, and the labels' content streams are copied as they were encoded, not decoded, parsed or rewritten
(several times faster than merge_transformed_page on a 500-label batch).
"""
from __future__ import annotations

import io
from typing import Any, BinaryIO, Iterable, Iterator

from pypdf import PageObject, PdfReader, PdfWriter, Transformation
from pypdf.generic import (
    ArrayObject, DecodedStreamObject, DictionaryObject, FloatObject, IndirectObject, NameObject, StreamObject,
)

from connectors.records import LabelDocument

MM = 72 / 25.4
A4 = (210 * MM, 297 * MM)
A6 = (105 * MM, 148 * MM)
THERMAL = (100 * MM, 150 * MM)
SIZES = {"a4_4up": A4, "a6": A6, "100x150": THERMAL}
# Reading order on the sheet: top left, top right, bottom left, bottom right.
_QUADRANTS = ((0.0, A4[1] / 2), (A4[0] / 2, A4[1] / 2), (0.0, 0.0), (A4[0] / 2, 0.0))


def label_pages(labels: Iterable[LabelDocument]) -> Iterator[PageObject]:
    """Every page of every PDF label, in order."""
    for label in labels:
        if label.format != "pdf":
            raise ValueError(f"a {label.format} label cannot go on a PDF sheet")
        yield from PdfReader(io.BytesIO(label.content)).pages


def _fit(page: PageObject, box: tuple[float, float], origin: tuple[float, float]) -> Transformation:
    """Move `page` into a box of `box` size at `origin`: upright, as large as fits, centred."""
    left, bottom = float(page.mediabox.left), float(page.mediabox.bottom)
    width, height = float(page.mediabox.width), float(page.mediabox.height)
    move = Transformation().translate(-left, -bottom)
    # Merging copies the content stream only, so a page's /Rotate (clockwise, for display) is applied here.
    turn = int(page.get("/Rotate", 0) or 0) % 360
    if turn == 90:
        move, width, height = move.rotate(-90).translate(0, width), height, width
    elif turn == 180:
        move = move.rotate(180).translate(width, height)
    elif turn == 270:
        move, width, height = move.rotate(90).translate(height, 0), height, width
    if (width > height) != (box[0] > box[1]):  # a landscape label on a portrait slot: turn it
        move = move.rotate(90).translate(height, 0)
        width, height = height, width
    scale = min(box[0] / width, box[1] / height)
    x = origin[0] + (box[0] - width * scale) / 2
    y = origin[1] + (box[1] - height * scale) / 2
    return move.scale(scale, scale).translate(x, y)


def _form_stream(label: PageObject, writer: PdfWriter) -> StreamObject:
    """The label's drawing as a stream for a form XObject. A single content stream is copied as the courier
    encoded it (its filters kept): no decoding and re-compressing per label. Several streams are joined."""
    raw = label.raw_get("/Contents") if "/Contents" in label else None
    stream = raw.get_object() if raw is not None else None
    form = DecodedStreamObject()
    if isinstance(stream, StreamObject):
        form.set_data(stream._data)  # the encoded bytes, exactly as read
        for key in ("/Filter", "/DecodeParms"):
            if key in stream:
                form[NameObject(key)] = stream[key].clone(writer)
        return form
    contents = label.get_contents()
    form.set_data(contents.get_data() if contents is not None else b"")
    return form.flate_encode()


def _signature(value: Any) -> tuple:
    """What a resources dictionary says, with references by number: equal signatures from one document are
    the same resources (a courier's labels all use the same fonts), so they are copied once."""
    if isinstance(value, IndirectObject):
        return ("R", value.idnum, value.generation)
    if isinstance(value, DictionaryObject) and not isinstance(value, StreamObject):
        return ("D",) + tuple(sorted((str(key), _signature(item)) for key, item in dict.items(value)))
    if isinstance(value, ArrayObject):
        return ("A",) + tuple(_signature(item) for item in list.__iter__(value))
    if isinstance(value, StreamObject):
        return ("S", id(value))
    return ("V", repr(value))


class _SharedResources:
    """Each distinct resources dictionary of each source document, copied into the writer once."""

    def __init__(self, writer: PdfWriter):
        self.writer = writer
        self._copies: dict[tuple, tuple[Any, IndirectObject]] = {}  # the source document kept alive: its id stays its own

    def of(self, label: PageObject) -> IndirectObject:
        raw = label.raw_get("/Resources") if "/Resources" in label else DictionaryObject()
        key = (id(label.pdf), _signature(raw))
        found = self._copies.get(key)
        if found is None:
            copy = self.writer._add_object(raw.get_object().clone(self.writer))
            found = self._copies[key] = (label.pdf, copy)
        return found[1]


class _Sheet:
    """One output page whose content is "draw these label forms here"."""

    def __init__(self, writer: PdfWriter, size: tuple[float, float], resources: _SharedResources | None = None):
        self.writer, self.page = writer, writer.add_blank_page(*size)
        self.resources = resources or _SharedResources(writer)
        self.forms = DictionaryObject()
        self.ops: list[bytes] = []

    def place(self, label: PageObject, where: Transformation) -> None:
        form = _form_stream(label, self.writer)
        box = label.mediabox
        form.update({
            NameObject("/Type"): NameObject("/XObject"), NameObject("/Subtype"): NameObject("/Form"),
            NameObject("/BBox"): ArrayObject([FloatObject(box.left), FloatObject(box.bottom),
                                              FloatObject(box.right), FloatObject(box.top)]),
            NameObject("/Resources"): self.resources.of(label),
        })
        name = f"/L{len(self.forms)}"
        self.forms[NameObject(name)] = self.writer._add_object(form)
        matrix = " ".join(f"{value:.6f}" for value in where.ctm)
        self.ops.append(f"q {matrix} cm {name} Do Q\n".encode())

    def close(self) -> None:
        content = DecodedStreamObject()
        content.set_data(b"".join(self.ops))
        self.page[NameObject("/Contents")] = self.writer._add_object(content)
        self.page[NameObject("/Resources")] = DictionaryObject({NameObject("/XObject"): self.forms})


def write_a4_4up(labels: Iterable[LabelDocument], out: BinaryIO) -> int:
    """Four labels per A4 sheet (A6 quadrants); returns the number of sheets written."""
    writer = PdfWriter()
    resources = _SharedResources(writer)
    sheet: _Sheet | None = None
    placed = 0
    for page in label_pages(labels):
        slot = placed % 4
        if slot == 0:
            if sheet is not None:
                sheet.close()
            sheet = _Sheet(writer, A4, resources)
        sheet.place(page, _fit(page, A6, _QUADRANTS[slot]))
        placed += 1
    if sheet is None:
        raise ValueError("no label pages to print")
    sheet.close()
    writer.write(out)
    return len(writer.pages)


def _one_per_page(labels: Iterable[LabelDocument], out: BinaryIO, size: tuple[float, float]) -> int:
    writer = PdfWriter()
    resources = _SharedResources(writer)
    for page in label_pages(labels):
        width, height = float(page.mediabox.width), float(page.mediabox.height)
        if abs(width - size[0]) < 1 and abs(height - size[1]) < 1 and not page.get("/Rotate"):
            writer.add_page(page)  # already the right size: passes through untouched
            continue
        sheet = _Sheet(writer, size, resources)
        sheet.place(page, _fit(page, size, (0.0, 0.0)))
        sheet.close()
    if len(writer.pages) == 0:
        raise ValueError("no label pages to print")
    writer.write(out)
    return len(writer.pages)


def write_100x150(labels: Iterable[LabelDocument], out: BinaryIO) -> int:
    """One label per 100x150 mm page for thermal printers; pages already that size pass through untouched."""
    return _one_per_page(labels, out, THERMAL)


def write_a6(labels: Iterable[LabelDocument], out: BinaryIO) -> int:
    """One label per A6 page; A6 labels pass through, other sizes (10x14, 10x15) are fitted onto A6."""
    return _one_per_page(labels, out, A6)


def write_zpl(labels: Iterable[LabelDocument], out: BinaryIO) -> int:
    """ZPL labels back to back, each ending in a newline, ready for a raw printer queue (TCP 9100)."""
    count = 0
    for label in labels:
        if label.format != "zpl":
            raise ValueError(f"a {label.format} label cannot go into a ZPL stream")
        body = label.content.strip()
        if body:
            out.write(body + b"\n")
            count += body.count(b"^XZ")
    return count


def compose(labels: Iterable[LabelDocument], size: str = "a4_4up", label_format: str = "pdf") -> LabelDocument:
    """One LabelDocument in memory; use the write_* functions to stream a large batch to a file instead."""
    out = io.BytesIO()
    size, label_format = getattr(size, "value", size), getattr(label_format, "value", label_format)
    if label_format == "zpl":
        write_zpl(labels, out)
    elif size == "a4_4up":
        write_a4_4up(labels, out)
    elif size == "100x150":
        write_100x150(labels, out)
    elif size == "a6":
        write_a6(labels, out)
    else:
        raise ValueError(f"unknown label size {size!r}")
    return LabelDocument(out.getvalue(), label_format, size)
