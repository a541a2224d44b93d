"""The fund's keys, card certificates and the signed 2D code printed on every card.

`labes keys init` creates two ECDSA P-256 keys outside the database, each with a self-signed
certificate: the card-issuing authority (signs card certificates and the printed 2D codes) and the
fund's seal (signs stamped receipts and PDFs). Private key files are mode 0600.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property, lru_cache
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.x509.oid import NameOID

CARD_VALIDITY_YEARS = 10  # the card never carries rights, so a long life costs nothing
AUTHORITY_VALIDITY_YEARS = 20
KEY_FILES = {"card-ca": "Labes card-issuing authority", "seal": "Labes fund seal"}
TWO_D_PREFIX = "LB1"


class KeysMissing(RuntimeError):
    """The fund's keys have not been created; run `labes keys init`."""


@dataclass(frozen=True)
class Authority:
    """A private key of the fund's and its certificate."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.certificate.public_key()

    @cached_property
    def key_identifier(self) -> x509.AuthorityKeyIdentifier:
        """The identifier every card certificate carries of its issuer (computed once: mass issuance)."""
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(self.public_key)


_CARD_KEY_USAGE = x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                                encipher_only=False, decipher_only=False)
_END_ENTITY = x509.BasicConstraints(ca=False, path_length=None)


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "TN"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Caisse Nationale d'Assurance Maladie"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _self_signed(key: ec.EllipticCurvePrivateKey, common_name: str, now: datetime) -> x509.Certificate:
    name = _name(common_name)
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + timedelta(days=365 * AUTHORITY_VALIDITY_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def init_keys(directory: Path, *, force: bool = False) -> list[Path]:
    """Create the authority and seal keys in `directory` (0600); refuse to overwrite unless `force`."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    written = []
    now = datetime.now(UTC)
    for stem, common_name in KEY_FILES.items():
        key_path, cert_path = directory / f"{stem}.key.pem", directory / f"{stem}.cert.pem"
        if key_path.exists() and not force:
            raise FileExistsError(f"{key_path} exists; the fund's keys are created once (use --force to replace them).")
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        os.chmod(key_path, 0o600)
        cert_path.write_bytes(_self_signed(key, common_name, now).public_bytes(serialization.Encoding.PEM))
        written += [key_path, cert_path]
    load_authority.cache_clear()
    return written


@lru_cache
def load_authority(directory: Path, stem: str = "card-ca") -> Authority:
    """Load one of the fund's keys with its certificate."""
    key_path, cert_path = directory / f"{stem}.key.pem", directory / f"{stem}.cert.pem"
    if not key_path.exists():
        raise KeysMissing(f"No {KEY_FILES.get(stem, stem)} key in {directory}; run `labes keys init`.")
    if key_path.stat().st_mode & 0o077:
        raise PermissionError(f"{key_path} is readable by others; run `chmod 600 {key_path}`.")
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return Authority(key, certificate)


def card_certificate(authority: Authority, *, public_key: ec.EllipticCurvePublicKey, serial: str, card_type: str,
                     holder_name: str, now: datetime) -> x509.Certificate:
    """Return the X.509 certificate binding a card's public key to its serial, signed by the authority."""
    subject = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "TN"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, card_type),
        x509.NameAttribute(NameOID.SERIAL_NUMBER, serial),
        x509.NameAttribute(NameOID.COMMON_NAME, holder_name[:64] or serial),
    ])
    return (
        x509.CertificateBuilder().subject_name(subject).issuer_name(authority.certificate.subject)
        .public_key(public_key).serial_number(int(serial)).not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=365 * CARD_VALIDITY_YEARS))
        .add_extension(_END_ENTITY, critical=True)
        .add_extension(_CARD_KEY_USAGE, critical=True)
        .add_extension(authority.key_identifier, critical=False)
        .sign(authority.key, hashes.SHA256())
    )


class CertificateRefused(ValueError):
    """A card certificate that the fund did not issue, or that is out of date."""


def check_card_certificate(authority_cert: x509.Certificate, certificate: x509.Certificate, *, now: datetime) -> str:
    """Verify `certificate` was issued by the authority and is in date; return the card serial it names."""
    try:
        certificate.verify_directly_issued_by(authority_cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise CertificateRefused(f"The card certificate was not issued by the fund's authority ({exc.__class__.__name__}).") from None
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise CertificateRefused("The card certificate is out of date.")
    serials = certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    if not serials:
        raise CertificateRefused("The card certificate names no card serial.")
    return str(serials[0].value)


def raw_signature(der: bytes) -> bytes:
    """Convert a DER ECDSA signature to the 64-byte r‖s form used by JWS ES256 and PKCS#11."""
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def der_signature(raw: bytes) -> bytes:
    """Convert a 64-byte r‖s signature to DER."""
    if len(raw) != 64:
        raise InvalidSignature("An ES256 signature has 64 bytes.")
    return encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))


def verify_raw(public_key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    """Return whether `signature` (r‖s) over SHA-256(`data`) verifies with `public_key`."""
    try:
        public_key.verify(der_signature(signature), data, ec.ECDSA(hashes.SHA256()))
        return True
    except InvalidSignature:
        return False


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def printed_code(authority: Authority, *, serial: str, holder_name: str, social_id: str, cin_last3: str) -> str:
    """Return the signed 2D code printed on a card: fields separated by '|', then the signature."""
    for value in (holder_name, social_id, cin_last3):
        if "|" in value:
            raise ValueError("A printed-code field may not contain '|'.")
    message = "|".join((TWO_D_PREFIX, serial, holder_name, social_id, cin_last3))
    signature = raw_signature(authority.key.sign(message.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{message}|{_b64(signature)}"


@dataclass(frozen=True)
class PrintedCode:
    serial: str
    holder_name: str
    social_id: str
    cin_last3: str


def verify_printed_code(public_key: ec.EllipticCurvePublicKey, code: str) -> PrintedCode:
    """Check a printed 2D code offline with the fund's public key; raise ValueError if it is not genuine."""
    parts = code.strip().split("|")
    if len(parts) != 6 or parts[0] != TWO_D_PREFIX:
        raise ValueError("This is not a Labes card code (expected LB1|serial|name|social id|CIN|signature).")
    message, signature = "|".join(parts[:5]), parts[5]
    try:
        raw = _unb64(signature)
    except ValueError:
        raise ValueError("The code's signature is not readable.") from None
    if not verify_raw(public_key, raw, message.encode()):
        raise ValueError("The code's signature does not match: this card was not issued by the fund or was altered.")
    return PrintedCode(*parts[1:5])
