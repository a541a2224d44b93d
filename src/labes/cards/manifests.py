"""Shipment manifests (bordereau d'expédition, بيان إرسال): a CSV for the post office's systems and a
printable A4 PDF that travels with the cards and comes back signed by the receiving clerk.

The PDF has bilingual headings; Arabic is shaped by HarfBuzz (fpdf2's text shaping, `uharfbuzz`) and
laid out right to left by fpdf2's bidirectional algorithm, in DejaVu Sans (`LABES_PDF_FONT`). Without that
font or without `uharfbuzz` the manifest is still written, in Latin script only, and a warning says why.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from labes.pdf import BilingualPDF

from labes.cards.distribution import TUNIS
from labes.cards.models import Batch, Card, PickupPoint
from labes.cards.serials import display
from labes.registry.models import Person, Professional
from labes.registry.text import has_arabic

log = logging.getLogger("labes.cards.manifests")

CSV_COLUMNS = ("serial", "holder_name", "card_type", "governorate")
TYPE_LABELS = {"labes": ("Labes", "لاباس"), "amen": ("Amen", "أمان"), "professional": ("Professionnelle", "مهنية")}
POINT_LABELS = {"post_office": ("Bureau de poste", "مكتب بريد"), "fund_centre": ("Centre régional CNAM", "مركز جهوي"),
                "health_directorate": ("Direction régionale de la santé", "إدارة جهوية للصحة"),
                "mobile_centre": ("Centre mobile", "مركز متنقل")}

# Page layout (mm). Pagination is computed, not left to automatic breaks, so the page count is known in advance.
ROW_HEIGHT = 6.5
ROWS_FIRST_PAGE = 26
ROWS_NEXT_PAGES = 38
CLOSING_ROWS = 10  # the totals and the signature box take the height of this many rows


@dataclass(frozen=True)
class ManifestLine:
    serial: str
    holder_name: str
    holder_name_ar: str
    card_type: str
    governorate: str


@dataclass(frozen=True)
class Manifest:
    """Everything a manifest shows, read once from the database."""

    number: str
    created_at: datetime
    state: str
    point: PickupPoint
    lines: tuple[ManifestLine, ...]


def page_rows(cards: int) -> list[int]:
    """Return how many table rows each page of a manifest of `cards` cards holds (the last may hold none)."""
    pages, remaining, capacity = [], cards, ROWS_FIRST_PAGE
    while True:
        take = min(remaining, capacity)
        pages.append(take)
        remaining -= take
        if remaining == 0:
            if capacity - take < CLOSING_ROWS:
                pages.append(0)  # no room left for the totals and the signature box: they get their own page
            return pages
        capacity = ROWS_NEXT_PAGES


def load_manifest(session: Session, batch: Batch) -> Manifest:
    """Read the batch, its destination and its cards (with the holders' names in both scripts)."""
    point = session.get(PickupPoint, batch.point_id)
    rows = session.execute(
        select(Card.serial, Card.holder_name, Card.card_type, Card.governorate, Person.first_name_ar,
               Person.last_name_ar, Professional.name_ar)
        .outerjoin(Person, Person.id == Card.holder_person_id)
        .outerjoin(Professional, Professional.id == Card.holder_professional_id)
        .where(Card.batch_id == batch.id).order_by(Card.serial))
    lines = tuple(ManifestLine(r.serial, r.holder_name,
                               r.name_ar or " ".join(n for n in (r.first_name_ar, r.last_name_ar) if n),
                               r.card_type, r.governorate) for r in rows)
    created = batch.created_at if batch.created_at.tzinfo else batch.created_at.replace(tzinfo=UTC)
    return Manifest(batch.number, created, batch.state, point, lines)


def write_manifest(session: Session, batch: Batch, directory: Path) -> tuple[Path, Path]:
    """Write `<batch>.csv` and `<batch>.pdf` into `directory`; return their paths."""
    manifest = load_manifest(session, batch)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    csv_path, pdf_path = directory / f"{batch.number}.csv", directory / f"{batch.number}.pdf"
    write_csv(manifest, csv_path)
    render_pdf(manifest, pdf_path)
    return csv_path, pdf_path


def write_csv(manifest: Manifest, path: Path) -> None:
    """Write the cards of the manifest, one a line (UTF-8 with a BOM, so spreadsheets read the accents)."""
    with path.open("w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for line in manifest.lines:
            writer.writerow([display(line.serial), line.holder_name, line.card_type, line.governorate])


# ---------------------------------------------------------------- PDF


class _ManifestPDF(BilingualPDF):
    def __init__(self, manifest: Manifest, pages: int) -> None:
        super().__init__(title=f"Bordereau {manifest.number}", margins=(12, 12, 12))
        self.manifest, self.pages_total = manifest, pages

    def footer(self) -> None:
        self.set_y(-12)
        self.font(8)
        self.set_text_color(90)
        self.cell(0, 5, self.lat(f"Lot {self.manifest.number} - page {self.page_no()}/{self.pages_total}"), align="C")
        self.set_text_color(0)


# Table columns: (key, width mm, French heading, Arabic heading, alignment); the two names share one heading.
_COLUMNS = (("index", 10, "N°", "ر.ت", "R"), ("serial", 34, "Numéro de carte", "رقم البطاقة", "L"),
            ("name", 52, "Titulaire", "صاحب البطاقة", "L"), ("name_ar", 48, "", "", "R"),
            ("type", 30, "Type", "النوع", "L"), ("governorate", 12, "Gouv.", "الولاية", "C"))
_NAME_AR_WIDTH = 48


def _columns(pdf: _ManifestPDF) -> tuple[tuple[str, float, str, str, str], ...]:
    if pdf.arabic:
        return _COLUMNS
    # Latin only: the holder's name takes the room of the Arabic name too.
    return tuple((key, width + _NAME_AR_WIDTH if key == "name" else width, french, arabic, align)
                 for key, width, french, arabic, align in _COLUMNS if key != "name_ar")


def cards_ar(count: int) -> str:
    """Return "<count> card(s)" in Arabic, with the noun in the form the number calls for."""
    if count == 1:
        return "بطاقة واحدة"
    if count == 2:
        return "بطاقتان"
    return f"{count} {'بطاقات' if 3 <= count % 100 <= 10 else 'بطاقة'}"


def _header(pdf: _ManifestPDF, manifest: Manifest) -> float:
    point = manifest.point
    pdf.pair(12, "Caisse Nationale d'Assurance Maladie", "الصندوق الوطني للتأمين على المرض", size=12, bold=True)
    pdf.pair(18, "Distribution des cartes Labes et Amen", "توزيع بطاقات لاباس وأمان", size=9)
    pdf.set_line_width(0.5)
    pdf.line(pdf.l_margin, 25, pdf.w - pdf.r_margin, 25)
    pdf.set_line_width(0.2)
    pdf.pair(29, "Bordereau d'expédition de cartes", "بيان إرسال البطاقات", size=15, bold=True, h=8)
    day = manifest.created_at.astimezone(TUNIS).strftime("%d/%m/%Y")
    kind_fr, kind_ar = POINT_LABELS.get(point.kind, (point.kind, point.kind))
    rows = [
        ("Lot", manifest.number, "رقم الدفعة"),
        ("Date", day, "التاريخ"),
        ("Destination", f"{point.name_fr} ({point.code})", "الوجهة"),
        ("", point.name_ar, ""),
        ("Type", kind_fr, ""),
        ("Adresse", point.address_fr or "", "العنوان"),
        ("", point.address_ar or "", ""),
        ("Horaires", point.hours_fr or "", "التوقيت"),
        ("", point.hours_ar or "", ""),
    ]
    y = 40
    for label_fr, value, label_ar in rows:
        arabic_value = has_arabic(value)
        if not value or (arabic_value and not pdf.arabic):
            continue
        pdf.set_xy(pdf.l_margin, y)
        pdf.font(9, bold=True)
        pdf.cell(26, 5.5, pdf.lat(label_fr))
        pdf.font(10, bold=label_fr in ("Lot", "Destination"))
        pdf.cell(pdf.epw - 52, 5.5, value if arabic_value else pdf.lat(value), align="R" if arabic_value else "L")
        pdf.font(9, bold=True)
        pdf.cell(26, 5.5, pdf.ar(label_ar), align="R")
        y += 5.5
    return y + 4


def _table_head(pdf: _ManifestPDF, y: float) -> float:
    pdf.set_fill_color(225, 232, 240)
    x = pdf.l_margin
    for key, width, french, arabic, _align in _columns(pdf):
        pdf.font(8, bold=True)
        pdf.set_xy(x, y)
        if key == "name_ar":
            continue
        if key == "name" and pdf.arabic:  # "Titulaire … صاحب البطاقة" over both names
            span = width + _NAME_AR_WIDTH
            pdf.cell(span / 2, 5, french, border="LT", align="L", fill=True)
            pdf.cell(span / 2, 5, arabic, border="TR", align="R", fill=True)
            pdf.set_xy(x, y + 5)
            pdf.font(7)
            pdf.cell(width, 5, "en lettres latines", border="LBR", align="C", fill=True)
            pdf.cell(_NAME_AR_WIDTH, 5, "بالحروف العربية", border="BR", align="C", fill=True)
            x += span
            continue
        pdf.cell(width, 5, pdf.lat(french), border="LTR", align="C", fill=True)
        pdf.set_xy(x, y + 5)
        pdf.cell(width, 5, pdf.ar(arabic), border="LBR", align="C", fill=True)
        x += width
    return y + 10


def _table_rows(pdf: _ManifestPDF, y: float, lines: list[tuple[int, ManifestLine]]) -> float:
    for index, line in lines:
        type_fr, type_ar = TYPE_LABELS.get(line.card_type, (line.card_type, ""))
        values = {"index": str(index), "serial": display(line.serial), "name": pdf.lat(line.holder_name),
                  "name_ar": pdf.ar(line.holder_name_ar), "type": f"{type_fr} {pdf.ar(type_ar)}".strip(),
                  "governorate": line.governorate}
        x = pdf.l_margin
        for key, width, _french, _arabic, align in _columns(pdf):
            text = values[key]
            pdf.set_xy(x, y)
            pdf.font(8.5)
            # A name longer than its column is shrunk, never cut or spilled over the next column.
            while text and pdf.get_string_width(text) > width - 2 and pdf.font_size_pt > 5.5:
                pdf.set_font_size(pdf.font_size_pt - 0.5)
            pdf.cell(width, ROW_HEIGHT, text, border=1, align=align)
            x += width
        y += ROW_HEIGHT
    return y


def _closing(pdf: _ManifestPDF, manifest: Manifest, y: float) -> None:
    counts = Counter(line.card_type for line in manifest.lines)
    order = [t for t in TYPE_LABELS if counts[t]]
    total = len(manifest.lines)
    y += 3
    pdf.pair(y, f"Total : {total} carte{'s' if total > 1 else ''}", f"المجموع: {cards_ar(total)}", size=10, bold=True)
    pdf.pair(y + 5.5, " - ".join(f"{TYPE_LABELS[t][0]} : {counts[t]}" for t in order),
             " - ".join(f"{TYPE_LABELS[t][1]}: {counts[t]}" for t in order), size=9)
    y += 13
    height = 45
    pdf.rect(pdf.l_margin, y, pdf.epw, height)
    pdf.pair(y + 1.5, "  Réception par l'agent du point de retrait", "استلام من طرف عون نقطة السحب  ", size=10, bold=True)
    fields = (("Nom et prénom", "الاسم واللقب"), ("Cartes reçues", "عدد البطاقات المستلمة"),
              ("Date de réception", "تاريخ الاستلام"), ("Signature et cachet", "الإمضاء والختم"))
    for row, (french, arabic) in enumerate(fields):
        line_y = y + 10 + row * 8.5
        pdf.pair(line_y, f"  {french} :", f"{arabic}:  ", size=9)
        pdf.set_draw_color(150)
        pdf.set_dash_pattern(dash=1, gap=1)
        pdf.line(pdf.l_margin + 48, line_y + 5, pdf.w - pdf.r_margin - 48, line_y + 5)
        pdf.set_dash_pattern()
        pdf.set_draw_color(0)


def render_pdf(manifest: Manifest, path: Path) -> int:
    """Write the printable A4 manifest to `path`; return its page count."""
    layout = page_rows(len(manifest.lines))
    pdf = _ManifestPDF(manifest, len(layout))
    numbered = list(enumerate(manifest.lines, start=1))
    start = 0
    for page, rows in enumerate(layout):
        pdf.add_page()
        if page == 0:
            y = _header(pdf, manifest)
        else:
            pdf.pair(12, f"Bordereau {manifest.number} (suite)", "بيان إرسال البطاقات (تابع)", size=10, bold=True)
            y = 22
        if rows:
            y = _table_rows(pdf, _table_head(pdf, y), numbered[start:start + rows])
            start += rows
        if page == len(layout) - 1:
            _closing(pdf, manifest, y)
    pdf.output(str(path))
    return len(layout)
