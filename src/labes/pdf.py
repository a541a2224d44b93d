"""The fund's bilingual printed documents (shipment manifests, tax certificates): French left, Arabic right.

fpdf2 lays out the page; HarfBuzz (uharfbuzz) shapes Arabic and orders it right to left. Without a font
that has Arabic, documents are still written, in Latin script only, and a warning says why.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path

from fpdf import FPDF

DEFAULT_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
log = logging.getLogger("labes.pdf")


@lru_cache
def fonts() -> tuple[str, str] | None:
    """Return the (regular, bold) font files for Arabic and Latin, or None to fall back to Latin only."""
    regular = Path(os.environ.get("LABES_PDF_FONT", DEFAULT_FONT))
    if not regular.is_file():
        log.warning("PDF font %s not found: documents are written in Latin script only, without Arabic "
                    "(install fonts-dejavu-core or set LABES_PDF_FONT)", regular)
        return None
    try:
        import uharfbuzz  # noqa: F401  (fpdf2 shapes Arabic with it)
    except ImportError:
        log.warning("uharfbuzz is not installed: Arabic cannot be shaped, so documents are written in Latin script only")
        return None
    bold = regular.with_name(regular.stem + "-Bold" + regular.suffix)
    return str(regular), str(bold if bold.is_file() else regular)


class BilingualPDF(FPDF):
    """An A4 page with the fund's fonts and helpers for French-and-Arabic lines."""

    def __init__(self, *, title: str, margins: tuple[float, float, float]) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.set_margins(*margins)
        self.set_auto_page_break(False)
        self.set_creator("Labes")
        self.set_title(title)
        found = fonts()
        self.arabic = found is not None
        if found:
            self.add_font("body", "", found[0])
            self.add_font("body", "B", found[1])
            self.set_text_shaping(True)
            self.family = "body"
        else:
            self.family = "helvetica"

    # In Latin-only mode, Arabic is left out and other text is reduced to Latin-1.
    def ar(self, text: str | None) -> str:
        return (text or "") if self.arabic else ""

    def lat(self, text: str | None) -> str:
        text = text or ""
        return text if self.arabic else text.encode("latin-1", "replace").decode("latin-1")

    def font(self, size: float, bold: bool = False) -> None:
        self.set_font(self.family, "B" if bold else "", size)

    def pair(self, y: float, french: str, arabic: str, *, size: float = 10, bold: bool = False, h: float = 6) -> None:
        """One line with French on the left and Arabic on the right."""
        self.font(size, bold)
        width = self.epw / 2
        self.set_xy(self.l_margin, y)
        self.cell(width, h, self.lat(french), align="L")
        self.set_xy(self.l_margin + width, y)
        self.cell(width, h, self.ar(arabic), align="R")
