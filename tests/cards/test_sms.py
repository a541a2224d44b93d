"""SMS: the *1017*<CIN># look-up (every card state, both languages, privacy), its rate limit, the outbox sent only
after commit, the gateways, the webhook and the command line."""

from __future__ import annotations

import itertools
import json
import logging
import socket
import threading
import uuid
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select, text as sql
from sqlalchemy.exc import IntegrityError

from labes import config
from labes.cards import service, sms
from labes.cards.models import Card, PickupPoint, SmsMessage
from labes.cards.sms_cli import app as sms_cli
from labes.cards.sms_routes import router as sms_router
from labes.logging import JsonFormatter
from labes.registry.models import Person
from labes.registry.schemas import DependantUpdate
from labes.registry import service as registry
from labes.security import service as security_service
from labes.security.models import AuditEvent
from labes.security.service import create_api_token
from tests import factories
from tests.factories import ACTOR

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # 10:00 in Tunis
_numbers = itertools.count(1)

# How each language's reply must read; written out here, not taken from sms.TEMPLATES, so a lost meaning fails.
ASK = {"fr": "FR *1017*{cin}#", "ar": "*1017*{cin}*AR#"}
WORDS = {
    "fr": {"member": "Mohamed", "child": "Salma", "post": "Bureau de poste Kasserine Ennour",
           "address": "Rue de la République, Kasserine", "hours": "8h-12h30 et 14h-17h", "fund": "centre de la CNAM",
           "centre": "Centre régional CNAM de Kasserine", "sfax": "Centre régional CNAM de Sfax",
           "delivered": "remise le", "preparing": "en cours de préparation", "on_the_way": "en route vers",
           "returned": "renvoyée", "blocked": "bloquée", "replacement": "carte de remplacement",
           "no_replacement": "pas encore de carte de remplacement", "no_card": "Aucune carte pour ce numéro",
           "help": "*1017*<numéro CIN>#", "too_many": "Trop de demandes", "more": "autre(s) carte(s)"},
    "ar": {"member": "محمد", "child": "سلمى", "post": "مكتب بريد القصرين النور", "address": "نهج الجمهورية، القصرين",
           "hours": "8:00-12:30 و14:00-17:00", "fund": "بمركز الكنام", "centre": "المركز الجهوي للكنام بالقصرين",
           "sfax": "المركز الجهوي للكنام بصفاقس", "delivered": "سُلّمت يوم", "preparing": "قيد الإعداد",
           "on_the_way": "في الطريق إلى", "returned": "أُعيدت", "blocked": "معطّلة", "replacement": "البطاقة البديلة",
           "no_replacement": "لا توجد بطاقة بديلة", "no_card": "لا توجد بطاقة لهذا الرقم",
           "help": "*1017*<رقم بطاقة التعريف>#", "too_many": "عدد كبير من الطلبات", "more": "بطاقات أخرى"},
}


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch):
    """Production argon2 costs ~0.2 s a hash; what is tested here is SMS, not the hashing."""
    monkeypatch.setattr(security_service, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


@pytest.fixture(autouse=True)
def default_settings(monkeypatch):
    """The development gateway and the default limit, whatever the shell running the tests has set."""
    for name in ("LABES_SMS_GATEWAY_URL", "LABES_SMS_LOOKUPS_PER_HOUR"):
        monkeypatch.delenv(name, raising=False)
    config.get_settings.cache_clear()
    yield
    config.get_settings.cache_clear()


def a_number() -> str:
    return f"+2169{next(_numbers):07d}"


def ask(session, text: str, *, number: str | None = None, now: datetime = T0, **kwargs) -> str | None:
    return sms.handle_inbound(session, number=number or a_number(), text=text, now=now, **kwargs)


def issue(session, authority, *, cin=None, person_id=None, now=None) -> Card:
    holder = service.resolve_holder(session, card_type="labes", cin=cin, person_id=person_id)
    return service.issue_card(session, actor=ACTOR, authority=authority, holder=holder, now=now).card


def move(session, card: Card, *events: str, point=None, now=None) -> Card:
    for step in events:
        service.move(session, actor=ACTOR, card=card, event=step, point=point, now=now)
    return card


TO_POINT = ("batch", "ship", "receive")


def point(session, **values) -> PickupPoint:
    found = PickupPoint(**values)
    session.add(found)
    session.flush()
    return found


@pytest.fixture
def post_office(session):
    return point(session, code="PKAS02", kind="post_office", name_ar="مكتب بريد القصرين النور",
                 name_fr="Bureau de poste Kasserine Ennour", governorate="KAS", address_ar="نهج الجمهورية، القصرين",
                 address_fr="Rue de la République, Kasserine", hours_ar="8:00-12:30 و14:00-17:00",
                 hours_fr="8h-12h30 et 14h-17h")


@pytest.fixture
def sfax_centre(session):
    """The fund's centre of the family's governorate, where returned cards go."""
    return point(session, code="CSFX01", kind="fund_centre", name_ar="المركز الجهوي للكنام بصفاقس",
                 name_fr="Centre régional CNAM de Sfax", governorate="SFX", address_fr="Route de Tunis km 2, Sfax")


@pytest.fixture
def other_family(session, authority):
    """Another family, with cards at another post office; none of it may ever appear in the first one's replies."""
    names = {"last_name_lat": "Trabelsi", "last_name_ar": "الطرابلسي"}
    member = factories.member(session, person_overrides={"first_name_lat": "Karim", "first_name_ar": "كريم", **names})
    child = factories.dependant(session, member.social_id,
                                person={"first_name_lat": "Yasmine", "first_name_ar": "ياسمين", **names})
    sbeitla = point(session, code="PKAS09", kind="post_office", name_ar="مكتب بريد سبيطلة", name_fr="Bureau de poste Sbeitla",
                    governorate="KAS", address_fr="Avenue de la Liberté, Sbeitla", hours_fr="8h-13h")
    cin = session.get(Person, member.person_id).cin
    cards = [move(session, issue(session, authority, cin=cin), *TO_POINT, point=sbeitla),
             move(session, issue(session, authority, person_id=child.person_id), *TO_POINT, point=sbeitla)]
    return {"cin": cin, "social_id": member.social_id, "serials": [c.serial for c in cards],
            "words": ["Karim", "كريم", "Yasmine", "ياسمين", "Trabelsi", "الطرابلسي", "Sbeitla", "سبيطلة"]}


# ---------------------------------------------------------------- reading the request


class TestParse:
    @pytest.mark.parametrize(("text", "cin", "language"), [
        ("*1017*12345678#", "12345678", None),
        ("*1017*12345678", "12345678", None),
        ("1017*12345678#", "12345678", None),
        ("  * 1017 *1234 5678 # ", "12345678", None),
        ("*١٠١٧*١٢٣٤٥٦٧٨#", "12345678", None),
        ("*۱۰۱۷*۱۲۳۴۵۶۷۸#", "12345678", None),
        ("\u200f*1017*\u200e12345678\u200e#", "12345678", None),  # direction marks a phone puts around digits
        ("٭1017٭12345678#", "12345678", None),  # the Arabic keyboard's star
        ("12345678", "12345678", None),
        ("01234567", "01234567", None),
        ("FR *1017*12345678#", "12345678", "fr"),
        ("fr12345678", "12345678", "fr"),
        ("AR*1017*12345678#", "12345678", "ar"),
        ("*1017*12345678*FR#", "12345678", "fr"),
        ("*1017*12345678*fr", "12345678", "fr"),
        ("*101712345678#", "12345678", None),
        ("*1017*1234567#", None, None),
        ("*1017*123456789#", None, None),
        ("*1017*ABCDEFGH#", None, None),
        ("*1017*1234A678#", None, None),
        ("*1017#", None, None),
        ("", None, None),
        ("   ", None, None),
        ("FR *1017*1234567#", None, "fr"),
        ("FRANCE 12345678", None, None),
        ("*2017*12345678#", None, None),
    ])
    def test_spellings(self, text, cin, language):
        assert sms.parse_lookup(text) == sms.Lookup(cin, language)

    @pytest.mark.parametrize(("raw", "number"), [
        ("+21698123456", "+21698123456"), ("0021698123456", "+21698123456"), ("98 123 456", "+21698123456"),
        (" 21698123456", "+21698123456"), ("+33 6 12 34 56 78", "+33612345678"),
    ])
    def test_sender_numbers_have_one_spelling(self, raw, number):
        assert sms.normalize_number(raw) == number

    @pytest.mark.parametrize("raw", ["", "abc", "+", "1" * 20])
    def test_a_sender_that_is_no_number_is_refused(self, raw):
        with pytest.raises(sms.InvalidInput):
            sms.normalize_number(raw)


# ---------------------------------------------------------------- the answer, card by card


@pytest.fixture(params=["fr", "ar"])
def lang(request) -> str:
    return request.param


class TestReplies:
    def test_at_a_post_office(self, session, authority, family, post_office, lang):
        _, cin, _ = family
        move(session, issue(session, authority, cin=cin), *TO_POINT, point=post_office)

        reply = ask(session, ASK[lang].format(cin=cin))

        words = WORDS[lang]
        for expected in (words["member"], words["post"], words["address"], words["hours"]):
            assert expected in reply
        assert words["fund"] not in reply
        assert words["child"] not in reply  # the child has no card: listed only for cards they have

    def test_at_the_funds_centre(self, session, authority, family, fund_centre, lang):
        _, cin, _ = family
        move(session, issue(session, authority, cin=cin), *TO_POINT, point=fund_centre)

        reply = ask(session, ASK[lang].format(cin=cin))

        assert WORDS[lang]["fund"] in reply and WORDS[lang]["centre"] in reply
        # The centre has no Arabic address or hours: the French ones are shown rather than nothing.
        assert "Avenue Habib Bourguiba, Kasserine" in reply and "8h-17h" in reply

    def test_delivered_on_a_date(self, session, authority, family, post_office, lang):
        _, cin, _ = family
        card = move(session, issue(session, authority, cin=cin), *TO_POINT, point=post_office)
        move(session, card, "deliver", now=datetime(2026, 2, 14, 10, tzinfo=UTC))

        reply = ask(session, ASK[lang].format(cin=cin))

        assert f"{WORDS[lang]['delivered']} 14/02/2026" in reply
        assert WORDS[lang]["post"] not in reply

    def test_not_yet_dispatched_is_being_prepared(self, session, authority, family, post_office, lang):
        _, cin, child = family
        issue(session, authority, cin=cin)
        move(session, issue(session, authority, person_id=child), "batch", "ship", point=post_office)

        member_line, child_line = ask(session, ASK[lang].format(cin=cin)).split("\n")

        assert WORDS[lang]["member"] in member_line and WORDS[lang]["preparing"] in member_line
        assert WORDS[lang]["child"] in child_line
        assert WORDS[lang]["on_the_way"] in child_line and WORDS[lang]["post"] in child_line
        assert WORDS[lang]["address"] not in child_line  # on its way: where to, not yet when to come

    def test_returned_to_the_fund(self, session, authority, family, post_office, sfax_centre, lang):
        _, cin, _ = family
        move(session, issue(session, authority, cin=cin), *TO_POINT, "return_undelivered", point=post_office)

        reply = ask(session, ASK[lang].format(cin=cin))

        assert WORDS[lang]["returned"] in reply and WORDS[lang]["sfax"] in reply
        assert WORDS[lang]["post"] not in reply

    def test_blocked_with_its_replacement_waiting(self, session, authority, family, post_office, lang):
        _, cin, _ = family
        old = move(session, issue(session, authority, cin=cin), *TO_POINT, "deliver", point=post_office)
        new = service.replace(session, actor=ACTOR, authority=authority, serial=old.serial, reason="lost").card
        move(session, new, *TO_POINT, point=post_office)

        (line,) = ask(session, ASK[lang].format(cin=cin)).split("\n")

        assert WORDS[lang]["blocked"] in line and WORDS[lang]["replacement"] in line
        assert WORDS[lang]["post"] in line and WORDS[lang]["hours"] in line
        assert "lost" not in line  # why a card was blocked is not the sender's business

    def test_blocked_without_replacement(self, session, authority, family, sfax_centre, lang):
        _, cin, _ = family
        service.block(session, actor=ACTOR, serial=issue(session, authority, cin=cin).serial, reason="stolen")

        reply = ask(session, ASK[lang].format(cin=cin))

        assert WORDS[lang]["no_replacement"] in reply and WORDS[lang]["sfax"] in reply

    def test_a_returned_card_names_the_first_fund_centre_of_its_own_governorate(self, session, authority, family,
                                                                               post_office, sfax_centre, fund_centre,
                                                                               lang):
        point(session, code="CSFX02", kind="fund_centre", name_ar="مكتب الكنام بساقية الزيت",
              name_fr="Bureau CNAM Sakiet Ezzit", governorate="SFX")
        _, cin, _ = family
        move(session, issue(session, authority, cin=cin), *TO_POINT, "return_undelivered", point=post_office)

        reply = ask(session, ASK[lang].format(cin=cin))

        assert WORDS[lang]["sfax"] in reply  # CSFX01: the first by code of the card's governorate
        assert "Sakiet" not in reply and "ساقية" not in reply and WORDS[lang]["centre"] not in reply

    def test_without_a_centre_in_the_governorate_the_reply_still_says_where_to_ask(self, session, authority, family,
                                                                                   lang):
        _, cin, _ = family
        service.block(session, actor=ACTOR, serial=issue(session, authority, cin=cin).serial, reason="stolen")

        reply = ask(session, ASK[lang].format(cin=cin))

        assert WORDS[lang]["no_replacement"] in reply and ("CNAM" in reply or "الكنام" in reply)

    def test_no_card_and_unknown_cin_get_the_same_answer(self, session, family, lang):
        _, cin, _ = family
        unknown = "99999998"
        assert session.scalar(select(Person).where(Person.cin == unknown)) is None

        registered, not_registered = (ask(session, ASK[lang].format(cin=c)) for c in (cin, unknown))

        assert registered == not_registered
        assert WORDS[lang]["no_card"] in registered

    def test_a_holder_preferring_french_is_answered_in_french_unless_arabic_is_asked(self, session, authority,
                                                                                   post_office):
        member = factories.member(session, person_overrides={"language": "fr"})
        cin = session.get(Person, member.person_id).cin
        move(session, issue(session, authority, cin=cin), *TO_POINT, point=post_office)

        assert WORDS["fr"]["post"] in ask(session, f"*1017*{cin}#")
        assert WORDS["ar"]["post"] in ask(session, f"*1017*{cin}*AR#")
        assert WORDS["ar"]["post"] in ask(session, f"AR *1017*{cin}#")

    def test_the_holders_language_never_tells_a_registered_cin_from_an_unknown_one(self, session):
        member = factories.member(session, person_overrides={"language": "fr"})
        cin = session.get(Person, member.person_id).cin

        assert ask(session, f"*1017*{cin}#") == ask(session, "*1017*99999997#")

    def test_a_member_without_a_card_is_told_so_beside_the_childs_card(self, session, authority, family, post_office):
        _, cin, child = family
        move(session, issue(session, authority, person_id=child), *TO_POINT, point=post_office)

        member_line, child_line = ask(session, ASK["fr"].format(cin=cin)).split("\n")

        assert member_line == "Mohamed: pas de carte."
        assert child_line.startswith("Salma: carte à retirer à Bureau de poste Kasserine Ennour")


class TestFamily:
    def test_a_members_cin_lists_the_dependants_cards_a_dependants_cin_only_their_own(self, session, authority, family,
                                                                                       post_office, fund_centre):
        member, cin, child = family
        spouse = factories.dependant(session, member.social_id, relationship="spouse", person={
            "cin": factories.cin(), "first_name_lat": "Amel", "first_name_ar": "أمل", "sex": "F",
            "birth_date": date(1984, 4, 4)})
        spouse_cin = session.get(Person, spouse.person_id).cin
        move(session, issue(session, authority, cin=cin), *TO_POINT, point=post_office)
        move(session, issue(session, authority, person_id=child), *TO_POINT, point=fund_centre)
        move(session, issue(session, authority, cin=spouse_cin), *TO_POINT, point=post_office)

        whole = ask(session, ASK["fr"].format(cin=cin))
        own = ask(session, ASK["fr"].format(cin=spouse_cin))

        assert [line.split(":")[0] for line in whole.split("\n")] == ["Mohamed", "Amel", "Salma"]
        assert own.startswith("Amel: carte à retirer à Bureau de poste")
        assert "Mohamed" not in own and "Salma" not in own and "CNAM" not in own

    def test_a_dependant_no_longer_in_charge_is_not_listed(self, session, authority, family, post_office):
        member, cin, _ = family
        spouse = factories.dependant(session, member.social_id, relationship="spouse", person={
            "first_name_lat": "Amel", "first_name_ar": "أمل", "sex": "F", "birth_date": date(1984, 4, 4)})
        move(session, issue(session, authority, person_id=spouse.person_id), *TO_POINT, point=post_office)
        issue(session, authority, cin=cin)
        assert "Amel" in ask(session, ASK["fr"].format(cin=cin))

        registry.update_dependant(session, actor=ACTOR, social_id=member.social_id, dependant_id=spouse.id,
                                  data=DependantUpdate(end_date=date(2026, 1, 31)))

        assert "Amel" not in ask(session, ASK["fr"].format(cin=cin))

    def test_a_reply_never_shows_ids_full_names_or_another_familys_data(self, session, authority, family, post_office,
                                                                       fund_centre, other_family):
        member, cin, child = family
        mine = [move(session, issue(session, authority, cin=cin), *TO_POINT, "deliver", point=post_office),
                move(session, issue(session, authority, person_id=child), *TO_POINT, point=fund_centre)]
        replies = [ask(session, text.format(cin=cin)) for text in (*ASK.values(), "*1017*{cin}#")]
        forbidden = [cin, member.social_id, "Ben Salah", "بن صالح", *(c.serial for c in mine),
                     *(c.holder_name for c in mine), other_family["cin"], other_family["social_id"],
                     *other_family["serials"], *other_family["words"]]

        assert "Mohamed" in replies[0] and "محمد" in replies[1] and "Salma" in replies[0]
        for reply in replies:
            assert [word for word in forbidden if word in reply] == []
        # and the other way round: the other family's reply holds nothing of this one
        theirs = ask(session, ASK["fr"].format(cin=other_family["cin"]))
        assert "Karim" in theirs and "Yasmine" in theirs
        assert not any(word in theirs for word in ("Mohamed", "Salma", "Ennour", "Kasserine", cin))

    def test_a_long_family_fits_in_480_characters_and_says_how_many_more(self, session, authority, post_office):
        member = factories.member(session)
        cin = session.get(Person, member.person_id).cin
        move(session, issue(session, authority, cin=cin), *TO_POINT, point=post_office)
        for rank in range(8):
            child = factories.dependant(session, member.social_id, person={
                "first_name_lat": f"Enfant{rank}", "birth_date": date(2010 + rank, 1, 1)})
            move(session, issue(session, authority, person_id=child.person_id), *TO_POINT, point=post_office)

        for language in ("fr", "ar"):
            reply = ask(session, ASK[language].format(cin=cin))
            lines = reply.split("\n")
            more = int("".join(ch for ch in lines[-1] if ch.isdigit()))

            assert len(reply) <= sms.MAX_REPLY
            assert WORDS[language]["more"] in lines[-1]
            assert len(lines) - 1 + more == 9  # shown + announced = every card of the family
            assert len(lines) > 2

    def test_a_point_with_very_long_fields_is_clipped_to_fit(self, session, authority, family):
        _, cin, _ = family
        huge = point(session, code="PHUGE", kind="post_office", name_ar="م" * 200, name_fr="N" * 200, governorate="SFX",
                     address_fr="A" * 200, address_ar="ع" * 200, hours_fr="H" * 120, hours_ar="س" * 120)
        move(session, issue(session, authority, cin=cin), *TO_POINT, point=huge)

        for language in ("fr", "ar"):
            reply = ask(session, ASK[language].format(cin=cin))
            assert len(reply) <= sms.MAX_REPLY and "…" in reply


class TestCost:
    """The look-up answers thousands of messages a minute: its statements are counted, its commit does not wait."""

    def test_a_look_up_is_three_statements_and_the_lock_on_postgresql(self, session, authority, family, post_office,
                                                                     sfax_centre):
        _, cin, child = family
        move(session, issue(session, authority, cin=cin), *TO_POINT, point=post_office)
        move(session, issue(session, authority, person_id=child), *TO_POINT, "return_undelivered", point=post_office)
        session.flush()
        connection, statements = session.connection(), []

        def record(conn, cursor, statement, *args):
            statements.append(statement)

        event.listen(connection, "before_cursor_execute", record)
        try:
            reply = ask(session, ASK["fr"].format(cin=cin))
        finally:
            event.remove(connection, "before_cursor_execute", record)

        assert "Bureau de poste Kasserine Ennour" in reply and WORDS["fr"]["sfax"] in reply
        # The rate-limit count, the family with its cards and their points, one INSERT of both messages;
        # on PostgreSQL the number's lock first.
        assert len(statements) == (4 if connection.dialect.name == "postgresql" else 3), statements

    def test_on_postgresql_only_the_look_ups_own_transaction_commits_without_waiting_for_the_disk(self, committed):
        with committed() as session:
            if session.get_bind().dialect.name != "postgresql":
                pytest.skip("synchronous_commit is PostgreSQL's")
            default = session.scalar(sql("SHOW synchronous_commit"))
            session.commit()

            ask(session, "*1017*12345678#")
            assert session.scalar(sql("SHOW synchronous_commit")) == "off"
            session.commit()

            assert session.scalar(sql("SHOW synchronous_commit")) == default


class TestMalformed:
    @pytest.mark.parametrize("text", ["*1017*{cin}", "1017*{cin}#", " * 1017 * {cin4} {cin_4} # ", "{cin}",
                                      "*1017*{arabic}#", "*1017*{persian}#"])
    def test_robust_spellings_are_answered(self, session, authority, family, post_office, text):
        _, cin, _ = family
        move(session, issue(session, authority, cin=cin), *TO_POINT, point=post_office)
        typed = text.format(cin=cin, cin4=cin[:4], cin_4=cin[4:],
                            arabic=cin.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")),
                            persian=cin.translate(str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")))

        reply = ask(session, typed)

        assert WORDS["ar"]["member"] in reply and WORDS["ar"]["post"] in reply

    @pytest.mark.parametrize("text", ["*1017*1234567#", "*1017*123456789#", "*1017*ABCDEFGH#", "", "*1017#",
                                      "where is my card?"])
    def test_anything_else_explains_the_format_in_arabic(self, session, text):
        reply = ask(session, text)

        assert WORDS["ar"]["help"] in reply and "*FR#" in reply

    @pytest.mark.parametrize("text", ["FR *1017*1234567#", "*1017*ABCD*FR#", "fr"])
    def test_or_in_french_when_french_is_asked(self, session, text):
        assert WORDS["fr"]["help"] in ask(session, text)

    def test_the_message_and_the_reply_are_recorded(self, session, family):
        number = a_number()

        reply = ask(session, "hello", number=number)

        rows = session.execute(select(SmsMessage.direction, SmsMessage.text, SmsMessage.status, SmsMessage.purpose)
                               .where(SmsMessage.number == number).order_by(SmsMessage.id)).all()
        assert rows == [("in", "hello", "received", "card_lookup"), ("out", reply, "queued", "card_lookup")]


# ---------------------------------------------------------------- rate limit


def inbound_statuses(session, number: str) -> list[str]:
    return list(session.scalars(select(SmsMessage.status).where(SmsMessage.number == number,
                                                                SmsMessage.direction == "in").order_by(SmsMessage.id)))


def outbound_count(session, number: str) -> int:
    return session.scalar(select(func.count()).where(SmsMessage.number == number, SmsMessage.direction == "out"))


class TestRateLimit:
    def test_five_an_hour_then_told_once_then_silence_until_the_hour_has_passed(self, session, family):
        _, cin, _ = family
        number, text = a_number(), f"*1017*{cin}#"
        answer = ask(session, text)

        for minute in range(5):
            assert ask(session, text, number=number, now=T0 + timedelta(minutes=minute)) == answer
        sixth = ask(session, text, number=number, now=T0 + timedelta(minutes=5))
        seventh = ask(session, text, number=number, now=T0 + timedelta(minutes=6))
        last_second = ask(session, text, number=number, now=T0 + timedelta(minutes=59, seconds=59))
        other_number = ask(session, text, now=T0 + timedelta(minutes=7))
        after_the_hour = ask(session, text, number=number, now=T0 + timedelta(hours=1))

        # The first look-up (09:00 UTC) leaves the window at 10:00 UTC, 11:00 in Tunis.
        assert WORDS["ar"]["too_many"] in sixth and "11:00" in sixth
        assert seventh is None and last_second is None
        assert other_number == answer
        assert after_the_hour == answer
        assert inbound_statuses(session, number) == ["received"] * 5 + ["limited"] * 3 + ["received"]
        assert outbound_count(session, number) == 7  # five answers, one warning, one answer

    def test_the_warning_names_the_minute_rounded_up_and_speaks_french_if_asked(self, session):
        number, start = a_number(), T0 + timedelta(seconds=30)
        for minute in range(5):
            ask(session, "*1017*12345678#", number=number, now=start + timedelta(minutes=minute))

        warning = ask(session, "*1017*12345678*FR#", number=number, now=start + timedelta(minutes=10))

        assert warning == "Trop de demandes. Réessayez après 11:01."

    def test_malformed_messages_count_too(self, session):
        number = a_number()
        replies = [ask(session, "garbage", number=number, now=T0 + timedelta(minutes=m)) for m in range(7)]

        assert [WORDS["ar"]["help"] in r for r in replies[:5]] == [True] * 5
        assert WORDS["ar"]["too_many"] in replies[5] and replies[6] is None

    def test_the_limit_is_per_number_whatever_its_spelling(self, session):
        replies = [ask(session, "*1017*12345678#", number=spelling, limit=2)
                   for spelling in ("+21698765432", "0021698765432", "98 765 432")]

        assert WORDS["ar"]["no_card"] in replies[1] and WORDS["ar"]["too_many"] in replies[2]
        assert inbound_statuses(session, "+21698765432") == ["received", "received", "limited"]

    def test_the_limit_is_read_from_the_setting(self, session, monkeypatch):
        monkeypatch.setenv("LABES_SMS_LOOKUPS_PER_HOUR", "2")
        config.get_settings.cache_clear()
        number = a_number()

        replies = [ask(session, "*1017*12345678#", number=number, now=T0 + timedelta(minutes=m)) for m in range(3)]

        assert WORDS["ar"]["too_many"] in replies[2]
        assert WORDS["ar"]["too_many"] not in replies[1]


# ---------------------------------------------------------------- the outbox: only after commit


class Recorder:
    """A gateway that keeps what it was given; fails for the numbers in `refuse`."""

    def __init__(self, refuse: tuple[str, ...] = ()) -> None:
        self.sent: list[tuple[str, str]] = []
        self.refuse = refuse

    def send(self, number: str, text: str) -> None:
        if number in self.refuse:
            raise sms.SmsGatewayError("operator down")
        self.sent.append((number, text))


def status_of(factory, message_id: int) -> str | None:
    with factory() as fresh:
        return fresh.scalar(select(SmsMessage.status).where(SmsMessage.id == message_id))


class TestAfterCommit:
    def test_queued_messages_go_out_only_when_the_unit_commits(self, session, factory):
        recorder = Recorder()
        message = sms.queue_sms(session, number="+21698000001", text="Votre carte est prête.", purpose="card_notice")
        sms.send_after_commit(session, sender=recorder, factory=factory)
        session.flush()

        assert recorder.sent == [] and message.status == "queued"
        session.commit()

        assert recorder.sent == [("+21698000001", "Votre carte est prête.")]
        assert status_of(factory, message.id) == "sent"
        assert session.info.get(sms.OUTBOX_KEY) is None

    def test_never_on_rollback(self, session, factory):
        recorder = Recorder()
        message = sms.queue_sms(session, number="+21698000002", text="x", purpose="card_notice")
        message_id = message.id
        sms.send_after_commit(session, sender=recorder, factory=factory)

        session.rollback()
        assert session.info.get(sms.OUTBOX_KEY) is None
        session.commit()  # a later commit of the same session sends nothing of the undone unit

        assert recorder.sent == []
        assert status_of(factory, message_id) is None

    def test_a_commit_that_fails_sends_nothing(self, session, factory, fund_centre):
        recorder = Recorder()
        sms.queue_sms(session, number="+21698000010", text="x", purpose="card_notice")
        sms.send_after_commit(session, sender=recorder, factory=factory)
        session.add(PickupPoint(code=fund_centre.code, kind="post_office", name_ar="نسخة", name_fr="Copie",
                                governorate="KAS"))  # flushed by the commit itself, which then fails

        with pytest.raises(IntegrityError):
            session.commit()
        session.rollback()

        assert recorder.sent == []

    def test_a_rolled_back_savepoint_drops_only_its_own_messages(self, session, factory):
        recorder = Recorder()
        sms.send_after_commit(session, sender=recorder, factory=factory)
        sms.queue_sms(session, number="+21698000003", text="kept", purpose="card_notice")
        with pytest.raises(RuntimeError):
            with session.begin_nested():
                sms.queue_sms(session, number="+21698000004", text="undone", purpose="card_notice")
                raise RuntimeError

        session.commit()

        assert recorder.sent == [("+21698000003", "kept")]

    def test_a_refused_message_is_marked_failed_and_the_others_still_go(self, session, factory):
        recorder = Recorder(refuse=("+21698000005",))
        first = sms.queue_sms(session, number="+21698000005", text="a", purpose="card_notice")
        second = sms.queue_sms(session, number="+21698000006", text="b", purpose="card_notice")
        sms.send_after_commit(session, sender=recorder, factory=factory)

        session.commit()  # the gateway's failure does not fail the committed unit of work

        assert [status_of(factory, first.id), status_of(factory, second.id)] == ["failed", "sent"]
        assert recorder.sent == [("+21698000006", "b")]

    def test_dispatch_sends_each_queued_message_once(self, session, factory):
        message = sms.queue_sms(session, number="+21698000007", text="once", purpose="card_notice")
        session.commit()  # not hooked: stays queued for `labes sms dispatch`
        recorder = Recorder()

        first = sms.dispatch_outbox(factory, recorder)
        second = sms.dispatch_outbox(factory, recorder)

        again = sms.dispatch_outbox(factory, recorder, ids=[message.id])  # e.g. two dispatchers given the same id

        assert (first.sent, second.sent, again.sent) == (1, 0, 0)
        assert recorder.sent.count(("+21698000007", "once")) == 1
        assert status_of(factory, message.id) == "sent"

    def test_the_1017_reply_goes_out_after_commit(self, session, factory, family):
        recorder = Recorder()
        number = a_number()
        reply = ask(session, f"*1017*{family[1]}#", number=number)
        sms.send_after_commit(session, sender=recorder, factory=factory)
        assert recorder.sent == []

        session.commit()

        assert recorder.sent == [(number, reply)]


# ---------------------------------------------------------------- gateways


class _Gateway(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, self.headers.get("Authorization"), self.headers.get("Content-Type"),
                                     json.loads(body)))
        self.send_response(self.server.status)
        if 300 <= self.server.status < 400:
            self.send_header("Location", "/elsewhere")
        self.end_headers()
        self.wfile.write(b"queue full" if self.server.status >= 400 else b"")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def gateway():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    server.received, server.status = [], 202
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


class TestGateways:
    def test_http_sender_posts_json_with_basic_auth(self, gateway):
        sender = sms.HttpSender(f"http://127.0.0.1:{gateway.server_port}/send", "labes", "s3cret", timeout=5)

        sender.send("+21698123456", "محمد: البطاقة قيد الإعداد.")

        assert gateway.received == [("/send", "Basic bGFiZXM6czNjcmV0", "application/json; charset=utf-8",
                                     {"to": "+21698123456", "text": "محمد: البطاقة قيد الإعداد."})]

    @pytest.mark.parametrize("status", [500, 401, 302])
    def test_http_sender_refuses_anything_but_2xx(self, gateway, status):
        gateway.status = status
        sender = sms.HttpSender(f"http://127.0.0.1:{gateway.server_port}/send", "labes", "s3cret", timeout=5)

        with pytest.raises(sms.SmsGatewayError, match=f"answered {status}") as raised:
            sender.send("+21698123456", "x")

        assert "s3cret" not in str(raised.value)
        assert len(gateway.received) == 1  # a redirect is not followed

    def test_an_unreachable_gateway_is_a_clear_error(self):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        sender = sms.HttpSender(f"http://127.0.0.1:{port}/send", "labes", "pw", timeout=2)

        with pytest.raises(sms.SmsGatewayError, match=f"127.0.0.1:{port}/send could not be reached"):
            sender.send("+21698123456", "x")

    @pytest.mark.parametrize(("url", "problem"), [("file:///etc/passwd", "http"),
                                                  ("https://cnam:s3cret@sms.example.tn/", "not in its URL")])
    def test_only_http_urls_without_credentials(self, url, problem):
        with pytest.raises(ValueError, match=problem) as raised:
            sms.HttpSender(url, "u", "p")

        assert "s3cret" not in str(raised.value)

    def test_the_gateway_is_chosen_by_the_setting(self, monkeypatch):
        assert isinstance(sms.sender_from_settings(), sms.DevSender)

        monkeypatch.setenv("LABES_SMS_GATEWAY_URL", "https://sms.example.tn/v1/messages")
        monkeypatch.setenv("LABES_SMS_GATEWAY_USERNAME", "cnam")
        config.get_settings.cache_clear()
        sender = sms.sender_from_settings()

        assert isinstance(sender, sms.HttpSender) and sender.url == "https://sms.example.tn/v1/messages"

    def test_the_development_gateway_logs_one_json_line_and_the_row_ends_sent(self, session, factory):
        lines: list[str] = []
        handler = logging.Handler()
        handler.emit = lambda record: lines.append(JsonFormatter().format(record))
        logger = logging.getLogger("labes.sms")
        logger.addHandler(handler)
        previous = logger.level
        logger.setLevel(logging.INFO)
        try:
            message = sms.queue_sms(session, number="+21698000008", text="Bonjour", purpose="card_notice")
            sms.send_after_commit(session, sender=sms.DevSender(), factory=factory)
            session.commit()
        finally:
            logger.removeHandler(handler)
            logger.setLevel(previous)

        (line,) = [json.loads(line) for line in lines]
        assert (line["logger"], line["sms_to"], line["sms_text"]) == ("labes.sms", "+21698000008", "Bonjour")
        assert status_of(factory, message.id) == "sent"


# ---------------------------------------------------------------- the webhook


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def sms_client(app_for, factory):
    """The API with the SMS routes (included here until app.py includes them) and a recording gateway."""
    app = app_for(factory)
    if not any(getattr(route, "path", None) == "/api/v1/sms/inbound" for route in app.routes):
        app.include_router(sms_router)
    app.state.sms_sender = Recorder()
    with TestClient(app) as client:
        yield client


@pytest.fixture
def operator(session) -> tuple[str, str]:
    """The operator's gateway: an API token holding `sms:gateway`; returns (name, secret)."""
    name = f"operator-{uuid.uuid4().hex[:8]}"
    secret, _ = create_api_token(session, actor=ACTOR, name=name, permissions=["sms:gateway"])
    session.commit()
    return name, secret


class TestWebhook:
    def test_json_message_is_answered_recorded_audited_and_sent(self, sms_client, session, authority, family,
                                                                post_office, operator):
        _, cin, _ = family
        move(session, issue(session, authority, cin=cin), *TO_POINT, point=post_office)
        session.commit()
        number = a_number()

        response = sms_client.post("/api/v1/sms/inbound", json={"from": number, "text": f"*1017*{cin}*FR#"},
                                   headers={**bearer(operator[1]), "x-request-id": "sms-json-1"})

        assert response.status_code == 200, response.text
        reply = response.json()["reply"]
        assert reply.startswith("Mohamed: carte à retirer à Bureau de poste Kasserine Ennour")
        assert sms_client.app.state.sms_sender.sent == [(number, reply)]
        assert session.scalars(select(SmsMessage.status).where(SmsMessage.number == number)
                               .order_by(SmsMessage.id)).all() == ["received", "sent"]
        # A look-up changes nothing: the message log is its record, not the audit chain.
        assert session.scalar(select(AuditEvent).where(AuditEvent.request_id == "sms-json-1")) is None

    def test_form_message_is_answered(self, sms_client, session, family, operator):
        number = a_number()

        response = sms_client.post("/api/v1/sms/inbound", data={"from": number, "text": f"*1017*{family[1]}"},
                                   headers=bearer(operator[1]))

        assert response.status_code == 200, response.text
        assert WORDS["ar"]["no_card"] in response.json()["reply"]
        assert sms_client.app.state.sms_sender.sent == [(number, response.json()["reply"])]

    def test_over_the_limit_the_reply_is_null(self, sms_client, session, operator):
        number = a_number()
        for _ in range(5):
            session.add(SmsMessage(direction="in", number=number, text="x", at=datetime.now(UTC), status="received",
                                   purpose="card_lookup"))
        session.add(SmsMessage(direction="in", number=number, text="x", at=datetime.now(UTC), status="limited",
                               purpose="card_lookup"))
        session.commit()

        response = sms_client.post("/api/v1/sms/inbound", json={"from": number, "text": "*1017*12345678#"},
                                   headers=bearer(operator[1]))

        assert response.status_code == 200 and response.json() == {"reply": None}
        assert sms_client.app.state.sms_sender.sent == []

    def test_without_a_token_401(self, sms_client, session):
        number = a_number()

        response = sms_client.post("/api/v1/sms/inbound", json={"from": number, "text": "*1017*12345678#"})

        assert response.status_code == 401
        assert session.scalar(select(func.count()).where(SmsMessage.number == number)) == 0

    @pytest.mark.parametrize("who", ["registry_clerk", "cards_reader_token"])
    def test_without_the_gateway_permission_403(self, sms_client, session, who):
        if who == "registry_clerk":
            token = factories.agent_token(session, "registry_clerk")
        else:
            token, _ = create_api_token(session, actor=ACTOR, name=f"reader-{uuid.uuid4().hex[:8]}",
                                        permissions=["cards:read"])
        session.commit()
        number = a_number()

        response = sms_client.post("/api/v1/sms/inbound", json={"from": number, "text": "*1017*12345678#"},
                                   headers=bearer(token))

        assert response.status_code == 403
        assert "sms:gateway" in response.json()["detail"]
        assert session.scalar(select(func.count()).where(SmsMessage.number == number)) == 0

    @pytest.mark.parametrize(("body", "field"), [({"text": "*1017*12345678#"}, "from"), ({"from": "hello"}, "from")])
    def test_a_malformed_message_is_refused(self, sms_client, operator, body, field):
        response = sms_client.post("/api/v1/sms/inbound", json=body, headers=bearer(operator[1]))

        assert response.status_code in (400, 422)
        assert response.json()["errors"][0]["field"] == field

    def test_agents_read_the_outbox_of_a_number(self, sms_client, session, operator):
        number = a_number()
        sent = sms_client.post("/api/v1/sms/inbound", json={"from": number, "text": "?"}, headers=bearer(operator[1]))
        clerk = factories.agent_token(session, "registry_clerk")
        finance = factories.agent_token(session, "finance")
        session.commit()

        response = sms_client.get("/api/v1/sms/outbox", params={"number": number}, headers=bearer(clerk))

        assert response.status_code == 200, response.text
        assert [(m["text"], m["status"]) for m in response.json()] == [(sent.json()["reply"], "sent")]
        assert sms_client.get("/api/v1/sms/outbox", params={"number": number}, headers=bearer(finance)).status_code == 403
        assert sms_client.get("/api/v1/sms/outbox", params={"number": number}).status_code == 401


# ---------------------------------------------------------------- the command line


class TestCli:
    def test_receive_answers_sends_and_prints(self, cli_runner, committed, authority):
        with committed() as session:
            member = factories.member(session)
            cin = session.get(Person, member.person_id).cin
            office = point(session, code="PCLI01", kind="post_office", name_ar="مكتب بريد صفاقس",
                           name_fr="Bureau de poste Sfax Médina", governorate="SFX")
            move(session, issue(session, authority, cin=cin), *TO_POINT, point=office)
            session.commit()
        number = a_number()

        result = cli_runner.invoke(sms_cli, ["receive", "--from", number, f"*1017*{cin}*FR#"])

        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("Mohamed: carte à retirer à Bureau de poste Sfax Médina")
        (logged,) = [json.loads(line) for line in result.stderr.splitlines() if '"labes.sms"' in line]
        assert (logged["sms_to"], logged["sms_text"]) == (number, result.stdout.strip())
        with committed() as session:
            rows = session.execute(select(SmsMessage.direction, SmsMessage.status).where(SmsMessage.number == number)
                                   .order_by(SmsMessage.id)).all()
        assert rows == [("in", "received"), ("out", "sent")]

    def test_a_bad_sender_exits_1_and_records_nothing(self, cli_runner, committed):
        result = cli_runner.invoke(sms_cli, ["receive", "--from", "not a number", "*1017*12345678#"])

        assert result.exit_code == 1
        assert "not a phone number" in result.output
        with committed() as session:
            assert session.scalar(select(func.count()).select_from(SmsMessage)) == 0

    def test_dispatch_sends_what_is_queued(self, cli_runner, committed):
        with committed() as session:
            message_id = sms.queue_sms(session, number="+21698000009", text="x", purpose="card_notice").id
            session.commit()

        result = cli_runner.invoke(sms_cli, ["dispatch"])

        assert result.exit_code == 0, result.output
        assert "1 sent, 0 failed" in result.stdout
        assert status_of(committed, message_id) == "sent"
