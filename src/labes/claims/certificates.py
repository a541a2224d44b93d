"""The annual certificate of tax withheld at source (certificat de retenue à la source, شهادة في الخصم من المورد).

One certificate per provider and year: the fund's identity, the payee's identity, address and tax ID,
one row per statement paid that year (date, gross, withheld, net) and the totals, in French and Arabic.

The fund's seal makes it checkable offline. The certificate's figures, as canonical JSON (UTF-8, keys
sorted, no spaces; amounts in millimes), are signed with the seal key (ECDSA P-256 over SHA-256). The
QR code carries `LBTX1|<certificate id>|<signature, base64url r‖s>`; the signed JSON travels inside the
PDF as the attachment `certificate.json`, and its SHA-256 is printed. Anyone holding the fund's seal
certificate checks a copy with `verify_certificate_code(public_key, code, data)`: a changed figure fails.

The fund's own address and tax ID come from `LABES_FUND_ADDRESS` and `LABES_FUND_TAX_ID` (no default
could be sourced: unset, the certificate says so).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import rfc8785
import segno
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.orm import Session

from labes.pdf import BilingualPDF

from labes.cards.crypto import Authority, raw_signature, verify_raw
from labes.claims.payments import find_provider, payee_key, statements_of
from labes.errors import NotFound

log = logging.getLogger("labes.claims.certificates")

CODE_PREFIX = "LBTX1"
DATA_VERSION = 1
ATTACHMENT = "certificate.json"
REGIME_LABELS = {"actual": ("Régime réel", "النظام الحقيقي"), "flat": ("Régime forfaitaire", "النظام التقديري")}


@dataclass(frozen=True)
class FundIdentity:
    """Who withholds: the fund's names, address and tax ID (matricule fiscal, المعرف الجبائي)."""

    name_fr: str = "Caisse Nationale d'Assurance Maladie"
    name_ar: str = "الصندوق الوطني للتأمين على المرض"
    address: str | None = None
    tax_id: str | None = None

    @classmethod
    def from_settings(cls) -> FundIdentity:
        """Read the fund's address and tax ID from the settings (`LABES_FUND_ADDRESS`, `LABES_FUND_TAX_ID`)."""
        from labes.config import get_settings

        settings = get_settings()
        return cls(address=settings.fund_address or None, tax_id=settings.fund_tax_id or None)


@dataclass(frozen=True)
class CertificateLine:
    """One statement paid in the year."""

    statement: str
    paid_on: date
    rate_permille: int
    gross_millimes: int
    withheld_millimes: int
    net_millimes: int


@dataclass(frozen=True)
class Certificate:
    """Everything one annual certificate shows, read once from the database."""

    id: str
    year: int
    issued_on: date
    fund: FundIdentity
    payee_kind: str  # professional or facility
    payee_identifier: str  # licence or facility code
    payee_name: str
    payee_name_ar: str
    payee_address: str | None
    payee_governorate: str | None
    payee_tax_id: str | None
    tax_regime: str
    lines: tuple[CertificateLine, ...]

    @property
    def gross_millimes(self) -> int:
        return sum(line.gross_millimes for line in self.lines)

    @property
    def withheld_millimes(self) -> int:
        return sum(line.withheld_millimes for line in self.lines)

    @property
    def net_millimes(self) -> int:
        return sum(line.net_millimes for line in self.lines)

    def data(self) -> dict[str, Any]:
        """Return the figures the seal signs (JSON-ready; amounts in millimes)."""
        return {
            "version": DATA_VERSION,
            "certificate": self.id,
            "year": self.year,
            "issued_on": self.issued_on.isoformat(),
            "payer": {"name": self.fund.name_fr, "tax_id": self.fund.tax_id},
            "payee": {"kind": self.payee_kind, "identifier": self.payee_identifier, "name": self.payee_name,
                      "tax_id": self.payee_tax_id, "address": self.payee_address, "tax_regime": self.tax_regime},
            "statements": [{"number": line.statement, "paid_on": line.paid_on.isoformat(),
                            "rate_permille": line.rate_permille, "gross": line.gross_millimes,
                            "withheld": line.withheld_millimes, "net": line.net_millimes} for line in self.lines],
            "totals": {"gross": self.gross_millimes, "withheld": self.withheld_millimes, "net": self.net_millimes},
        }


