"""One print file from many labels: A4 sheets with four A6 labels, 100x150 thermal pages, concatenated ZPL."""
from __future__ import annotations

import io
import os
import re
import shutil
import subprocess

import pytest
from pypdf import PdfReader

from connectors.couriers import print_sheet
from connectors.records import LabelDocument
from tests.fake_couriers import A4, A6, label_pdf, label_zpl, pdf_pages

THERMAL = print_sheet.THERMAL
LANDSCAPE_A6 = (A6[1], A6[0])


def a6_labels(count: int, size=A6) -> list[LabelDocument]:
    return [LabelDocument(label_pdf([f"AWB{n:04d}"], size), "pdf", "a6") for n in range(count)]


def all_of_size(pages, size) -> bool:
    return all(abs(w - size[0]) < 0.5 and abs(h - size[1]) < 0.5 for w, h in pages)


def test_ten_a6_labels_make_three_a4_sheets():
    document = print_sheet.compose(a6_labels(10), "a4_4up")
    pages = pdf_pages(document.content)
    assert len(pages) == 3 and all_of_size(pages, A4)
    assert (document.format, document.size) == ("pdf", "a4_4up")


def require_pdftotext() -> None:
    if shutil.which("pdftotext") is not None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("pdftotext (poppler-utils) is missing; under CI=true it must be installed")
    pytest.skip("pdftotext not installed (apt-get install poppler-utils)")


def test_labels_fill_the_sheet_in_reading_order(tmp_path):
    require_pdftotext()
    sheet = tmp_path / "sheet.pdf"
    sheet.write_bytes(print_sheet.compose(a6_labels(4), "a4_4up").content)
    html = subprocess.run(["pdftotext", "-bbox", str(sheet), "-"], capture_output=True, text=True, check=True,
                          timeout=60).stdout
    # Words as poppler lays them out on the page, y measured from the top.
    words = {m["word"]: (float(m["x"]), float(m["y"])) for m in re.finditer(
        r'<word xMin="(?P<x>[\d.]+)" yMin="(?P<y>[\d.]+)"[^>]*>(?P<word>AWB\d+)</word>', html)}
    top_left, top_right, bottom_left, bottom_right = (words[f"AWB{n:04d}"] for n in range(4))
    middle_x, middle_y = A4[0] / 2, A4[1] / 2
    assert top_left[0] < middle_x < top_right[0] and bottom_left[0] < middle_x < bottom_right[0]
    assert top_left[1] < middle_y < bottom_left[1] and top_right[1] < middle_y < bottom_right[1]


def test_a_document_with_several_labels_contributes_each_page():
    several = LabelDocument(label_pdf(["A", "B", "C", "D", "E"]), "pdf", "a6")
    assert len(pdf_pages(print_sheet.compose([several], "a4_4up").content)) == 2


def test_landscape_labels_are_turned_to_fit_the_portrait_quadrant():
    document = print_sheet.compose(a6_labels(2, LANDSCAPE_A6), "a4_4up")
    assert all_of_size(pdf_pages(document.content), A4)
    assert "AWB0001" in PdfReader(io.BytesIO(document.content)).pages[0].extract_text()


def test_thermal_output_puts_each_label_on_its_own_100x150_page():
    pages = pdf_pages(print_sheet.compose(a6_labels(3), "100x150").content)
    assert len(pages) == 3 and all_of_size(pages, THERMAL)


def test_labels_already_100x150_pass_through_unchanged():
    pages = pdf_pages(print_sheet.compose(a6_labels(2, THERMAL), "100x150").content)
    assert len(pages) == 2 and all_of_size(pages, THERMAL)


def test_a_large_batch_streams_from_a_generator_into_a_file(tmp_path):
    def stored_labels():
        for n in range(41):
            yield LabelDocument(label_pdf([f"AWB{n:04d}"]), "pdf", "a6")

    path = tmp_path / "batch.pdf"
    with path.open("wb") as out:
        sheets = print_sheet.write_a4_4up(stored_labels(), out)
    assert sheets == 11 and len(pdf_pages(path.read_bytes())) == 11


def test_zpl_labels_are_concatenated_for_the_printer():
    labels = [LabelDocument(label_zpl(["A1", "A2"]), "zpl", "100x150"), LabelDocument(label_zpl(["B1"]), "zpl", "100x150")]
    document = print_sheet.compose(labels, "100x150", "zpl")
    assert document.format == "zpl" and document.content.count(b"^XA") == 3
    assert document.content.index(b"A2") < document.content.index(b"B1")


def test_a_zpl_label_cannot_go_on_a_pdf_sheet():
    with pytest.raises(ValueError, match="zpl"):
        print_sheet.compose([LabelDocument(b"^XA^XZ", "zpl", "100x150")], "a4_4up")


def test_an_empty_batch_is_an_error_not_an_empty_pdf():
    with pytest.raises(ValueError, match="no label"):
        print_sheet.compose([], "a4_4up")


def test_a_label_page_rotated_for_display_is_placed_as_a_viewer_shows_it(tmp_path):
    from pypdf import PdfWriter

    require_pdftotext()
    # A label drawn landscape and marked /Rotate 90, the way some carriers deliver portrait A6 labels.
    writer = PdfWriter(clone_from=io.BytesIO(label_pdf(["AWB0000"], LANDSCAPE_A6)))
    writer.pages[0].rotate(90)
    rotated = io.BytesIO()
    writer.write(rotated)

    def word_box(pdf: bytes, name: str) -> tuple[float, ...]:
        path = tmp_path / name
        path.write_bytes(pdf)
        html = subprocess.run(["pdftotext", "-bbox", str(path), "-"], capture_output=True, text=True, check=True,
                              timeout=60).stdout
        found = re.search(r'xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">AWB0000<', html)
        return tuple(map(float, found.groups()))

    alone = word_box(rotated.getvalue(), "label.pdf")  # poppler applies /Rotate, as any viewer or printer does
    on_sheet = word_box(print_sheet.compose([LabelDocument(rotated.getvalue(), "pdf", "a6")], "a4_4up").content,
                        "sheet.pdf")
    # Same place and direction, give or take the 0.5 mm by which an A4 quarter is taller than A6.
    assert on_sheet == pytest.approx(alone, abs=2.0)


def test_a_label_of_another_size_is_fitted_onto_an_a6_page():
    cargus_size = (100 * print_sheet.MM, 140 * print_sheet.MM)
    pages = pdf_pages(print_sheet.compose(a6_labels(2, cargus_size), "a6").content)
    assert len(pages) == 2 and all_of_size(pages, A6)
