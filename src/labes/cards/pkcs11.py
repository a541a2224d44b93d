"""A PKCS#11 token (a chip behind a reader, or SoftHSM2) behind the `CardToken` interface.

`Pkcs11Card.open` logs in to a token by its label and finds the card's EC P-256 private key;
`personalise` generates that key pair ON the token (sensitive, never extractable), has the fund's
authority certify its public key and stores the certificate on the token: the private key never exists
outside the chip.

Signing hashes on the host and signs the digest with plain `CKM_ECDSA`: SoftHSM2 2.6 (and many chips)
refuse the combined `CKM_ECDSA_SHA256`. PKCS#11 returns ECDSA signatures as r‖s, the ES256 form.

The library is `LABES_PKCS11_LIB`, by default SoftHSM2's `/usr/lib/softhsm/libsofthsm2.so` (Debian
package `softhsm2`).
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import pkcs11
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters
from pkcs11.util.x509 import decode_x509_certificate

from labes.cards.crypto import Authority, card_certificate
from labes.cards.tokens import CardToken, PinError

DEFAULT_LIBRARY = "/usr/lib/softhsm/libsofthsm2.so"
LIBRARY_ENV = "LABES_PKCS11_LIB"
KEY_LABEL = "labes-card"
P256_PARAMS = encode_named_curve_parameters("secp256r1")


class Pkcs11Error(RuntimeError):
    """The token or its library cannot be used as a card."""


class Pkcs11LibraryMissing(Pkcs11Error):
    """The PKCS#11 library (the reader's module, or SoftHSM2's) cannot be loaded."""


def library_path() -> str:
    """Return the PKCS#11 library to load: `LABES_PKCS11_LIB`, or SoftHSM2's."""
    return os.environ.get(LIBRARY_ENV) or DEFAULT_LIBRARY


def load_library(path: str | os.PathLike[str] | None = None) -> Any:
    """Load (once per process) and initialise the PKCS#11 library at `path`."""
    path = str(path or library_path())
    hint = (f"install the Debian package softhsm2 (apt-get install softhsm2) for SoftHSM2, or set {LIBRARY_ENV} "
            "to the PKCS#11 module of the card reader")
    if not Path(path).is_file():
        raise Pkcs11LibraryMissing(f"No PKCS#11 library at {path}: {hint}.")
    try:
        return pkcs11.lib(path)
    except p11.PKCS11Error as exc:
        raise Pkcs11LibraryMissing(f"The PKCS#11 library {path} cannot be loaded ({exc or type(exc).__name__}): "
                                   f"{hint}.") from None


def open_token(*, token_label: str, pin: str, library: str | os.PathLike[str] | None = None,
               rw: bool = False) -> Any:
    """Open a session on the token labelled `token_label`, logged in with the user `pin`."""
    lib = load_library(library)
    try:
        token = lib.get_token(token_label=token_label)
    except p11.NoSuchToken:
        raise Pkcs11Error(f"No token labelled {token_label!r} in {lib.so}; is the card in the reader?") from None
    except p11.MultipleTokensReturned:
        raise Pkcs11Error(f"Several tokens are labelled {token_label!r} in {lib.so}.") from None
    try:
        return token.open(user_pin=pin, rw=rw)
    except (p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange):
        raise PinError("Wrong PIN.") from None
    except p11.PinLocked:
        raise PinError("The card's PIN is locked after too many wrong tries; the holder must have it unlocked.") from None
    except p11.PinExpired:
        raise PinError("The card's PIN has expired; the holder must change it.") from None
    except p11.UserPinNotInitialized:
        raise PinError(f"The token {token_label!r} has no user PIN yet; initialise it first.") from None
    except (p11.UserAlreadyLoggedIn, p11.AnotherUserAlreadyLoggedIn):
        # PKCS#11 logs in per token and process: the PIN cannot be checked while another session is logged in.
        raise Pkcs11Error(f"The token {token_label!r} is already open and logged in in this process; close that "
                          "card first.") from None


def _key_template(label: str, key_id: bytes | None) -> dict[Attribute, Any]:
    return {Attribute.LABEL: label, **({Attribute.ID: key_id} if key_id is not None else {})}


def _card_serial(certificate: x509.Certificate) -> str:
    serials = certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    if not serials:
        raise Pkcs11Error("The certificate on the token names no card serial.")
    return str(serials[0].value)