# ---------------------------------------------------------------- reading


def annual_certificate(session: Session, *, provider: str, year: int, issued_on: date,
                       fund: FundIdentity | None = None) -> Certificate:
    """Gather the statements of `provider` (licence or facility code) paid in `year` into a certificate."""
    payee = find_provider(session, provider)
    kind, _ = payee_key(payee)
    identifier = payee.licence if kind == "professional" else payee.code
    statements = statements_of(session, payee_kind=kind, payee_id=payee.id, year=year)
    if not statements:
        raise NotFound(f"The fund paid {identifier} nothing in {year}: there is no tax withheld to certify.",
                       field="year")
    regimes = {s.tax_regime for s in statements if s.tax_regime}
    return Certificate(
        id=f"RS-{year}-{identifier}", year=year, issued_on=issued_on, fund=fund or FundIdentity.from_settings(),
        payee_kind=kind, payee_identifier=identifier, payee_name=payee.name_lat, payee_name_ar=payee.name_ar,
        payee_address=payee.address, payee_governorate=payee.governorate, payee_tax_id=payee.tax_id,
        # A regime changed during the year shows both; each statement keeps its own rate.
        tax_regime="+".join(sorted(regimes)) or "actual",
        lines=tuple(CertificateLine(s.number, s.paid_on, s.tax_rate_permille, s.gross_millimes,
                                    s.tax_withheld_millimes, s.net_millimes) for s in statements),
    )


# ---------------------------------------------------------------- the seal


def canonical(data: Mapping[str, Any]) -> bytes:
    """Return the bytes the seal signs: the figures in RFC 8785 canonical JSON, as the point of care signs."""
    return rfc8785.dumps(data)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def seal_code(seal: Authority, data: Mapping[str, Any]) -> str:
    """Sign the certificate's data with the fund's seal; return the QR code's text."""
    signature = raw_signature(seal.key.sign(canonical(data), ec.ECDSA(hashes.SHA256())))
    return f"{CODE_PREFIX}|{data['certificate']}|{_b64(signature)}"


def verify_certificate_code(public_key: ec.EllipticCurvePublicKey, code: str, data: Mapping[str, Any] | bytes) -> str:
    """Check a certificate's code against its data (the dict, or the attached JSON's bytes) offline.

    Return the certificate id; raise ValueError if the code is not the fund's or the data was changed.
    """
    parts = code.strip().split("|")
    if len(parts) != 3 or parts[0] != CODE_PREFIX:
        raise ValueError(f"This is not a Labes tax certificate code (expected {CODE_PREFIX}|id|signature).")
    if isinstance(data, bytes | bytearray):
        signed, fields = bytes(data), json.loads(data)
    else:
        signed, fields = canonical(data), data
    if fields.get("certificate") != parts[1]:
        raise ValueError(f"The code is for certificate {parts[1]}, the data for {fields.get('certificate')}.")
    try:
        raw = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
    except ValueError:
        raise ValueError("The code's signature is not readable.") from None
    if len(raw) != 64 or not verify_raw(public_key, raw, signed):
        raise ValueError("The seal does not match: this certificate was not issued by the fund, or its figures "
                         "were changed.")
    return parts[1]


def attached_data(pdf: bytes) -> bytes:
    """Return the signed JSON attached to a certificate PDF (as written: the attachment is not compressed)."""
    found = re.search(rb"/Type /EmbeddedFile.*?stream\r?\n(.*?)\r?\nendstream", pdf, re.DOTALL)
    if found is None:
        raise ValueError(f"This PDF carries no {ATTACHMENT}.")
    return found[1]


# ---------------------------------------------------------------- PDF


