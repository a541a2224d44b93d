"""SMS: the outbox every notice goes through, the gateways, and the `*1017*<CIN>#` card look-up service.

Outbound messages are `SmsMessage(direction="out")` rows queued inside a unit of work; they are handed to the
gateway only after that unit commits (`send_after_commit`, `dispatch_outbox`), one transaction per message.
An inbound message to 1017 (`handle_inbound`) is answered with where the cards of the sender's family are
(أين بطاقتي؟ / où est ma carte ?), in Arabic or French, without ever revealing whether a CIN is registered.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from functools import cache
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    Integer, Row, Select, and_, bindparam, event, exists, func, insert, null, or_, select, union_all,
)
from sqlalchemy import text as sql
from sqlalchemy.orm import Session, SessionTransaction, aliased

from labes.cards.models import Card, PickupPoint, SmsMessage
from labes.db import session_scope
from labes.errors import InvalidInput, LabesError
from labes.registry.identifiers import ascii_digits
from labes.registry.models import Dependant, Member, Person

log = logging.getLogger("labes.sms")

OUTBOX_KEY = "labes_sms_outbox"  # ids of the messages this session queued
_HOOKED_KEY = "labes_sms_send_after_commit"
PURPOSE = "card_lookup"
MAX_REPLY = 480  # characters: several SMS parts at most
WINDOW = timedelta(hours=1)
try:
    TUNIS = ZoneInfo("Africa/Tunis")
except ZoneInfoNotFoundError:  # no tz database installed: Tunisia keeps UTC+1 all year
    TUNIS = timezone(timedelta(hours=1))


def queue_sms(session: Session, *, number: str, text: str, purpose: str) -> SmsMessage:
    """Queue an outbound SMS in this unit of work; it is handed to the gateway only if the unit commits."""
    message = SmsMessage(direction="out", number=number, text=text, at=datetime.now(UTC), status="queued",
                         purpose=purpose)
    session.add(message)
    session.flush()
    session.info.setdefault(OUTBOX_KEY, []).append(message.id)
    return message


def _setting(name: str, default: Any) -> Any:
    """Return the setting `name` from Settings once it has the field, else from `LABES_<NAME>`, else `default`."""
    from labes.config import Settings, get_settings

    if name in Settings.model_fields:
        value = getattr(get_settings(), name)
        return value.get_secret_value() if hasattr(value, "get_secret_value") else value
    return os.environ.get(f"LABES_{name.upper()}", default)


# ---------------------------------------------------------------- gateways


class SmsGatewayError(LabesError):
    """The operator's gateway refused a message or could not be reached."""

    status, code, title = 502, "sms-gateway", "The SMS gateway failed"


class SmsSender(Protocol):
    """Hands one message to a gateway; raises if the gateway did not take it."""

    def send(self, number: str, text: str) -> None: ...


class DevSender:
    """The development gateway: nothing leaves the machine; each message is one JSON log line.

    The outbox table is this gateway's record: its rows end `sent` (read them at GET /api/v1/sms/outbox).
    """

    def send(self, number: str, text: str) -> None:
        log.info("sms sent (development gateway)", extra={"fields": {"sms_to": number, "sms_text": text}})


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirected POST would be re-sent as a GET without its body: treat a redirect as a refusal.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class HttpSender:
    """The operator's HTTP gateway: POST `{"to": …, "text": …}` as JSON with basic authentication."""

    def __init__(self, url: str, username: str, password: str, timeout: float = 10.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"The SMS gateway URL must be http(s)://host/…; got {parts.scheme or 'no'} scheme.")
        if parts.username or parts.password:  # a URL ends up in logs and error messages; a password must not
            raise ValueError("Put the SMS gateway's credentials in LABES_SMS_GATEWAY_USERNAME and "
                             "LABES_SMS_GATEWAY_PASSWORD, not in its URL.")
        self.url = url
        self.timeout = timeout
        self.where = f"{parts.scheme}://{parts.netloc}{parts.path}"  # named in errors
        self._authorization = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self._opener = urllib.request.build_opener(_NoRedirect())

    def send(self, number: str, text: str) -> None:
        body = json.dumps({"to": number, "text": text}, ensure_ascii=False).encode()
        request = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": "application/json; charset=utf-8", "Authorization": self._authorization})
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                status, reason = response.status, response.reason
        except urllib.error.HTTPError as exc:
            try:
                detail = exc.read(200).decode("utf-8", "replace").strip()
            except Exception:  # the gateway's error body is a courtesy; its status is what matters
                detail = ""
            raise SmsGatewayError(f"The SMS gateway {self.where} answered {exc.code} {exc.reason}"
                                  f"{': ' + detail if detail else ''}; the message was not sent.") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SmsGatewayError(f"The SMS gateway {self.where} could not be reached ({reason}); "
                                  "the message was not sent.") from None
        if not 200 <= status < 300:
            raise SmsGatewayError(f"The SMS gateway {self.where} answered {status} {reason}; the message was not sent.")


