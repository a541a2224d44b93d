"""National identifiers: the CIN (carte d'identité nationale) and the social identifier.

Pure functions, no I/O. Input may use Arabic-Indic digits (٠١٢٣٤٥٦٧٨٩) or Eastern Arabic-Indic
digits (۰۱۲۳…); stored values are always ASCII.
"""

from __future__ import annotations

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
