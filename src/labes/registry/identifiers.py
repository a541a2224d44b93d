"""National identifiers: the CIN (carte d'identité nationale), the social identifier and bank accounts.

Pure functions, no I/O. Input may use Arabic-Indic digits (٠١٢٣٤٥٦٧٨٩) or Eastern Arabic-Indic
digits (۰۱۲۳…); stored values are always ASCII.
"""

from __future__ import annotations

from schwifty import IBAN
from schwifty.exceptions import SchwiftyException

_DIGIT_MAP = {ord(c): str(i) for i, c in enumerate("٠١٢٣٤٥٦٧٨٩")}
_DIGIT_MAP.update({ord(c): str(i) for i, c in enumerate("۰۱۲۳۴۵۶۷۸۹")})


class IdentifierError(ValueError):
    """An identifier that is malformed; the message says what is wrong in the user's words."""


def ascii_digits(text: str) -> str:
    """Return `text` with Arabic-Indic digits replaced by ASCII digits and surrounding blanks removed."""
    return text.translate(_DIGIT_MAP).strip()


def normalize_cin(text: str) -> str:
    """Return the 8-digit CIN in ASCII, or raise IdentifierError."""
    value = ascii_digits(text).replace(" ", "")
    if len(value) != 8 or not value.isdigit():
        raise IdentifierError(f"A national ID (CIN) has exactly 8 digits; got {text!r}.")
    return value


def social_id_check_digits(body: str) -> str:
    """Return the two ISO 7064 mod 97-10 check digits for the 9-digit body (1 spare + 8 random)."""
    if len(body) != 9 or not body.isdigit():
        raise IdentifierError(f"A social identifier body has 9 digits; got {body!r}.")
    return f"{98 - (int(body) * 100) % 97:02d}"


def make_social_id(body: str) -> str:
    """Return the 11-digit social identifier for a 9-digit body."""
    return body + social_id_check_digits(body)


def normalize_social_id(text: str) -> str:
    """Return the 11-digit social identifier in ASCII if its check digits are right, or raise IdentifierError."""
    value = ascii_digits(text).replace(" ", "")
    if len(value) != 11 or not value.isdigit():
        raise IdentifierError(f"A social identifier has exactly 11 digits; got {text!r}.")
    if int(value) % 97 != 1:
        raise IdentifierError(
            f"The social identifier {value} has wrong check digits (the last two); check it was copied correctly."
        )
    return value


def normalize_iban(text: str) -> str:
    """Return the Tunisian bank account `text` as a compact IBAN (`TN59…`, 24 characters), or raise IdentifierError.

    Accepted as people write them: the IBAN, with or without spaces, or the 20-digit RIB (relevé d'identité
    bancaire: bank, branch, account, key) that Tunisian banks print; both checked, the IBAN's check digits
    (ISO 13616) and the RIB's own key (schwifty, `validate_bban`). The fund pays in dinars to Tunisian
    banks and the postal bank only, so another country's IBAN is refused.
    """
    value = ascii_digits(text).replace(" ", "").replace("-", "").upper()
    if not value.startswith("TN") and not (len(value) == 20 and value.isdigit()):
        raise IdentifierError("The fund pays to Tunisian accounts only: give a TN IBAN or a 20-digit RIB; "
                              f"got {text!r}.")
    try:
        iban = IBAN(value) if value.startswith("TN") else IBAN.from_bban("TN", value)  # a RIB: its IBAN
        iban.validate(validate_bban=True)
        return iban.compact
    except SchwiftyException as exc:
        raise IdentifierError(f"{text!r} is not a valid Tunisian bank account ({_reason(exc)}); "
                              "check it against the bank's RIB.") from None


_REASONS = {"InvalidLength": "an IBAN has 24 characters, a RIB 20 digits",
            "InvalidChecksumDigits": "its IBAN check digits are wrong",
            "InvalidBBANChecksum": "its RIB key, the last two digits, is wrong",
            "InvalidStructure": "an IBAN is TN, two check digits and the 20 digits of the RIB"}


def _reason(exc: SchwiftyException) -> str:
    return _REASONS.get(type(exc).__name__, str(exc))


def masked_iban(iban: str) -> str:
    """Return `iban` with its account number hidden but its last four characters, for pages and receipts."""
    return f"{iban[:4]} •••• {iban[-4:]}"