def sender_from_settings() -> SmsSender:
    """Return the configured gateway: HTTP if `LABES_SMS_GATEWAY_URL` is set, else the development one."""
    url = _setting("sms_gateway_url", None)
    if not url:
        return DevSender()
    return HttpSender(str(url), str(_setting("sms_gateway_username", "")), str(_setting("sms_gateway_password", "")),
                      float(_setting("sms_gateway_timeout", 10)))


# ---------------------------------------------------------------- dispatch, after commit


@dataclass(frozen=True)
class Dispatched:
    sent: int
    failed: int


def dispatch_outbox(session_factory: Callable[[], Session], sender: SmsSender, *, ids: Sequence[int] | None = None,
                    limit: int = 500) -> Dispatched:
    """Hand queued outbound messages (`ids`, or the oldest `limit` queued) to `sender`, one transaction each.

    Each row ends `sent` or `failed`. The row is locked while it is sent, so two dispatchers never send it twice.
    """
    if ids is None:
        with session_factory() as session:
            ids = session.scalars(select(SmsMessage.id).where(SmsMessage.direction == "out",
                                                              SmsMessage.status == "queued")
                                  .order_by(SmsMessage.id).limit(limit)).all()
    sent = failed = 0
    for message_id in ids:
        with session_scope(session_factory) as session:
            message = session.scalar(select(SmsMessage).where(SmsMessage.id == message_id,
                                                              SmsMessage.direction == "out").with_for_update())
            if message is None or message.status != "queued":
                continue  # rolled back with its unit of work, or another dispatcher took it
            try:
                sender.send(message.number, message.text)
            except Exception as exc:  # any gateway failure: the message is kept, marked failed
                message.status = "failed"
                failed += 1
                log.warning("sms not sent", extra={"fields": {"sms_id": message_id, "error": str(exc)}})
            else:
                message.status = "sent"
                sent += 1
    return Dispatched(sent, failed)


def _own_factory(session: Session) -> Callable[[], Session]:
    # Joins a connection's open transaction with a savepoint (tests); an engine bind simply starts its own.
    return lambda: Session(bind=session.bind, join_transaction_mode="create_savepoint", expire_on_commit=False)


def send_after_commit(session: Session, *, sender: SmsSender | None = None,
                      factory: Callable[[], Session] | None = None) -> None:
    """Send the messages this session queues once, and only if, its transaction commits.

    Idempotent per session: the first call's sender and factory are kept. Sending failures are logged and
    recorded on the rows; they never undo or fail the unit of work, which has already committed.
    """
    if session.info.get(_HOOKED_KEY):
        return
    session.info[_HOOKED_KEY] = True
    factory = factory or _own_factory(session)

    def _after_commit(committed: Session) -> None:
        ids = committed.info.pop(OUTBOX_KEY, None)
        if not ids:
            return
        try:
            dispatch_outbox(factory, sender or sender_from_settings(), ids=ids)
        except Exception:  # the unit of work is committed; queued rows stay queued for `labes sms dispatch`
            log.exception("sms dispatch after commit failed", extra={"fields": {"sms_ids": ids}})

    event.listen(session, "after_commit", _after_commit)


