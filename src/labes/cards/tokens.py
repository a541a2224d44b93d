"""The card as terminals see it: something that has a certificate and signs.

`CardToken` is the one interface terminal code uses. `VirtualCard` keeps the key in a card file (for the
demo, the tests, and terminals without a reader); `labes.cards.pkcs11.Pkcs11Card` puts a PKCS#11 token
(a chip behind a reader, or SoftHSM2) behind the same interface. Signatures are ECDSA P-256 over
SHA-256 in the 64-byte r‖s form of JWS ES256.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from labes.cards.crypto import raw_signature

CARD_FILE_FORMAT = "labes-virtual-card/1"


class PinError(ValueError):
    """A wrong or missing PIN."""


@runtime_checkable
class CardToken(Protocol):
    """A card in a reader: its serial, its certificate, and signing with the key that never leaves it."""

    serial: str

    def certificate(self) -> x509.Certificate: ...

    def sign(self, data: bytes) -> bytes:
        """Return the ES256 signature (r‖s, 64 bytes) of SHA-256(`data`)."""
        ...


class VirtualCard:
    """A card whose key lives in a card file."""

    def __init__(self, serial: str, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.serial = serial
        self._certificate = certificate
        self._key = key

    def certificate(self) -> x509.Certificate:
        return self._certificate

    def sign(self, data: bytes) -> bytes:
        return raw_signature(self._key.sign(data, ec.ECDSA(hashes.SHA256())))

    @classmethod
    def from_bytes(cls, content: bytes, *, pin: str | None = None) -> "VirtualCard":
        """Open a card file; a professional card's key needs the holder's PIN."""
        try:
            data = json.loads(content)
        except (ValueError, UnicodeDecodeError):
            raise ValueError("This is not a Labes card file.") from None
        if data.get("format") != CARD_FILE_FORMAT:
            raise ValueError(f"Unknown card file format {data.get('format')!r}; expected {CARD_FILE_FORMAT}.")
        encrypted = bool(data.get("pin_protected"))
        if encrypted and not pin:
            raise PinError("This card's key is protected by a PIN; enter the PIN.")
        try:
            key = serialization.load_pem_private_key(data["private_key"].encode(),
                                                     password=pin.encode() if encrypted else None)
        except (ValueError, TypeError):
            raise PinError("Wrong PIN.") from None
        return cls(data["serial"], x509.load_pem_x509_certificate(data["certificate"].encode()), key)

    @classmethod
    def load(cls, path: Path, *, pin: str | None = None) -> "VirtualCard":
        return cls.from_bytes(Path(path).read_bytes(), pin=pin)


def card_file(*, serial: str, card_type: str, holder_name: str, certificate: x509.Certificate,
              key: ec.EllipticCurvePrivateKey, pin: str | None) -> bytes:
    """Return the personalisation output of a virtual card: its key (PIN-encrypted if a PIN is given) and certificate."""
    encryption = serialization.BestAvailableEncryption(pin.encode()) if pin else serialization.NoEncryption()
    return json.dumps({
        "format": CARD_FILE_FORMAT,
        "serial": serial,
        "card_type": card_type,
        "holder_name": holder_name,
        "pin_protected": bool(pin),
        "certificate": certificate.public_bytes(serialization.Encoding.PEM).decode(),
        "private_key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         encryption).decode(),
    }, ensure_ascii=False, indent=2).encode()