class Pkcs11Card(CardToken):
    """A card whose private key is on a PKCS#11 token; signing happens on the token.

    Holds a logged-in session: use it as a context manager or call `close()`.
    """

    def __init__(self, session: Any, *, key_label: str = KEY_LABEL, key_id: bytes | None = None,
                 certificate: x509.Certificate | None = None) -> None:
        self._session = session
        template = _key_template(key_label, key_id)
        try:
            self._key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC, label=key_label,
                                        id=key_id)
        except p11.NoSuchKey:
            raise Pkcs11Error(f"No EC private key labelled {key_label!r} on the token; is the card personalised?") from None
        except p11.MultipleObjectsReturned:
            raise Pkcs11Error(f"Several EC private keys labelled {key_label!r} on the token; give the key id.") from None
        if self._key[Attribute.EC_PARAMS] != P256_PARAMS:
            raise Pkcs11Error(f"The key {key_label!r} on the token is not an ECDSA P-256 key.")
        self._certificate = certificate or self._stored_certificate(template)
        self.serial = _card_serial(self._certificate)

    def _stored_certificate(self, template: dict[Attribute, Any]) -> x509.Certificate:
        found = list(self._session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE, **template}))
        if len(found) != 1:
            raise Pkcs11Error(f"{'No' if not found else 'Several'} certificate labelled {template[Attribute.LABEL]!r} "
                              "on the token; pass the card's certificate.")
        return x509.load_der_x509_certificate(bytes(found[0][Attribute.VALUE]))

    @classmethod
    def open(cls, *, token_label: str, pin: str, library: str | os.PathLike[str] | None = None,
             key_label: str = KEY_LABEL, key_id: bytes | None = None,
             certificate: x509.Certificate | None = None) -> "Pkcs11Card":
        """Log in to the token labelled `token_label` with `pin` (a wrong PIN raises `PinError`)."""
        session = open_token(token_label=token_label, pin=pin, library=library)
        try:
            return cls(session, key_label=key_label, key_id=key_id, certificate=certificate)
        except BaseException:
            _close(session)
            raise

    def certificate(self) -> x509.Certificate:
        return self._certificate

    def sign(self, data: bytes) -> bytes:
        """Return the ES256 signature (r‖s, 64 bytes) of SHA-256(`data`), made on the token."""
        digest = hashlib.sha256(data).digest()
        try:
            signature = bytes(self._key.sign(digest, mechanism=Mechanism.ECDSA))
        except p11.UserNotLoggedIn:
            raise Pkcs11Error("The token session is no longer logged in; open the card again.") from None
        if len(signature) != 64:
            raise Pkcs11Error(f"The token returned a {len(signature)}-byte signature; expected r‖s of 64 bytes.")
        return signature

    def close(self) -> None:
        """Log out and close the token session."""
        if self._session is not None:
            _close(self._session)
            self._session = None

    def __enter__(self) -> "Pkcs11Card":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def _close(session: Any) -> None:
    try:
        session.close()
    except p11.UserNotLoggedIn:  # another session of this process logged the token out already
        pass


def personalise(token_session: Any, *, serial: str, authority: Authority, holder_name: str, card_type: str,
                now: datetime, key_label: str = KEY_LABEL, key_id: bytes | None = None) -> Pkcs11Card:
    """Personalise the token behind `token_session` (read-write, logged in) as the card `serial`.

    The P-256 key pair is generated on the token; the private key is sensitive and never extractable. The
    public key is certified by the fund's authority and the certificate is stored on the token next to it.
    """
    key_id = key_id if key_id is not None else serial.encode()
    if not token_session.rw:
        raise Pkcs11Error("Personalising a token needs a read-write session (open it with rw=True).")
    existing = list(token_session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: key_label}))
    if existing:
        raise Pkcs11Error(f"The token already holds a card key labelled {key_label!r}; a token is personalised once.")
    template = _key_template(key_label, key_id)
    parameters = token_session.create_domain_parameters(KeyType.EC, {Attribute.EC_PARAMS: P256_PARAMS}, local=True)
    public, private = parameters.generate_keypair(
        store=True,
        public_template={**template, Attribute.TOKEN: True, Attribute.VERIFY: True},
        private_template={**template, Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.SIGN: True,
                          Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False},
    )
    if not private[Attribute.SENSITIVE] or private[Attribute.EXTRACTABLE]:
        private.destroy()
        public.destroy()
        raise Pkcs11Error("The token did not make the card's private key sensitive and non-extractable.")
    public_key = serialization.load_der_public_key(encode_ec_public_key(public))
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    certificate = card_certificate(authority, public_key=public_key, serial=serial, card_type=card_type,
                                   holder_name=holder_name, now=now)
    der = certificate.public_bytes(serialization.Encoding.DER)
    token_session.create_object({**decode_x509_certificate(der), **template, Attribute.TOKEN: True,
                                 Attribute.PRIVATE: False})
    return Pkcs11Card(token_session, key_label=key_label, key_id=key_id, certificate=certificate)