@event.listens_for(Session, "after_soft_rollback")
def _drop_outbox(session: Session, previous: SessionTransaction) -> None:
    # A rolled-back savepoint keeps the ids queued before it; rows it undid are skipped at dispatch.
    if not previous.nested:
        session.info.pop(OUTBOX_KEY, None)


def outbox(session: Session, *, number: str, limit: int = 50) -> list[SmsMessage]:
    """Return the messages sent (or queued) to `number`, newest first."""
    return list(session.scalars(select(SmsMessage).where(SmsMessage.number == normalize_number(number),
                                                         SmsMessage.direction == "out")
                                .order_by(SmsMessage.at.desc(), SmsMessage.id.desc()).limit(limit)))


# ---------------------------------------------------------------- the reply texts

# Every text the 1017 service sends. `state` fragments complete "{name}: {card} …" and "… replacement card …".
TEMPLATES: dict[str, dict[str, str]] = {
    "ar": {
        "help": "صيغة غير صحيحة. أرسل *1017*<رقم بطاقة التعريف># (8 أرقام). "
                "للإجابة بالفرنسية: *1017*<رقم بطاقة التعريف>*FR#",
        "no_card": "لا توجد بطاقة لهذا الرقم. للاستفسار توجه إلى مركز الكنام الجهوي.",
        "too_many": "عدد كبير من الطلبات. أعد المحاولة بعد الساعة {time}.",
        "line": "{name}: {card} {state}.",
        "line_replaced": "{name}: {card} معطّلة، والبطاقة البديلة {state}.",
        "no_card_line": "{name}: لا توجد بطاقة.",
        "card_labes": "البطاقة",
        "card_amen": "بطاقة أمان",
        "at_point": "جاهزة للسحب في {place}",
        "at_fund_centre": "جاهزة للسحب بمركز الكنام: {place}",
        "on_the_way": "مطبوعة وفي الطريق إلى {point}",
        "preparing": "قيد الإعداد",
        "delivered": "سُلّمت يوم {date}",
        "delivered_undated": "سُلّمت لصاحبها",
        "returned": "لم تُسحب فأُعيدت إلى مركز الكنام؛ {ask}",
        "blocked": "معطّلة ولا توجد بطاقة بديلة بعد؛ {ask}",
        "ask_at": "استفسر بمركز الكنام: {centre}",
        "ask_anywhere": "استفسر بمركز الكنام الجهوي",
        "hours": "التوقيت: {hours}",
        "sep": "، ",
        "more": "و{n} بطاقات أخرى: استفسر بمركز الكنام الجهوي.",
    },
    "fr": {
        "help": "Format incorrect. Envoyez *1017*<numéro CIN># (8 chiffres). "
                "Réponse en arabe: *1017*<numéro CIN>*AR#",
        "no_card": "Aucune carte pour ce numéro. Renseignez-vous au centre régional de la CNAM.",
        "too_many": "Trop de demandes. Réessayez après {time}.",
        "line": "{name}: {card} {state}.",
        "line_replaced": "{name}: {card} bloquée; carte de remplacement {state}.",
        "no_card_line": "{name}: pas de carte.",
        "card_labes": "carte",
        "card_amen": "carte Amen",
        "at_point": "à retirer à {place}",
        "at_fund_centre": "à retirer au centre de la CNAM: {place}",
        "on_the_way": "imprimée, en route vers {point}",
        "preparing": "en cours de préparation",
        "delivered": "remise le {date}",
        "delivered_undated": "remise à son titulaire",
        "returned": "non retirée, renvoyée au centre de la CNAM; {ask}",
        "blocked": "bloquée, pas encore de carte de remplacement; {ask}",
        "ask_at": "renseignez-vous au centre de la CNAM: {centre}",
        "ask_anywhere": "renseignez-vous au centre régional de la CNAM",
        "hours": "horaires: {hours}",
        "sep": ", ",
        "more": "Et {n} autre(s) carte(s): renseignez-vous au centre régional de la CNAM.",
    },
}
_CLIP = {"name": 60, "address": 90, "hours": 50}  # so that one card's line always fits in a reply


