"""Bulk import: idempotent upserts, every kind of bad row reported, good rows loaded."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from sqlalchemy import func, select

from labes.registry.bulk import FileError
from labes.registry.importer import MEMBER_COLUMNS, PROVIDER_COLUMNS, MembersImport, ProvidersImport
from labes.registry.identifiers import make_social_id
from labes.registry.models import (
    AmenHousehold, AmenMember, ChronicCondition, CoveragePeriod, Dependant, Facility, Member, Person, Practice,
    Professional,
)
from labes.security.audit import Actor, verify
from labes.security.models import AuditEvent

ACTOR = Actor("cli", "tests")
SID1 = make_social_id("010000001")
SID2 = make_social_id("010000002")
IBAN = "TN5910006035183598478831"  # its RIB: 10006035183598478831
IBAN2 = "TN5908001000000000000795"  # its RIB: 08001000000000000795


def member_row(social_id: str, cin: str, **overrides) -> dict[str, str]:
    row = dict.fromkeys(MEMBER_COLUMNS, "")
    row.update({"record_type": "member", "social_id": social_id, "relationship": "insured", "rank": "0", "cin": cin,
                "first_name_ar": "محمد", "last_name_ar": "الطرابلسي", "first_name_lat": "Mohamed",
                "last_name_lat": "Trabelsi", "birth_date": "1978-04-02", "sex": "M", "phone": "+21698111222",
                "language": "ar", "governorate": "KAS", "delegation": "Sbeitla", "regime": "CNSS",
                "employer": "Société des Ciments|1234567A/M/000", "affiliation_start": "2005-01-01", "status": "active",
                "care_scheme": "public", "scheme_since": "2019-07-01"})
    row.update(overrides)
    return row


def dependant_row(social_id: str, relationship: str, rank: int, **overrides) -> dict[str, str]:
    row = dict.fromkeys(MEMBER_COLUMNS, "")
    row.update({"record_type": "dependant", "social_id": social_id, "relationship": relationship, "rank": str(rank),
                "first_name_ar": "سلمى", "last_name_ar": "الطرابلسي", "first_name_lat": "Salma",
                "last_name_lat": "Trabelsi", "birth_date": "2012-09-30", "sex": "F"})
    row.update(overrides)
    return row


def provider_rows() -> list[dict[str, str]]:
    facility = dict.fromkeys(PROVIDER_COLUMNS, "")
    facility.update({"record_type": "facility", "code": "FKAS00001", "kind": "regional_hospital",
                     "name_ar": "المستشفى الجهوي بالقصرين", "name_lat": "Hôpital régional de Kasserine",
                     "governorate": "KAS", "sector": "public"})
    doctor = dict.fromkeys(PROVIDER_COLUMNS, "")
    doctor.update({"record_type": "professional", "licence": "L000001", "kind": "general_practitioner",
                   "family_doctor": "1", "name_ar": "د. سامي", "name_lat": "Dr Sami Ayari", "governorate": "KAS",
                   "sector": "private", "facilities": "FKAS00001", "contract_number": "C1001",
                   "contract_start": "2020-01-01", "contract_status": "active", "tax_regime": "actual"})
    return [facility, doctor]


def write(path: Path, columns, rows) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def with_iban(rows: list[dict[str, str]], *ibans: str) -> list[dict[str, str]]:
    """Return `rows` with an `iban` cell each, in order."""
    return [row | {"iban": iban} for row, iban in zip(rows, ibans, strict=True)]


def ibans(factory, model, key) -> dict[str, str | None]:
    with factory() as session:
        return dict(session.execute(select(key, model.iban)).all())


def count(factory, model) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).select_from(model))


def errors_of(path: Path | None) -> list[dict[str, str]]:
    assert path is not None
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def family_file(tmp_path) -> Path:
    rows = [
        member_row(SID1, "08123456", chronic="01|E11|2021-01-01|", amen="A000000001|free|2024-01-01|2028-12-31"),
        dependant_row(SID1, "spouse", 1, cin="08123457", birth_date="1982-01-01", first_name_lat="Amel"),
        dependant_row(SID1, "child", 1),
        dependant_row(SID1, "child", 2, birth_date="2003-02-01", student_until="2027-06-30", evidence="UNI-2025-1"),
        member_row(SID2, "09000001", care_scheme="private", family_doctor="L000001", first_name_lat="Leila", sex="F"),
    ]
    return write(tmp_path / "members.csv", MEMBER_COLUMNS, rows)


def load(committed, tmp_path, members: Path):
    ProvidersImport(committed, actor=ACTOR).run(write(tmp_path / "providers.csv", PROVIDER_COLUMNS, provider_rows()))
    return MembersImport(committed, actor=ACTOR).run(members)


class TestMembersImport:
    def test_loads_families_with_everything_they_carry(self, committed, tmp_path, family_file):
        result = load(committed, tmp_path, family_file)
        assert (result.rows, result.loaded, result.rejected) == (5, 5, 0)
        assert result.errors_path is None
        assert count(committed, Person) == 5
        assert count(committed, Member) == 2
        assert count(committed, Dependant) == 3
        assert count(committed, CoveragePeriod) == 2
        assert count(committed, ChronicCondition) == 1
        assert count(committed, AmenHousehold) == 1
        assert count(committed, AmenMember) == 4  # the head and the three dependants
        with committed() as session:
            doctor = session.scalar(select(CoveragePeriod.family_doctor_id).join(Member).where(Member.social_id == SID2))
            assert doctor == session.scalar(select(Professional.id).where(Professional.licence == "L000001"))
            member = session.scalar(select(Member).where(Member.social_id == SID1))
            assert (member.employer, member.employer_tax_id) == ("Société des Ciments", "1234567A/M/000")

    def test_running_twice_changes_nothing(self, committed, tmp_path, family_file):
        load(committed, tmp_path, family_file)
        with committed() as session:
            first = session.execute(select(Person).order_by(Person.id)).scalars().all()
            snapshot = [(p.id, p.cin, p.first_name_lat, p.birth_date) for p in first]
        again = MembersImport(committed, actor=ACTOR).run(family_file)
        assert again.rejected == 0
        with committed() as session:
            second = [(p.id, p.cin, p.first_name_lat, p.birth_date)
                      for p in session.execute(select(Person).order_by(Person.id)).scalars()]
        assert second == snapshot
        assert count(committed, Dependant) == 3

    def test_a_corrected_feed_updates_in_place(self, committed, tmp_path, family_file):
        load(committed, tmp_path, family_file)
        rows = [member_row(SID1, "08123456", phone="+21655000111", status="suspended")]
        MembersImport(committed, actor=ACTOR).run(write(tmp_path / "fix.csv", MEMBER_COLUMNS, rows))
        with committed() as session:
            member = session.scalar(select(Member).where(Member.social_id == SID1))
            assert member.status == "suspended"
            assert session.get(Person, member.person_id).phone == "+21655000111"
        assert count(committed, Member) == 2

    def test_an_interrupted_import_rerun_reaches_the_same_state(self, committed, tmp_path, family_file, monkeypatch):
        import labes.registry.bulk as bulk

        monkeypatch.setattr(bulk, "CHUNK_ROWS", 1)  # one family per transaction
        ProvidersImport(committed, actor=ACTOR).run(write(tmp_path / "providers.csv", PROVIDER_COLUMNS, provider_rows()))
        original = MembersImport.process_chunk
        calls = {"n": 0}

        def crash_on_second_chunk(self, chunk, **kwargs):
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt
            return original(self, chunk, **kwargs)

        monkeypatch.setattr(MembersImport, "process_chunk", crash_on_second_chunk)
        with pytest.raises(KeyboardInterrupt):
            MembersImport(committed, actor=ACTOR).run(family_file)
        assert count(committed, Member) == 1  # the first family committed, the second never started
        monkeypatch.setattr(MembersImport, "process_chunk", original)
        MembersImport(committed, actor=ACTOR).run(family_file)
        assert (count(committed, Member), count(committed, Dependant), count(committed, Person)) == (2, 3, 5)

    @pytest.mark.parametrize(("overrides", "field"), [
        ({"social_id": "01000000100"}, "social_id"),
        ({"cin": "1234567"}, "cin"),
        ({"cin": ""}, "cin"),
        ({"birth_date": "1978-13-02"}, "birth_date"),
        ({"sex": "X"}, "sex"),
        ({"governorate": "PAR"}, "governorate"),
        ({"regime": "PRIVATE"}, "regime"),
        ({"care_scheme": "private"}, "family_doctor"),
        ({"care_scheme": "private", "family_doctor": "L999999"}, "family_doctor"),
        ({"affiliation_end": "2000-01-01"}, "affiliation_end"),
        ({"chronic": "99|X00|2020-01-01|"}, "chronic"),
        ({"amen": "A1|gold|2024-01-01|"}, "amen"),
        ({"phone": "12345"}, "phone"),
        ({"first_name_ar": ""}, "first_name_ar"),
    ])
    def test_each_bad_member_row_is_reported_and_the_good_rows_load(self, committed, tmp_path, overrides, field):
        second = member_row(SID2, "09000001")
        second.update(overrides)
        rows = [member_row(SID1, "08123456"), second]
        result = load(committed, tmp_path, write(tmp_path / "members.csv", MEMBER_COLUMNS, rows))
        assert (result.loaded, result.rejected) == (1, 1)
        errors = errors_of(result.errors_path)
        assert errors[0]["row"] == "3"  # header is line 1
        assert errors[0]["field"] == field
        assert errors[0]["reason"]
        assert count(committed, Member) == 1

    def test_orphan_dependant_and_bad_dependants(self, committed, tmp_path):
        rows = [
            dependant_row(make_social_id("010000099"), "child", 1, governorate="KAS"),  # no such member
            member_row(SID1, "08123456"),
            dependant_row(SID1, "cousin", 1),
            dependant_row(SID1, "child", 0),
            dependant_row(SID1, "child", 3, student_until="2027-01-01"),  # no evidence
            dependant_row(SID1, "child", 4, disabled="yes"),
            dependant_row(SID1, "child", 5),
        ]
        result = load(committed, tmp_path, write(tmp_path / "members.csv", MEMBER_COLUMNS, rows))
        # Rows whose member is missing are retried at the end of the run, so they come last in the file.
        fields = sorted(((e["row"], e["field"]) for e in errors_of(result.errors_path)), key=lambda e: int(e[0]))
        assert fields == [("2", "social_id"), ("4", "relationship"), ("5", "rank"), ("6", "evidence"), ("7", "disabled")]
        assert count(committed, Dependant) == 1

    def test_a_cin_already_used_by_another_person_rejects_only_that_row(self, committed, tmp_path):
        rows = [member_row(SID1, "08123456"), dependant_row(SID1, "spouse", 1, cin="09000001")]
        load(committed, tmp_path, write(tmp_path / "a.csv", MEMBER_COLUMNS, rows))
        # Another family's member now claims to be insured under the same CIN as family 1's member.
        rows = [member_row(SID2, "08123456"), member_row(make_social_id("010000003"), "07000003")]
        result = MembersImport(committed, actor=ACTOR).run(write(tmp_path / "b.csv", MEMBER_COLUMNS, rows))
        assert (result.loaded, result.rejected) == (1, 1)
        assert errors_of(result.errors_path)[0]["field"] == "cin"
        assert count(committed, Member) == 2

    def test_wrong_header_is_refused_before_anything_is_written(self, committed, tmp_path):
        path = tmp_path / "members.csv"
        path.write_text("record_type,social_id,nickname\nmember,1,x\n", encoding="utf-8")
        with pytest.raises(FileError, match="unknown column.*nickname"):
            MembersImport(committed, actor=ACTOR).run(path)
        assert count(committed, Person) == 0

    def test_not_utf8_is_refused(self, committed, tmp_path):
        path = tmp_path / "members.csv"
        path.write_bytes((",".join(MEMBER_COLUMNS) + "\n").encode() + "member,é".encode("latin-1") + b"\n")
        with pytest.raises(FileError, match="UTF-8"):
            MembersImport(committed, actor=ACTOR).run(path)

    def test_not_utf8_names_the_line(self, committed, tmp_path, monkeypatch):
        import labes.registry.bulk as bulk

        monkeypatch.setattr(bulk, "CHUNK_ROWS", 1)  # the bad byte is in a later chunk, read by the worker
        path = write(tmp_path / "members.csv", MEMBER_COLUMNS, [member_row(SID1, "08123456")] * 3)
        with path.open("ab") as handle:
            handle.write("member,é".encode("latin-1") + b"\n")
        with pytest.raises(FileError, match=r"members.csv: not UTF-8 text \(line 5\)"):
            MembersImport(committed, actor=ACTOR).run(path)

    def test_quoted_cells_with_line_breaks_commas_and_quotes(self, committed, tmp_path, monkeypatch):
        import labes.registry.bulk as bulk

        monkeypatch.setattr(bulk, "CHUNK_ROWS", 1)
        address = 'Rue "Ibn Khaldoun", 12\nCité Ennour'
        rows = [member_row(SID1, "08123456", address=address), dependant_row(SID1, "child", 1, address="a,\nb\nc"),
                member_row(SID2, "09000001", rank="x\ny")]  # a bad cell spanning two lines
        path = write(tmp_path / "members.csv", MEMBER_COLUMNS, rows)
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
        result = load(committed, tmp_path, path)
        assert (result.rows, result.loaded, result.rejected) == (3, 3, 0)  # a member's rank is not read
        with committed() as session:
            assert session.scalar(select(Person.address).where(Person.cin == "08123456")) == address.replace("\n", "\r\n")
            child = session.scalar(select(Dependant).join(Member).where(Member.social_id == SID1))
            assert child is not None  # the dependant stayed in its member's chunk though the chunk was full

    def test_a_stray_quote_rejects_the_rest_of_the_file_as_one_row(self, committed, tmp_path):
        path = write(tmp_path / "members.csv", MEMBER_COLUMNS, [member_row(SID1, "08123456")])
        with path.open("a", encoding="utf-8") as handle:
            handle.write('member,"unclosed\n' + ",".join(member_row(SID2, "09000001").values()) + "\n")
        result = load(committed, tmp_path, path)
        assert (result.rows, result.loaded, result.rejected) == (2, 1, 1)
        assert errors_of(result.errors_path)[0]["field"] == "row"  # everything after the quote is one short record

    def test_a_quoted_record_type_still_starts_a_chunk(self, committed, tmp_path, monkeypatch):
        import labes.registry.bulk as bulk

        monkeypatch.setattr(bulk, "CHUNK_ROWS", 1)
        path = tmp_path / "members.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=MEMBER_COLUMNS, quoting=csv.QUOTE_ALL)
            writer.writeheader()
            writer.writerows([member_row(SID1, "08123456"), dependant_row(SID1, "child", 1, governorate=""),
                              member_row(SID2, "09000001"), dependant_row(SID2, "spouse", 1, governorate="")])
        chunks = list(MembersImport(committed, actor=ACTOR)._chunks(path))
        assert [chunk.first_line for chunk in chunks] == [2, 4]
        result = load(committed, tmp_path, path)
        assert (result.loaded, result.rejected) == (4, 0)
        with committed() as session:  # each dependant took its member's governorate: read in the same chunk
            assert set(session.scalars(select(Person.governorate))) == {"KAS"}

    def test_extra_cells_reject_the_row(self, committed, tmp_path):
        path = write(tmp_path / "members.csv", MEMBER_COLUMNS, [member_row(SID1, "08123456")])
        with path.open("a", encoding="utf-8") as handle:
            handle.write(",".join(member_row(SID2, "09000001").values()) + ",surplus\n")
        result = load(committed, tmp_path, path)
        assert result.rejected == 1 and errors_of(result.errors_path)[0]["field"] == "row"

    def test_parallel_workers_reach_the_same_state_as_one(self, committed, tmp_path, monkeypatch):
        import labes.registry.bulk as bulk

        monkeypatch.setattr(bulk, "CHUNK_ROWS", 2)
        rows = []
        for n in range(12):
            social_id = make_social_id(f"0200000{n:02d}")
            rows += [member_row(social_id, f"0700{n:04d}"), dependant_row(social_id, "child", 1)]
        # A dependant listed far from its member (and without a governorate) still finds it.
        late = dependant_row(make_social_id("020000000"), "child", 2, governorate="")
        rows.insert(1, rows.pop(-1))
        rows.append(late)
        rows.append(dependant_row(make_social_id("029999999"), "child", 1, governorate="TUN"))  # a true orphan
        path = write(tmp_path / "members.csv", MEMBER_COLUMNS, rows)
        parallel = MembersImport(committed, actor=ACTOR).run(path, workers=2)
        assert (parallel.loaded, parallel.rejected) == (25, 1)
        assert errors_of(parallel.errors_path)[0]["field"] == "social_id"
        with committed() as session:
            state = sorted((str(p.id), p.governorate) for p in session.scalars(select(Person)))
        assert ("", None) not in state and all(g == "KAS" for _, g in state)
        sequential = MembersImport(committed, actor=ACTOR).run(path)
        assert (sequential.loaded, sequential.rejected) == (25, 1)
        with committed() as session:
            assert sorted((str(p.id), p.governorate) for p in session.scalars(select(Person))) == state

    def test_an_iban_column_sets_each_persons_account_and_a_bad_one_rejects_its_row(self, committed, tmp_path):
        rows = with_iban([member_row(SID1, "08123456"), dependant_row(SID1, "spouse", 1, cin="08123457"),
                          member_row(SID2, "09000001"), member_row(make_social_id("010000003"), "07000003")],
                         "1000 6035 1835 9847 8831", "", IBAN2, "FR7630006000011234567890189")
        path = write(tmp_path / "members.csv", (*MEMBER_COLUMNS, "iban"), rows)

        result = load(committed, tmp_path, path)

        assert (result.loaded, result.rejected) == (3, 1)
        (error,) = errors_of(result.errors_path)
        assert (error["row"], error["field"]) == ("5", "iban")
        assert "Tunisian accounts only" in error["reason"]
        assert ibans(committed, Person, Person.cin) == {"08123456": IBAN, "08123457": None, "09000001": IBAN2}

    def test_a_feed_without_the_iban_column_keeps_the_accounts_and_an_empty_cell_removes_one(self, committed, tmp_path):
        rows = [member_row(SID1, "08123456"), member_row(SID2, "09000001")]
        load(committed, tmp_path, write(tmp_path / "a.csv", (*MEMBER_COLUMNS, "iban"), with_iban(rows, IBAN, IBAN2)))

        older = [member_row(SID1, "08123456", phone="+21655000111"), member_row(SID2, "09000001")]
        result = MembersImport(committed, actor=ACTOR).run(write(tmp_path / "b.csv", MEMBER_COLUMNS, older))
        assert (result.loaded, result.rejected) == (2, 0)
        assert ibans(committed, Person, Person.cin) == {"08123456": IBAN, "09000001": IBAN2}
        with committed() as session:  # the rows were written all the same
            assert session.scalar(select(Person.phone).where(Person.cin == "08123456")) == "+21655000111"

        MembersImport(committed, actor=ACTOR).run(write(tmp_path / "c.csv", (*MEMBER_COLUMNS, "iban"),
                                                        with_iban(rows, "", IBAN2)))
        assert ibans(committed, Person, Person.cin) == {"08123456": None, "09000001": IBAN2}

    def test_a_dependants_row_carries_no_account_and_never_removes_one(self, committed, tmp_path):
        # 08123456 is insured in her own right (with an account) and her husband's spouse: the blank cell of her
        # dependant row, later in the same chunk, leaves her account; an account on a dependant's row is refused.
        rows = with_iban([member_row(SID1, "08123456"), member_row(SID2, "09000001"),
                          dependant_row(SID2, "spouse", 1, cin="08123456"),
                          dependant_row(SID2, "child", 1, cin="08123458")],
                         IBAN, IBAN2, "", IBAN)

        result = load(committed, tmp_path, write(tmp_path / "members.csv", (*MEMBER_COLUMNS, "iban"), rows))

        (error,) = errors_of(result.errors_path)
        assert (error["row"], error["field"]) == ("5", "iban") and "the member's row" in error["reason"]
        assert result.loaded == 3
        assert ibans(committed, Person, Person.cin) == {"08123456": IBAN, "09000001": IBAN2}

    def test_the_run_is_audited_with_the_file_hash(self, committed, tmp_path, family_file):
        result = load(committed, tmp_path, family_file)
        with committed() as session:
            event = session.scalar(select(AuditEvent).where(AuditEvent.action == "registry:import:members"))
            assert event.after["sha256"] == result.sha256
            assert event.after["loaded"] == 5
            assert verify(session).ok


class TestProvidersImport:
    def test_loads_facilities_professionals_and_practices(self, committed, tmp_path):
        result = ProvidersImport(committed, actor=ACTOR).run(write(tmp_path / "p.csv", PROVIDER_COLUMNS, provider_rows()))
        assert (result.loaded, result.rejected) == (2, 0)
        assert (count(committed, Facility), count(committed, Professional), count(committed, Practice)) == (1, 1, 1)

    @pytest.mark.parametrize(("overrides", "field"), [
        ({"kind": "surgeon"}, "kind"),
        ({"kind": "specialist", "family_doctor": "0"}, "specialty"),
        ({"kind": "dentist"}, "family_doctor"),
        ({"facilities": "FNOPE0001"}, "facilities"),
        ({"tax_regime": "mixed"}, "tax_regime"),
        ({"contract_end": "2019-01-01"}, "contract_end"),
        ({"sector": "both"}, "sector"),
        ({"licence": ""}, "licence"),
    ])
    def test_each_bad_provider_row_is_reported(self, committed, tmp_path, overrides, field):
        facility, doctor = provider_rows()
        doctor.update(overrides)
        result = ProvidersImport(committed, actor=ACTOR).run(write(tmp_path / "p.csv", PROVIDER_COLUMNS, [facility, doctor]))
        assert (result.loaded, result.rejected) == (1, 1)
        assert errors_of(result.errors_path)[0]["field"] == field
        assert count(committed, Professional) == 0


    def test_an_iban_column_stores_the_compact_iban_a_rib_turned_into_its_iban(self, committed, tmp_path):
        rows = with_iban(provider_rows(), "TN59 1000 6035 1835 9847 8831", "08001000000000000795")

        result = ProvidersImport(committed, actor=ACTOR).run(write(tmp_path / "p.csv", (*PROVIDER_COLUMNS, "iban"), rows))

        assert (result.loaded, result.rejected) == (2, 0)
        assert ibans(committed, Facility, Facility.code) == {"FKAS00001": IBAN}
        assert ibans(committed, Professional, Professional.licence) == {"L000001": IBAN2}

    @pytest.mark.parametrize(("bad", "hint"), [
        ("TN5910006035183598478832", "check digits"),
        ("10006035183598478832", "RIB key"),
        ("FR7630006000011234567890189", "Tunisian accounts only"),
        ("TN59", "not a valid Tunisian bank account"),
    ], ids=["iban-check-digits", "rib-key", "foreign", "truncated"])
    def test_an_invalid_iban_rejects_its_row_and_the_others_load(self, committed, tmp_path, bad, hint):
        facility, doctor = provider_rows()
        other = doctor | {"licence": "L000002", "name_lat": "Dr Amira Ayari", "contract_number": "C1002"}
        rows = with_iban([facility, doctor, other], IBAN, bad, IBAN2)

        result = ProvidersImport(committed, actor=ACTOR).run(write(tmp_path / "p.csv", (*PROVIDER_COLUMNS, "iban"), rows))

        assert (result.loaded, result.rejected) == (2, 1)
        (error,) = errors_of(result.errors_path)
        assert (error["row"], error["field"]) == ("3", "iban")
        assert hint in error["reason"]
        assert ibans(committed, Facility, Facility.code) == {"FKAS00001": IBAN}
        assert ibans(committed, Professional, Professional.licence) == {"L000002": IBAN2}

    def test_a_later_file_without_the_iban_column_keeps_the_accounts(self, committed, tmp_path):
        ProvidersImport(committed, actor=ACTOR).run(
            write(tmp_path / "a.csv", (*PROVIDER_COLUMNS, "iban"), with_iban(provider_rows(), IBAN, IBAN2)))
        facility, doctor = provider_rows()
        doctor["contract_status"] = "suspended"

        result = ProvidersImport(committed, actor=ACTOR).run(write(tmp_path / "b.csv", PROVIDER_COLUMNS, [facility, doctor]))

        assert (result.loaded, result.rejected) == (2, 0)
        assert ibans(committed, Facility, Facility.code) == {"FKAS00001": IBAN}
        assert ibans(committed, Professional, Professional.licence) == {"L000001": IBAN2}
        with committed() as session:  # the row was written all the same
            assert session.scalar(select(Professional.contract_status)) == "suspended"

    def test_an_empty_iban_cell_removes_the_account(self, committed, tmp_path):
        ProvidersImport(committed, actor=ACTOR).run(
            write(tmp_path / "a.csv", (*PROVIDER_COLUMNS, "iban"), with_iban(provider_rows(), IBAN, IBAN2)))

        result = ProvidersImport(committed, actor=ACTOR).run(
            write(tmp_path / "b.csv", (*PROVIDER_COLUMNS, "iban"), with_iban(provider_rows(), IBAN, " ")))

        assert (result.loaded, result.rejected) == (2, 0)
        assert ibans(committed, Facility, Facility.code) == {"FKAS00001": IBAN}
        assert ibans(committed, Professional, Professional.licence) == {"L000001": None}
