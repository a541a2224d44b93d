"""`labes import members|providers`: the affiliation and provider feeds (formats in docs/csv-formats.md)."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from labes.registry import identifiers, rules
from labes.registry.bulk import (
    Bundle, BulkImport, RetryLater, RowError, choice, flag, optional, parse_date, required,
)
from labes.registry.models import (
    AmenHousehold, AmenMember, ChronicCondition, CoveragePeriod, Dependant, Facility, Member, Person, Practice,
    Professional, natural_id,
)
from labes.registry.reference import chronic_disease_codes, governorate_codes
from labes.registry.service import person_search_keys

MEMBER_COLUMNS = (
    "record_type", "social_id", "relationship", "rank", "cin", "first_name_ar", "last_name_ar", "first_name_lat",
    "last_name_lat", "birth_date", "sex", "phone", "language", "governorate", "delegation", "address", "regime",
    "employer", "affiliation_start", "affiliation_end", "status", "care_scheme", "scheme_since", "family_doctor",
    "chronic", "student_until", "disabled", "evidence", "amen",
)
PROVIDER_COLUMNS = (
    "record_type", "code", "licence", "kind", "specialty", "family_doctor", "cin", "name_ar", "name_lat", "governorate",
    "delegation", "address", "sector", "facilities", "contract_number", "contract_start", "contract_end",
    "contract_status", "tax_id", "tax_regime",
)
# Columns a feed may carry or leave out (older feeds have none): a file without one leaves the stored value alone.
BANK_COLUMNS = ("iban",)


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value else None


def _cin(row: dict[str, str], *, needed: bool) -> str | None:
    value = row.get("cin", "").strip()
    if not value:
        if needed:
            raise RowError("cin", "is required for an insured member")
        return None
    try:
        return identifiers.normalize_cin(value)
    except identifiers.IdentifierError as exc:
        raise RowError("cin", str(exc)) from None


def _governorate(row: dict[str, str], default: str | None = None) -> str:
    value = row.get("governorate", "").strip().upper() or default
    if not value:
        raise RowError("governorate", "is required")
    if value not in governorate_codes():
        raise RowError("governorate", f"{value!r} is not one of the 24 governorate codes")
    return value


def _bank_account(row: dict[str, str], values: dict[str, Any]) -> None:
    """Put the row's bank account into `values` if the file has the column (a blank cell: none on record).

    In the members feed only the member's row carries one: reimbursements go to the family's insured member, and
    a dependant may be an insured member elsewhere, whose account a blank cell here must not remove.
    """
    if "iban" not in row:
        return
    value = row["iban"].strip()
    if row.get("record_type", "").strip() == "dependant":
        if value:
            raise RowError("iban", "a dependant's reimbursements go to the insured member: give the account on "
                                   "the member's row")
        return
    try:
        values["iban"] = identifiers.normalize_iban(value) if value else None
    except identifiers.IdentifierError as exc:
        raise RowError("iban", str(exc)) from None


def _phone(row: dict[str, str]) -> str | None:
    value = identifiers.ascii_digits(row.get("phone", "")).replace(" ", "")
    if not value:
        return None
    if not (value.startswith("+216") and len(value) == 12 and value[1:].isdigit()):
        raise RowError("phone", f"{value!r} is not +216 followed by 8 digits")
    return value


class MembersImport(BulkImport):
    """The affiliation feed: members, dependants, coverage, chronic conditions, Amen households."""

    kind = "members"
    columns = MEMBER_COLUMNS
    optional_columns = BANK_COLUMNS
    tables = (Person, Member, CoveragePeriod, Dependant, ChronicCondition, AmenHousehold, AmenMember)
    boundary = ("record_type", "member")  # a family's dependants follow its member, in the same chunk

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._family: tuple[str, tuple[Any, str] | None, str] | None = None  # (social_id, (amen id, number), governorate)
        self._doctors: dict[str, bool] = {}  # licence → is a family doctor (a few thousand at most)

    def _person(self, row: dict[str, str], *, cin: str | None, family_key: str, governorate: str) -> dict[str, Any]:
        birth = parse_date(row, "birth_date", required=True)
        values = {
            "id": natural_id("person", cin or family_key),
            "cin": cin,
            "first_name_ar": required(row, "first_name_ar", max_length=80),
            "last_name_ar": required(row, "last_name_ar", max_length=80),
            "first_name_lat": required(row, "first_name_lat", max_length=80),
            "last_name_lat": required(row, "last_name_lat", max_length=80),
            "birth_date": birth.isoformat(),
            "sex": choice(row, "sex", ("M", "F")),
            "phone": _phone(row),
            "language": choice(row, "language", ("ar", "fr"), default="ar"),
            "governorate": governorate,
            "delegation": optional(row, "delegation", max_length=80),
            "address": optional(row, "address"),
        }
        _bank_account(row, values)
        values.update(person_search_keys(values))
        return values

    def _chronic(self, row: dict[str, str], person_id: Any) -> list[dict[str, Any]]:
        cell = row.get("chronic", "").strip()
        if not cell:
            return []
        found = []
        for item in cell.split(";"):
            parts = item.split("|")
            if len(parts) != 4:
                raise RowError("chronic", f"{item!r} is not code|icd10|from|to")
            code, icd10, start, end = (p.strip() for p in parts)
            if code not in chronic_disease_codes():
                raise RowError("chronic", f"{code!r} is not a chronic disease code (01 to 24)")
            if not 3 <= len(icd10) <= 8:
                raise RowError("chronic", f"{icd10!r} is not an ICD-10 code")
            valid_from = parse_date({"chronic": start}, "chronic", required=True)
            valid_to = parse_date({"chronic": end}, "chronic")
            found.append({"id": natural_id("chronic", f"{person_id}/{code}/{valid_from.isoformat()}"),
                          "person_id": person_id, "code": code, "icd10": icd10, "valid_from": valid_from.isoformat(),
                          "valid_to": _iso(valid_to)})
        return found

    def start_chunk(self) -> None:
        self._family = None

    def parse(self, row: dict[str, str]) -> Bundle:
        record_type = choice(row, "record_type", ("member", "dependant"))
        try:
            social_id = identifiers.normalize_social_id(row.get("social_id", ""))
        except identifiers.IdentifierError as exc:
            raise RowError("social_id", str(exc)) from None
        if record_type == "member":
            return self._parse_member(row, social_id)
        return self._parse_dependant(row, social_id)

    def _parse_member(self, row: dict[str, str], social_id: str) -> Bundle:
        self._family = None
        if row.get("relationship", "insured").strip() not in ("insured", ""):
            raise RowError("relationship", "a member row has relationship 'insured'")
        governorate = _governorate(row)
        cin = _cin(row, needed=True)
        person = self._person(row, cin=cin, family_key=social_id, governorate=governorate)
        member_id = natural_id("member", social_id)
        start = parse_date(row, "affiliation_start", required=True)
        end = parse_date(row, "affiliation_end")
        if end and end < start:
            raise RowError("affiliation_end", "is before affiliation_start")
        employer, _, employer_tax_id = (row.get("employer", "") or "").partition("|")
        member = {"id": member_id, "person_id": person["id"], "social_id": social_id,
                  "regime": choice(row, "regime", rules.REGIMES), "employer": employer.strip() or None,
                  "employer_tax_id": employer_tax_id.strip() or None, "affiliation_start": start.isoformat(),
                  "affiliation_end": _iso(end), "status": choice(row, "status", rules.MEMBER_STATUSES)}
        scheme = choice(row, "care_scheme", rules.CARE_SCHEMES)
        since = parse_date(row, "scheme_since", required=True)
        licence = row.get("family_doctor", "").strip()
        if scheme == "private" and not licence:
            raise RowError("family_doctor", "is required in the private scheme")
        if scheme != "private" and licence:
            raise RowError("family_doctor", "is chosen only in the private scheme")
        coverage = {"id": natural_id("coverage", f"{social_id}/{since.isoformat()}"), "member_id": member_id,
                    "scheme": scheme, "start_date": since.isoformat(),
                    "family_doctor_id": natural_id("professional", licence) if licence else None,
                    "reason": "affiliation feed", "_licence": licence}
        bundle: Bundle = {Person: [person], Member: [member], CoveragePeriod: [coverage],
                          ChronicCondition: self._chronic(row, person["id"])}
        amen = None
        if row.get("amen", "").strip():
            parts = [p.strip() for p in row["amen"].split("|")]
            if len(parts) != 4 or not parts[0]:
                raise RowError("amen", f"{row['amen']!r} is not household_number|level|from|to")
            number, level, start_s, end_s = parts
            if level not in rules.AMEN_LEVELS:
                raise RowError("amen", f"level {level!r} is not free or reduced")
            amen_id = natural_id("amen", number)
            bundle[AmenHousehold] = [{"id": amen_id, "number": number, "level": level,
                                      "valid_from": parse_date({"amen": start_s}, "amen", required=True).isoformat(),
                                      "valid_to": _iso(parse_date({"amen": end_s}, "amen")), "governorate": governorate}]
            bundle[AmenMember] = [self._amen_member(amen_id, number, person["id"], head=True)]
            amen = (amen_id, number)
        self._family = (social_id, amen, governorate)
        return bundle

    @staticmethod
    def _amen_member(household_id: Any, number: str, person_id: Any, *, head: bool) -> dict[str, Any]:
        return {"id": natural_id("amen_member", f"{number}/{person_id}"), "household_id": household_id,
                "person_id": person_id, "head": head}

    def _parse_dependant(self, row: dict[str, str], social_id: str) -> Bundle:
        relationship = choice(row, "relationship", rules.RELATIONSHIPS)
        try:
            rank = int(row.get("rank", "").strip())
        except ValueError:
            raise RowError("rank", f"{row.get('rank')!r} is not a number") from None
        if not 1 <= rank <= 99:
            raise RowError("rank", "must be between 1 and 99")
        family = self._family if self._family and self._family[0] == social_id else None
        inherit = family is None and not row.get("governorate", "").strip()
        # Listed apart from its member, a dependant without a governorate takes the member's (found in check_chunk).
        governorate = None if inherit else _governorate(row, default=family[2] if family else None)
        family_key = f"{social_id}/{relationship}/{rank}"
        person = self._person(row, cin=_cin(row, needed=False), family_key=family_key, governorate=governorate)
        disabled = flag(row, "disabled")
        student_until = parse_date(row, "student_until")
        evidence = optional(row, "evidence", max_length=80)
        if (disabled or student_until) and not evidence:
            raise RowError("evidence", "is required for a student or disabled dependant (the certificate's reference)")
        unmarried = relationship == "child" and person["sex"] == "F" and bool(evidence) and not disabled and not student_until
        dependant = {"id": natural_id("dependant", family_key), "member_id": natural_id("member", social_id),
                     "person_id": person["id"], "relationship": relationship, "rank": rank,
                     "student_until": _iso(student_until), "disabled": disabled, "unmarried_no_income": unmarried,
                     "evidence": evidence, "start_date": None, "end_date": None, "_social_id": social_id}
        bundle: Bundle = {Person: [person], Dependant: [dependant], ChronicCondition: self._chronic(row, person["id"])}
        if family and family[1] is not None:
            amen_id, number = family[1]
            bundle[AmenMember] = [self._amen_member(amen_id, number, person["id"], head=False)]
        return bundle

    def check_chunk(self, session: Session, bundles: list[tuple[int, Bundle]]) -> dict[int, RowError]:
        errors: dict[int, RowError] = {}
        members_here = {m["social_id"]: b[Person][0]["governorate"] for _, b in bundles for m in b.get(Member, ())}
        wanted = {d["_social_id"] for _, b in bundles for d in b.get(Dependant, ())} - members_here.keys()
        known = dict(session.execute(select(Member.social_id, Person.governorate).join(Person, Person.id == Member.person_id)
                                     .where(Member.social_id.in_(wanted))).all()) if wanted else {}
        licences = {c["_licence"] for _, b in bundles for c in b.get(CoveragePeriod, ()) if c["_licence"]}
        unknown = licences - self._doctors.keys()
        if unknown:
            for licence, is_fd in session.execute(select(Professional.licence, Professional.family_doctor)
                                                  .where(Professional.licence.in_(unknown))):
                self._doctors[licence] = is_fd
        for line, bundle in bundles:
            for d in bundle.get(Dependant, ()):
                governorate = members_here.get(d["_social_id"]) or known.get(d["_social_id"])
                if governorate is None:
                    errors[line] = RetryLater("social_id", f"no member {d['_social_id']} in the file or in the registry")
                elif bundle[Person][0]["governorate"] is None:
                    bundle[Person][0]["governorate"] = governorate
            for c in bundle.get(CoveragePeriod, ()):
                licence = c["_licence"]
                if licence and licence not in self._doctors:
                    errors[line] = RowError("family_doctor", f"no professional with the licence {licence}; import providers first")
                elif licence and not self._doctors[licence]:
                    errors[line] = RowError("family_doctor", f"{licence} is not registered as a family doctor")
        for _, bundle in bundles:  # drop the helper keys before writing
            for rows in bundle.values():
                for item in rows:
                    item.pop("_licence", None)
                    item.pop("_social_id", None)
        return errors


class ProvidersImport(BulkImport):
    """The providers feed: facilities, then professionals and where they practise."""

    kind = "providers"
    columns = PROVIDER_COLUMNS
    optional_columns = BANK_COLUMNS
    tables = (Facility, Professional, Practice)

    def _contract(self, row: dict[str, str]) -> dict[str, Any]:
        start, end = parse_date(row, "contract_start"), parse_date(row, "contract_end")
        if start and end and end < start:
            raise RowError("contract_end", "is before contract_start")
        status = row.get("contract_status", "").strip() or None
        if status and status not in rules.CONTRACT_STATUSES:
            raise RowError("contract_status", f"{status!r} is not one of {', '.join(rules.CONTRACT_STATUSES)}")
        return {"contract_number": optional(row, "contract_number", max_length=20), "contract_start": _iso(start),
                "contract_end": _iso(end), "contract_status": status, "tax_id": optional(row, "tax_id", max_length=20)}

    def parse(self, row: dict[str, str]) -> Bundle:
        from labes.registry.text import fold_latin

        record_type = choice(row, "record_type", ("facility", "professional"))
        common = {"name_ar": required(row, "name_ar"), "name_lat": required(row, "name_lat"),
                  "governorate": _governorate(row), "delegation": optional(row, "delegation", max_length=80),
                  "address": optional(row, "address"), "sector": choice(row, "sector", ("public", "private")),
                  **self._contract(row)}
        _bank_account(row, common)
        common["search_lat"] = fold_latin(common["name_lat"])
        if record_type == "facility":
            code = required(row, "code", max_length=16)
            facility = {"id": natural_id("facility", code), "code": code,
                        "kind": choice(row, "kind", rules.FACILITY_KINDS), **common}
            return {Facility: [facility]}
        licence = required(row, "licence", max_length=16)
        kind = choice(row, "kind", rules.PROFESSIONAL_KINDS)
        specialty = optional(row, "specialty", max_length=40)
        if kind == "specialist" and not specialty:
            raise RowError("specialty", "is required for a specialist")
        family_doctor = flag(row, "family_doctor")
        if family_doctor and kind != "general_practitioner":
            raise RowError("family_doctor", "only a general practitioner can be a family doctor")
        tax_regime = row.get("tax_regime", "").strip() or None
        if tax_regime and tax_regime not in rules.TAX_REGIMES:
            raise RowError("tax_regime", f"{tax_regime!r} is not actual or flat")
        professional_id = natural_id("professional", licence)
        professional = {"id": professional_id, "licence": licence, "kind": kind, "specialty": specialty,
                        "family_doctor": family_doctor, "cin": _cin(row, needed=False), "tax_regime": tax_regime,
                        **common}
        codes = [c.strip() for c in row.get("facilities", "").split(";") if c.strip()]
        practices = [{"id": natural_id("practice", f"{licence}/{code}"), "professional_id": professional_id,
                      "facility_id": natural_id("facility", code), "_code": code} for code in codes]
        return {Professional: [professional], Practice: practices}

    def check_chunk(self, session: Session, bundles: list[tuple[int, Bundle]]) -> dict[int, RowError]:
        here = {f["code"] for _, b in bundles for f in b.get(Facility, ())}
        wanted = {p["_code"] for _, b in bundles for p in b.get(Practice, ())} - here
        known = set(session.scalars(select(Facility.code).where(Facility.code.in_(wanted)))) if wanted else set()
        errors: dict[int, RowError] = {}
        for line, bundle in bundles:
            for p in bundle.get(Practice, ()):
                if p["_code"] not in here and p["_code"] not in known:
                    errors[line] = RetryLater("facilities", f"no facility with the code {p['_code']}")
                p.pop("_code")
        return errors