# ---------------------------------------------------------------- reading the request


@dataclass(frozen=True)
class Lookup:
    """What a message to 1017 asks: the CIN (None if the message is not a valid request) and the language."""

    cin: str | None
    language: str | None


_SYMBOLS = str.maketrans({"٭": "*", "＊": "*", "﹡": "*", "＃": "#", "﹟": "#"})
_LEADING_LANGUAGE = re.compile(r"^(FR|AR)(?=[*#0-9]|$)")
_TRAILING_LANGUAGE = re.compile(r"\*?(FR|AR)#*$")
_REQUEST = re.compile(r"^\**(?:1017\*+)?([0-9]+)#*$")


def parse_lookup(text: str) -> Lookup:
    """Read `*1017*<CIN>#` however it was typed: spaces, no `#`, no leading `*`, Arabic-Indic digits, `FR`/`AR`."""
    # Phones insert direction marks around digits in Arabic text (format characters): drop them with the blanks.
    squeezed = "".join(ch for ch in ascii_digits(text.translate(_SYMBOLS))
                       if not ch.isspace() and unicodedata.category(ch) != "Cf").upper()
    language = None
    if match := _LEADING_LANGUAGE.match(squeezed):
        language, squeezed = match[1], squeezed[match.end():]
    if match := _TRAILING_LANGUAGE.search(squeezed):
        language, squeezed = match[1], squeezed[:match.start()]
    language = language.lower() if language else None
    match = _REQUEST.match(squeezed)
    digits = match[1] if match else ""
    if len(digits) == 12 and digits.startswith("1017"):  # *1017 typed without its second star
        digits = digits[4:]
    return Lookup(digits if len(digits) == 8 else None, language)


def normalize_number(text: str) -> str:
    """Return a sender's phone number in one spelling (+216… for Tunisian numbers), or raise InvalidInput."""
    value = re.sub(r"[\s\-().]", "", ascii_digits(text))
    if value.startswith("00"):
        value = "+" + value[2:]
    if re.fullmatch(r"[0-9]{8}", value):
        value = "+216" + value
    elif re.fullmatch(r"216[0-9]{8}", value):  # a '+' lost in form encoding
        value = "+" + value
    if not re.fullmatch(r"\+?[0-9]{3,15}", value):
        raise InvalidInput(f"{text!r} is not a phone number an SMS can come from.", field="from")
    return value


# ---------------------------------------------------------------- the answer


def _clip(value: str | None, limit: int) -> str:
    value = (value or "").strip()
    return value if len(value) <= limit else value[:limit - 1].rstrip() + "…"


_POINT_FIELDS = ("kind", "name_ar", "name_fr", "address_ar", "address_fr", "hours_ar", "hours_fr")


@dataclass(frozen=True)
class _Point:
    """What a reply tells of a pick-up point."""

    kind: str
    name_ar: str
    name_fr: str
    address_ar: str | None
    address_fr: str | None
    hours_ar: str | None
    hours_fr: str | None

    @classmethod
    def of(cls, row: Row, prefix: str) -> _Point | None:
        """Return the point in the `<prefix>_…` columns of `row`, or None if the outer join found none."""
        values = [getattr(row, f"{prefix}_{name}") for name in _POINT_FIELDS]
        return None if values[0] is None else cls(*values)


@dataclass(frozen=True)
class _Card:
    """One card of the family, with where it is."""

    id: uuid.UUID
    card_type: str
    state: str
    delivered_on: date | None
    replaces_id: uuid.UUID | None
    issued_at: datetime
    serial: str
    point: _Point | None  # the point it waits at or is on its way to
    centre: _Point | None  # for a returned or blocked card: its governorate's fund centre, where to ask


