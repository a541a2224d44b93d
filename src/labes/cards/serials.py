"""Card serial numbers: 12 digits = 2-digit type prefix + 9-digit number + Luhn check digit."""

from __future__ import annotations

from labes.registry.identifiers import ascii_digits

TYPE_PREFIX = {"labes": "10", "amen": "20", "professional": "30"}
PREFIX_TYPE = {v: k for k, v in TYPE_PREFIX.items()}


class SerialError(ValueError):
    """A serial that cannot be a Labes card's."""


def luhn_digit(body: str) -> str:
    """Return the Luhn check digit for the digits of `body`."""
    total = 0
    for index, char in enumerate(reversed(body)):
        digit = int(char)
        if index % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


def make_serial(card_type: str, number: int) -> str:
    """Return the serial of the `number`-th card of `card_type`."""
    if not 0 < number < 10**9:
        raise SerialError(f"Card number {number} is out of range.")
    body = TYPE_PREFIX[card_type] + f"{number:09d}"
    return body + luhn_digit(body)


def normalize_serial(text: str) -> str:
    """Return the 12-digit serial (spaces and Arabic-Indic digits accepted) or raise SerialError."""
    value = ascii_digits(text).replace(" ", "").replace("-", "")
    if len(value) != 12 or not value.isdigit():
        raise SerialError(f"A card serial has 12 digits; got {text!r}.")
    if value[:2] not in PREFIX_TYPE:
        raise SerialError(f"{value} is not a Labes, Amen or professional card serial.")
    if luhn_digit(value[:-1]) != value[-1]:
        raise SerialError(f"The card serial {value} has a wrong check digit; check it was read correctly.")
    return value


def display(serial: str) -> str:
    """Return the serial grouped as printed: 1000 0000 0017."""
    return " ".join(serial[i:i + 4] for i in range(0, 12, 4))