def _amount(millimes: int, thousands: str = " ") -> str:
    """Format millimes as dinars, e.g. `1 234.567`; Arabic text takes no separator (bidi would split the number)."""
    sign = "-" if millimes < 0 else ""
    whole, rest = divmod(abs(millimes), 1000)
    return f"{sign}{whole:,}".replace(",", thousands) + f".{rest:03d}"


def _day(value: date) -> str:
    return value.strftime("%d/%m/%Y")


class _CertificatePDF(BilingualPDF):
    BOTTOM = 284.0  # the footer starts 12 mm from the bottom edge

    def __init__(self, certificate: Certificate) -> None:
        super().__init__(title=f"Certificat de retenue à la source {certificate.id}", margins=(15, 12, 15))
        self.certificate = certificate

    def field(self, y: float, french: str, value: str | None, arabic: str, *, value_ar: str | None = None,
              bold: bool = False) -> float:
        """A labelled value: the French label on the left, the value (Latin left, Arabic right), the Arabic label."""
        width = self.epw - 76
        value_ar = self.ar(value_ar)
        self.set_xy(self.l_margin + 2, y)
        self.font(8.5, bold=True)
        self.cell(36, 5.5, self.lat(french))
        value = self.lat(value)
        for text, align, room in ((value, "L", width / 2 if value_ar else width), (value_ar, "R", width / 2 if value else width)):
            if not text:
                continue
            self.font(9.5, bold=bold)
            # A long value is shrunk, never cut or spilled over its neighbour.
            while self.get_string_width(text) > room - 2 and self.font_size_pt > 6:
                self.set_font_size(self.font_size_pt - 0.5)
            self.set_xy(self.l_margin + 38 + (width - room if align == "R" else 0), y)
            self.cell(room, 5.5, text, align=align)
        self.set_xy(self.l_margin + 38 + width, y)
        self.font(8.5, bold=True)
        self.cell(36, 5.5, self.ar(arabic), align="R")
        return y + 5.5

    def footer(self) -> None:
        self.set_y(-12)
        self.font(7.5)
        self.set_text_color(90)
        self.cell(0, 5, self.lat(f"{self.certificate.id} - page {self.page_no()}"), align="C")
        self.set_text_color(0)


def _header(pdf: _CertificatePDF, c: Certificate) -> float:
    pdf.pair(12, c.fund.name_fr, c.fund.name_ar, size=12, bold=True)
    pdf.pair(17.5, "Paiement des prestataires de soins", "خلاص مسدي الخدمات الصحية", size=9)
    pdf.set_line_width(0.5)
    pdf.line(pdf.l_margin, 24, pdf.w - pdf.r_margin, 24)
    pdf.set_line_width(0.2)
    pdf.pair(27, "Certificat de retenue à la source", "شهادة في الخصم من المورد", size=15, bold=True, h=8)
    pdf.pair(35.5, f"Année {c.year}", f"بعنوان سنة {c.year}", size=11, bold=True)
    pdf.pair(41.5, f"N° {c.id} - délivré le {_day(c.issued_on)}", f"عدد {c.id} بتاريخ {_day(c.issued_on)}", size=9)
    y = _box(pdf, 49, "Organisme payeur", "الجهة الدافعة", [
        ("Dénomination", c.fund.name_fr, None, "التسمية"),
        ("", None, c.fund.name_ar, ""),
        ("Adresse", c.fund.address or "non renseignée (LABES_FUND_ADDRESS)", None, "العنوان"),
        ("Matricule fiscal", c.fund.tax_id or "non renseigné (LABES_FUND_TAX_ID)", None, "المعرف الجبائي"),
    ])
    regimes = c.tax_regime.split("+")
    regime = " + ".join(REGIME_LABELS.get(r, (r, ""))[0] for r in regimes)
    regime_ar = " + ".join(REGIME_LABELS.get(r, ("", r))[1] for r in regimes)
    if c.payee_kind == "facility":
        regime += " (par défaut, établissement)"
    address = ", ".join(part for part in (c.payee_address, c.payee_governorate) if part)
    return _box(pdf, y + 3, "Bénéficiaire", "المنتفع", [
        ("Nom", c.payee_name, c.payee_name_ar, "الاسم"),
        ("Code CNAM" if c.payee_kind == "facility" else "N° d'agrément", c.payee_identifier, None, "المعرف لدى الصندوق"),
        ("Adresse", address or "-", None, "العنوان"),
        ("Matricule fiscal", c.payee_tax_id or "-", None, "المعرف الجبائي"),
        ("Régime fiscal", regime, regime_ar, "النظام الجبائي"),
    ])