def _place(point: _Point, language: str) -> str:
    words = TEMPLATES[language]
    other = "fr" if language == "ar" else "ar"

    def field(name: str) -> str:  # a field missing in one language is better shown in the other than not at all
        return getattr(point, f"{name}_{language}") or getattr(point, f"{name}_{other}") or ""

    parts = [_clip(field("name"), _CLIP["name"]), _clip(field("address"), _CLIP["address"])]
    if hours := field("hours"):
        parts.append(words["hours"].format(hours=_clip(hours, _CLIP["hours"])))
    return words["sep"].join(p for p in parts if p)


def _point_name(point: _Point, language: str) -> str:
    return _clip(getattr(point, f"name_{language}") or point.name_fr, _CLIP["name"])


def _state(card: _Card, language: str) -> str:
    """Return where `card` is, as a fragment completing "{name}: the card …"."""
    words = TEMPLATES[language]
    if card.state in ("delivered", "in_use"):
        if card.delivered_on is None:
            return words["delivered_undated"]
        return words["delivered"].format(date=card.delivered_on.strftime("%d/%m/%Y"))
    if card.state == "at_point" and card.point is not None:
        key = "at_fund_centre" if card.point.kind == "fund_centre" else "at_point"
        return words[key].format(place=_place(card.point, language))
    if card.state in ("batched", "shipped") and card.point is not None:
        return words["on_the_way"].format(point=_point_name(card.point, language))
    if card.state in ("returned", "blocked"):
        ask = words["ask_at"].format(centre=_place(card.centre, language)) if card.centre else words["ask_anywhere"]
        return words[card.state].format(ask=ask)
    return words["preparing"]


def _current(cards: list[_Card]) -> _Card:
    """Return the card that counts among one holder's cards of one type: the end of the replacement chain."""
    replaced = {c.replaces_id for c in cards}
    candidates = [c for c in cards if c.id not in replaced] or cards
    return max(candidates, key=lambda c: (c.state != "blocked", c.issued_at, c.serial))


_RELATIONSHIP_ORDER = {"spouse": 0, "child": 1, "father": 2, "mother": 3}  # others after, then by rank


@cache
def _family_cards() -> Select:
    """Return the one statement behind a reply (parameters `cin` and `today`).

    Its rows: the person holding the CIN (relationship NULL) and, if they are an insured member, the dependants
    now in their charge, reached through that member only, never anyone else; each person once per card of theirs
    (once with NULL card columns if none), with the point the card is at or on its way to and, for a returned or
    blocked card, the fund centre of its governorate (the first by code).
    Built once: a look-up then costs one round trip, and PostgreSQL gets the same text to prepare every time.
    """
    holder = select(Person.id.label("person_id"), null().label("relationship"), null().label("rank")) \
        .where(Person.cin == bindparam("cin"))
    dependants = (select(Dependant.person_id, Dependant.relationship, Dependant.rank)
                  .join(Member, Member.id == Dependant.member_id)
                  .join(Person, Person.id == Member.person_id)
                  .where(Person.cin == bindparam("cin"),
                         or_(Dependant.end_date.is_(None), Dependant.end_date >= bindparam("today"))))
    family = union_all(holder, dependants).subquery("family")
    point, centre, centres = (aliased(PickupPoint, name=name) for name in ("point", "centre", "centres"))
    first_code = (select(func.min(centres.code)).where(centres.kind == "fund_centre",
                                                       centres.governorate == Card.governorate)
                  .correlate(Card).scalar_subquery())
    return (select(family.c.relationship, family.c.rank, Person.id, Person.language, Person.first_name_ar,
                   Person.first_name_lat, Card.id.label("card_id"), Card.card_type, Card.state, Card.delivered_on,
                   Card.replaces_id, Card.issued_at, Card.serial,
                   *(getattr(point, name).label(f"point_{name}") for name in _POINT_FIELDS),
                   *(getattr(centre, name).label(f"centre_{name}") for name in _POINT_FIELDS))
            .select_from(family)
            .join(Person, Person.id == family.c.person_id)
            .outerjoin(Card, and_(Card.holder_person_id == Person.id, Card.card_type.in_(("labes", "amen"))))
            .outerjoin(point, point.id == Card.point_id)
            .outerjoin(centre, and_(Card.state.in_(("returned", "blocked")), centre.kind == "fund_centre",
                                    centre.governorate == Card.governorate, centre.code == first_code)))