def _box(pdf: _CertificatePDF, y: float, french: str, arabic: str,
         rows: list[tuple[str, str | None, str | None, str]]) -> float:
    top = y
    pdf.set_fill_color(225, 232, 240)
    pdf.rect(pdf.l_margin, y, pdf.epw, 6.5, style="F")
    pdf.pair(y + 0.3, f" {french}", f"{arabic} ", size=10, bold=True)
    y += 7.5
    for label_fr, value, value_ar, label_ar in rows:
        y = pdf.field(y, label_fr, value, label_ar, value_ar=value_ar, bold=label_fr in ("Dénomination", "Nom"))
    y += 1
    pdf.rect(pdf.l_margin, top, pdf.epw, y - top)
    return y


# (width mm, French heading, Arabic heading, alignment)
_COLUMNS = ((10, "N°", "ر.ت", "R"), (44, "Relevé", "الكشف", "L"), (26, "Date de paiement", "تاريخ الدفع", "C"),
            (16, "Taux", "النسبة", "R"), (28, "Brut (TND)", "المبلغ الخام", "R"),
            (28, "Retenue (TND)", "مبلغ الخصم", "R"), (28, "Net (TND)", "المبلغ الصافي", "R"))
_ROW = 5.5


def _table_head(pdf: _CertificatePDF, y: float) -> float:
    pdf.set_fill_color(225, 232, 240)
    x = pdf.l_margin
    for width, french, arabic, _align in _COLUMNS:
        pdf.font(7.5, bold=True)
        pdf.set_xy(x, y)
        pdf.cell(width, 5, pdf.lat(french), border="LTR", align="C", fill=True)
        pdf.set_xy(x, y + 5)
        pdf.cell(width, 5, pdf.ar(arabic), border="LBR", align="C", fill=True)
        x += width
    return y + 10


def _table_row(pdf: _CertificatePDF, y: float, values: list[str], *, bold: bool = False) -> float:
    x = pdf.l_margin
    for (width, _french, _arabic, align), value in zip(_COLUMNS, values):
        pdf.set_xy(x, y)
        pdf.font(8.5, bold=bold)
        pdf.cell(width, _ROW, value, border=1, align=align)
        x += width
    return y + _ROW


def _continue(pdf: _CertificatePDF, y: float, needed: float) -> float:
    if y + needed <= pdf.BOTTOM:
        return y
    pdf.add_page()
    pdf.pair(12, f"Certificat {pdf.certificate.id} (suite)", "شهادة في الخصم من المورد (تابع)", size=10, bold=True)
    return 22