def _fit(lines: list[str], language: str) -> str:
    reply, shown = "\n".join(lines), len(lines)
    while len(reply) > MAX_REPLY and shown > 1:
        shown -= 1
        reply = "\n".join([*lines[:shown], TEMPLATES[language]["more"].format(n=len(lines) - shown)])
    return reply[:MAX_REPLY]


def lookup_reply(session: Session, *, lookup: Lookup, today: date) -> str:
    """Return the answer to a look-up: where each card of the CIN holder's family is, by first name only.

    An unknown CIN and a CIN without any card get the very same answer, in the language asked for or Arabic
    (not the holder's preferred one, which would tell a registered CIN from an unknown one).
    """
    asked = lookup.language
    if lookup.cin is None:
        return TEMPLATES[asked or "ar"]["help"]
    rows = session.execute(_family_cards(), {"cin": lookup.cin, "today": today}).all()
    if all(row.card_id is None for row in rows):
        return TEMPLATES[asked or "ar"]["no_card"]
    # The holder first, then the dependants: spouse, children, father, mother, others; each by rank.
    rows.sort(key=lambda row: (row.relationship is not None, _RELATIONSHIP_ORDER.get(row.relationship, 9),
                               row.rank or 0))
    language = asked or ("fr" if rows[0].language == "fr" else "ar")
    words = TEMPLATES[language]
    family: dict[tuple, tuple[Row, list[_Card]]] = {}  # one entry per person in the family, in order
    for row in rows:
        _, cards = family.setdefault((row.relationship, row.rank, row.id), (row, []))
        if row.card_id is not None:
            cards.append(_Card(row.card_id, row.card_type, row.state, row.delivered_on, row.replaces_id,
                               row.issued_at, row.serial, _Point.of(row, "point"), _Point.of(row, "centre")))
    lines = []
    for relative, own in family.values():
        name = _clip(relative.first_name_ar if language == "ar" else relative.first_name_lat, 40)
        if not own and relative.relationship is None:  # the holder themself
            lines.append(words["no_card_line"].format(name=name))
        for card_type in ("labes", "amen"):
            of_type = [c for c in own if c.card_type == card_type]
            if not of_type:
                continue
            card = _current(of_type)
            template = "line_replaced" if card.replaces_id is not None and card.state != "blocked" else "line"
            lines.append(words[template].format(name=name, card=words[f"card_{card_type}"],
                                                state=_state(card, language)))
    return _fit(lines, language)


# ---------------------------------------------------------------- the 1017 service