def _closing(pdf: _CertificatePDF, c: Certificate, y: float, code: str, digest: str) -> None:
    total = _amount(c.withheld_millimes)
    y = _continue(pdf, y + 3, 76)  # the two paragraphs and the seal box
    pdf.font(9.5)
    pdf.set_xy(pdf.l_margin, y)
    pdf.multi_cell(pdf.epw, 5, pdf.lat(
        f"La {c.fund.name_fr} certifie avoir retenu à la source, au titre de l'année {c.year}, la somme de "
        f"{total} TND sur les montants bruts versés au bénéficiaire ci-dessus, soit {_amount(c.gross_millimes)} TND, "
        f"pour un net payé de {_amount(c.net_millimes)} TND."), align="J")
    if pdf.arabic:
        pdf.set_x(pdf.l_margin)
        pdf.multi_cell(pdf.epw, 5.5, (
            f"يشهد {c.fund.name_ar} أنه خصم من المورد بعنوان سنة {c.year} مبلغ {_amount(c.withheld_millimes, '')} "
            f"دينارا من المبالغ الخام المدفوعة للمنتفع المذكور أعلاه والبالغة {_amount(c.gross_millimes, '')} دينارا، "
            f"أي صاف مدفوع قدره {_amount(c.net_millimes, '')} دينارا."), align="R")
    y = pdf.get_y() + 3
    height = 43
    pdf.rect(pdf.l_margin, y, pdf.epw, height)
    qr = io.BytesIO()
    segno.make(code, error="m").save(qr, kind="png", scale=6, border=2)
    qr.seek(0)
    pdf.image(qr, x=pdf.l_margin + 2, y=y + 2, w=37, h=37)
    x = pdf.l_margin + 42
    width = pdf.epw - 44
    pdf.set_xy(x, y + 2)
    pdf.font(10, bold=True)
    pdf.cell(width / 2, 6, pdf.lat("Cachet électronique de la CNAM"))
    pdf.cell(width / 2, 6, pdf.ar("الختم الإلكتروني للصندوق"), align="R")
    pdf.font(7.5)
    lines = [
        "Signé avec la clé du sceau de la CNAM (ECDSA P-256, SHA-256).",
        f"SHA-256 des données ({ATTACHMENT}, joint à ce PDF) :",
        f"  {digest}",
        "Code du QR :",
        *[f"  {code[i:i + 74]}" for i in range(0, len(code), 74)],
    ]
    for row, text in enumerate(lines):
        pdf.set_xy(x, y + 8 + row * 3.6)
        pdf.cell(width, 3.6, pdf.lat(text))
    pdf.set_xy(x, y + 8 + len(lines) * 3.6 + 0.5)
    pdf.font(7.5)
    pdf.multi_cell(width, 3.6, pdf.lat("Vérification hors ligne : le code du QR signe les données jointes ; "
                                     "le certificat public du sceau de la CNAM suffit à le contrôler."))
    if pdf.arabic:
        pdf.set_x(x)
        pdf.cell(width, 4.5, "للتثبت: الرمز يمضي البيانات المرفقة، ويكفي المفتاح العمومي لختم الصندوق لمراقبته.",
                 align="R")


def render_certificate(certificate: Certificate, *, code: str, path: Path) -> int:
    """Write the certificate's A4 PDF, with its signed data attached; return the page count."""
    data = canonical(certificate.data())
    pdf = _CertificatePDF(certificate)
    pdf.add_page()
    y = _table_head(pdf, _header(pdf, certificate) + 5)
    for index, line in enumerate(certificate.lines, start=1):
        if y + _ROW > pdf.BOTTOM:
            y = _table_head(pdf, _continue(pdf, y, _ROW))
        y = _table_row(pdf, y, [str(index), line.statement, _day(line.paid_on),
                                f"{line.rate_permille / 10:g} %", _amount(line.gross_millimes),
                                _amount(line.withheld_millimes), _amount(line.net_millimes)])
    y = _continue(pdf, y, _ROW)
    pdf.set_fill_color(240, 240, 240)
    y = _table_row(pdf, y, ["", pdf.lat("Total"), pdf.ar("المجموع"), "", _amount(certificate.gross_millimes),
                            _amount(certificate.withheld_millimes), _amount(certificate.net_millimes)], bold=True)
    _closing(pdf, certificate, y, code, hashlib.sha256(data).hexdigest())
    pdf.embed_file(bytes=data, basename=ATTACHMENT, mime_type="application/json",
                   desc="Signed figures of this certificate")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))
    return pdf.page_no()


def issue_certificate(session: Session, *, provider: str, year: int, seal: Authority, path: Path, issued_on: date,
                      fund: FundIdentity | None = None) -> tuple[Certificate, str]:
    """Build, seal and write the annual certificate of `provider`; return it and its code."""
    certificate = annual_certificate(session, provider=provider, year=year, issued_on=issued_on, fund=fund)
    code = seal_code(seal, certificate.data())
    render_certificate(certificate, code=code, path=path)
    return certificate, code