def lookups_per_hour() -> int:
    """Return how many look-ups one number may make per rolling hour (`LABES_SMS_LOOKUPS_PER_HOUR`, default 5)."""
    value = _setting("sms_lookups_per_hour", 5)
    try:
        limit = int(value)
    except ValueError:
        raise ValueError(f"LABES_SMS_LOOKUPS_PER_HOUR must be a whole number; got {value!r}.") from None
    if limit < 1:
        raise ValueError(f"LABES_SMS_LOOKUPS_PER_HOUR must be at least 1; got {limit}.")
    return limit


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _begin_postgresql(session: Session, number: str) -> None:
    """On PostgreSQL, lock `number` until the transaction ends, and let the commit return before the disk flush.

    The lock: two messages from one number at the same instant must not both pass the count (on SQLite,
    BEGIN IMMEDIATE already runs one writer at a time).

    `synchronous_commit` off, for this transaction only (SET LOCAL): COMMIT returns without waiting for its WAL
    record to reach the disk; the WAL writer flushes it within 3 × wal_writer_delay (0.6 s by default). The
    trade-off, accepted for this log of SMS messages: a crash of the database server or its machine can lose the
    look-ups committed in that last fraction of a second, whole (both rows; the reply may already have gone out,
    and the sender gets one look-up more that hour), but it never corrupts anything nor keeps half a transaction.
    The webhook's and the CLI's transactions write nothing else.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    key = zlib.crc32(number.encode()) - 2**31
    session.execute(sql("SELECT pg_advisory_xact_lock(1017, :key), set_config('synchronous_commit', 'off', true)"),
                    {"key": key})


@cache
def _latest_answered() -> Select:
    """Return the times of the latest `limit` answered look-ups from `number` after `since`, newest first."""
    return (select(SmsMessage.at)
            .where(SmsMessage.number == bindparam("number"), SmsMessage.direction == "in",
                   SmsMessage.status == "received", SmsMessage.at > bindparam("since"))
            .order_by(SmsMessage.at.desc()).limit(bindparam("limit", type_=Integer)))


def _over_limit(session: Session, *, number: str, now: datetime, limit: int) -> tuple[bool, datetime | None]:
    """Return (over the limit?, when the next look-up is allowed — None if the 'too many' reply was already sent)."""
    latest = [_as_utc(at) for at in session.scalars(_latest_answered(),
                                                    {"number": number, "since": now - WINDOW, "limit": limit})]
    if len(latest) < limit:
        return False, None
    already_told = session.scalar(select(exists().where(
        SmsMessage.number == number, SmsMessage.direction == "in", SmsMessage.status == "limited",
        SmsMessage.at >= latest[0])))
    # The count falls below the limit when the oldest of these `limit` answered messages leaves the window.
    return True, None if already_told else latest[-1] + WINDOW


def _clock(moment: datetime) -> str:
    """Return HH:MM in Tunis, rounded up: "after 11:01" must not be a minute too early."""
    local = moment.astimezone(TUNIS)
    if local.second or local.microsecond:
        local = local.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return local.strftime("%H:%M")


def handle_inbound(session: Session, *, number: str, text: str, now: datetime | None = None,
                   limit: int | None = None) -> str | None:
    """Answer a message to 1017; record it and queue the reply. Return the reply, or None to stay silent.

    Past `limit` answered messages per rolling hour from one number, the number is told once when to try again,
    then gets no answer until the window has passed.

    On PostgreSQL a look-up is four statements: the number's lock, the rate-limit count, the family's cards with
    their points, and one INSERT of both messages; its commit does not wait for the disk (`_begin_postgresql`).
    """
    now = _as_utc(now or datetime.now(UTC))
    number = normalize_number(number)
    limit = lookups_per_hour() if limit is None else limit
    lookup = parse_lookup(text)
    _begin_postgresql(session, number)
    over, retry_at = _over_limit(session, number=number, now=now, limit=limit)
    if not over:
        status, reply = "received", lookup_reply(session, lookup=lookup, today=now.astimezone(TUNIS).date())
    elif retry_at is not None:
        status, reply = "limited", TEMPLATES[lookup.language or "ar"]["too_many"].format(time=_clock(retry_at))
    else:
        status, reply = "limited", None
    messages = [{"direction": "in", "number": number, "text": text[:1600], "at": now, "status": status,
                 "purpose": PURPOSE}]
    if reply is not None:  # queued like queue_sms's messages: handed to the gateway after commit
        messages.append({"direction": "out", "number": number, "text": reply, "at": datetime.now(UTC),
                         "status": "queued", "purpose": PURPOSE})
    # Both rows in one INSERT, without the ORM's unit of work (nothing reads them back as objects).
    table = SmsMessage.__table__
    inserted = session.execute(insert(table).returning(table.c.id, table.c.direction), messages)
    session.info.setdefault(OUTBOX_KEY, []).extend(id_ for id_, direction in inserted if direction == "out")
    # No audit event: a look-up changes nothing, and the message log (sms_message, append-only) is its record.
    # Auditing it would put every SMS through the audit chain's lock at thousands of messages a minute.
    return reply
