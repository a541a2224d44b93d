"""Deterministic synthetic national population: `members.csv` and `providers.csv` for the bulk import.

Rows are streamed, so memory stays flat at any size, and the same seed gives byte-identical files (one
`random.Random(seed)`, no clock: ages count from `REFERENCE_DATE`). The shape follows the fund's figures:
8 M beneficiaries = 3.5 M insured + 4.5 M family members, governorates weighted by the 2014 census,
chronic diseases (APCI) at the prevalences of `rules/chronic_diseases.csv`.
"""

from __future__ import annotations

import csv
import random
from bisect import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from itertools import accumulate
from pathlib import Path
from typing import Any

from schwifty import IBAN

from labes.registry.identifiers import make_social_id
from labes.rules import load_reference

REFERENCE_DATE = date(2026, 1, 1)
# Codes of Tunisian banks in the RIB (ATB, BNA, Attijari, BT, Amen Bank, BIAT, STB, UBCI, UIB, BH, the postal bank).
BANKS = ("01", "03", "04", "05", "07", "08", "10", "11", "12", "14", "17")

# The columns in the order of docs/csv-formats.md.
MEMBER_COLUMNS = tuple(
    "record_type social_id relationship rank cin first_name_ar last_name_ar first_name_lat last_name_lat birth_date "
    "sex phone language governorate delegation address regime employer affiliation_start affiliation_end status "
    "care_scheme scheme_since family_doctor chronic student_until disabled evidence amen".split())
PROVIDER_COLUMNS = tuple(
    "record_type code licence kind specialty family_doctor cin name_ar name_lat governorate delegation address sector "
    "facilities contract_number contract_start contract_end contract_status tax_id tax_regime iban".split())

# Relative share of Amen households (deprivation, roughly the 2015 poverty map): more in the centre-west.
AMEN_WEIGHT = {"TUN": 5, "ARI": 5, "BEN": 4, "MAN": 13, "NAB": 9, "ZAG": 27, "BIZ": 13, "BEJ": 32, "JEN": 22,
               "KEF": 34, "SIL": 24, "SOU": 9, "MON": 8, "MAH": 21, "SFX": 7, "KAI": 35, "KAS": 33, "SID": 23,
               "GAB": 16, "MED": 12, "TAT": 11, "GAF": 19, "TOZ": 14, "KEB": 19}
SPECIALTIES = {"gynaecology": 12, "paediatrics": 10, "cardiology": 9, "ophthalmology": 8, "general_surgery": 7,
               "internal_medicine": 6, "dermatology": 6, "otorhinolaryngology": 6, "orthopaedics": 6, "psychiatry": 5,
               "gastroenterology": 5, "endocrinology": 5, "pulmonology": 4, "neurology": 4, "rheumatology": 4,
               "urology": 4, "nephrology": 3}
# Professionals and facilities per 1,000 members (pharmacies and cabinets follow their professionals).
PROFESSIONAL_RATES = {"general_practitioner": 0.8, "specialist": 0.6, "dentist": 0.3, "pharmacist": 0.6,
                      "biologist": 0.1, "radiologist": 0.08, "physiotherapist": 0.15}
FACILITY_RATES = {"primary_health_centre": 0.6, "district_hospital": 0.03, "private_clinic": 0.03,
                  "laboratory": 0.07, "imaging_centre": 0.05}
PUBLIC_SHARE = {"general_practitioner": 0.7, "specialist": 0.45, "dentist": 0.2, "pharmacist": 0.0,
                "biologist": 0.3, "radiologist": 0.35, "physiotherapist": 0.3}
PUBLIC_PLACES = {  # where public professionals practise, in order of preference
    "general_practitioner": ("primary_health_centre", "district_hospital"),
    "specialist": ("regional_hospital", "university_hospital", "district_hospital"),
    "dentist": ("primary_health_centre", "regional_hospital"),
    "biologist": ("regional_hospital", "university_hospital"),
    "radiologist": ("regional_hospital", "university_hospital", "district_hospital"),
    "physiotherapist": ("regional_hospital", "district_hospital"),
}
UNIVERSITY_HOSPITALS = (  # (governorate, French, Arabic): one per city first
    ("TUN", "Charles Nicolle", "شارل نيكول"), ("SOU", "Sahloul", "سهلول"),
    ("MON", "Fattouma Bourguiba", "فطومة بورقيبة"), ("SFX", "Habib Bourguiba", "الحبيب بورقيبة"),
    ("TUN", "La Rabta", "الرابطة"), ("SOU", "Farhat Hached", "فرحات حشاد"), ("SFX", "Hédi Chaker", "الهادي شاكر"),
    ("TUN", "Habib Thameur", "الحبيب ثامر"), ("TUN", "Mongi Slim", "المنجي سليم"),
    ("TUN", "Aziza Othmana", "عزيزة عثمانة"), ("TUN", "Béchir Hamza", "البشير حمزة"),
    ("MON", "Tahar Sfar", "الطاهر صفر"))
CNSS_POLYCLINICS = (  # (governorate, delegation, French, Arabic): the six of RULES.md
    ("TUN", "Cité El Khadra", "El Khadra", "الخضراء"), ("TUN", "El Omrane", "El Omrane", "العمران"),
    ("SOU", "Sousse Médina", "Sousse", "سوسة"), ("SFX", "Sfax Ville", "Sfax", "صفاقس"),
    ("BIZ", "Bizerte Nord", "Bizerte", "بنزرت"), ("GAF", "Métlaoui", "Metlaoui", "المتلوي"))
CLINIC_NAMES = (("Les Oliviers", "الزياتين"), ("El Amen", "الأمان"), ("Hannibal", "حنبعل"), ("Pasteur", "باستور"),
                ("Les Jasmins", "الياسمين"), ("Essalama", "السلامة"), ("Avicenne", "ابن سينا"), ("Errahma", "الرحمة"),
                ("El Yosr", "اليسر"), ("Ettawfik", "التوفيق"), ("Les Palmiers", "النخيل"), ("Elyssa", "عليسة"))
STREETS = (
    "Rue Ibn Khaldoun", "Avenue Habib Bourguiba", "Rue Ibn Sina", "Avenue de la République", "Rue Farhat Hached",
    "Rue Ali Belhouane", "Rue Hédi Chaker", "Avenue de la Liberté", "Rue Tahar Sfar", "Rue Mongi Slim",
    "Rue Abou El Kacem Chebbi", "Rue 2 Mars 1934", "Rue Bach Hamba", "Avenue 14 Janvier", "Rue Ibn Rachiq",
    "Rue Ibn El Jazzar", "Rue de Palestine", "Rue d'Algérie", "Rue du Maroc", "Rue de Syrie", "Rue Hannibal",
    "Rue Jugurtha", "Rue Kheireddine Pacha", "Rue Tarak Ibn Zied", "Rue Okba Ibn Nafaa", "Rue des Jasmins",
    "Rue des Orangers", "Rue des Oliviers", "Avenue Taïeb Mhiri", "Rue Habib Thameur", "Rue El Moez",
    "Avenue de l'Environnement", "Rue de la Mosquée", "Rue Imam Sahnoun", "Avenue Ali Belhouane",
    "Rue Salah Ben Youssef", "Rue Alyssa", "Rue Ibn Charaf", "Route de Tunis", "Rue Ibn Rochd")
COMPANY_PREFIXES = ("Société Tunisienne", "Société Industrielle", "Société Nouvelle", "Compagnie Méditerranéenne",
                    "Société Maghrébine", "Société du Sahel", "Société Sfaxienne", "Société Générale")
COMPANY_TRADES = (
    "des Industries Textiles", "de Conserves Alimentaires", "des Matériaux de Construction", "du Transport Routier",
    "de Distribution", "des Plastiques", "des Câbles Électriques", "de Services Informatiques", "de l'Huile d'Olive",
    "des Emballages", "des Produits Laitiers", "des Industries Mécaniques", "des Travaux Publics", "de Confection",
    "de Commerce Général", "d'Agro-alimentaire", "des Pâtes et Couscous", "de la Chaussure", "des Peintures",
    "du Verre", "des Pièces Automobiles", "d'Hôtellerie et de Tourisme", "des Centres d'Appel", "de Gardiennage",
    "de Nettoyage", "des Dattes", "de Pêche", "des Boissons", "de Câblage Automobile", "des Engrais Chimiques")
MINISTRIES = {  # CNRPS employers: the State, local authorities and a few public companies
    "Ministère de l'Éducation": 30, "Ministère de la Santé": 14, "Ministère de l'Intérieur": 14,
    "Ministère de l'Enseignement Supérieur et de la Recherche Scientifique": 7, "Ministère des Finances": 5,
    "Ministère de la Justice": 4, "Ministère de l'Agriculture des Ressources Hydrauliques et de la Pêche": 5,
    "Ministère des Affaires Sociales": 3, "Ministère de l'Équipement et de l'Habitat": 3, "Ministère du Transport": 2,
    "Ministère de la Culture": 2, "Ministère de la Jeunesse et des Sports": 2, "Ministère de la Défense Nationale": 5,
    "Ministère de l'Emploi et de la Formation Professionnelle": 2, "Ministère des Affaires Étrangères": 1,
    "Ministère du Commerce et du Développement des Exportations": 1, "Présidence du Gouvernement": 1,
    "Société Tunisienne de l'Électricité et du Gaz": 3}
STUDYING = (0.5, 0.5, 0.5, 0.35, 0.35, 0.1, 0.1, 0.1)  # share of children aged 20 to 27 still studying
TAX_KEY = "ABCDEFGHJKLMNPQRSTVWXYZ"  # the matricule fiscal's key letter (no I, O, U)
PREFERRED_ICD10 = {"01": "E11", "05": "I10", "08": "I25", "11": "J44", "13": "G40", "15": "F32", "16": "N18"}
# APCI prevalence by age: rare in children (but congenital ones), much higher in the old for age-related ones.
AGE_BANDS = (18, 30, 40, 50, 60, 70)
AGE_FACTORS = (0.0, 0.13, 0.34, 0.77, 1.36, 2.04, 2.55)  # over the generated adults these average about 1
AGE_RELATED = frozenset({"01", "05", "07", "08", "09", "11", "14", "16", "17", "19", "22", "23"})
CHILD_FACTORS = {"06": 1.2, "13": 0.8, "24": 4.0, "01": 0.05, "02": 0.1, "10": 0.3, "19": 0.05, "15": 0.1}
_BASE = date(1900, 1, 1).toordinal()  # dates are handled as indexes into _dates() from here
_REF = REFERENCE_DATE.toordinal() - _BASE


@dataclass(frozen=True)
class GenerateResult:
    """What `generate` wrote: counts and the two file paths."""

    members: int
    dependants: int
    persons: int
    facilities: int
    professionals: int
    members_path: Path
    providers_path: Path


@lru_cache
def _dates() -> tuple[str, ...]:
    """Return ISO strings of every day from 1900 to 2044: a date is an index into this table."""
    return tuple(date.fromordinal(o).isoformat() for o in range(_BASE, date(2045, 1, 1).toordinal()))


def _day(year: int, month: int = 1, day: int = 1) -> int:
    return date(year, month, day).toordinal() - _BASE


def _check_plain(texts: Iterable[str]) -> None:
    """Refuse reference text that would need CSV quoting (members.csv rows are joined without a csv.writer)."""
    for text in texts:
        if any(c in text for c in ',"\r\n'):
            raise ValueError(f"Reference text {text!r} contains a comma, quote or line break; remove it.")


class _Permutation:
    """A keyed bijection of [0, 10**8) (4-round Feistel on two 4-digit halves): unique 8-digit ids, no set kept."""

    _DIGITS = tuple(f"{n:04d}" for n in range(10_000))

    def __init__(self, rng: random.Random) -> None:
        # Round functions tabulated once: one lookup per round keeps a million ids a second cheap.
        self.rounds = tuple(tuple(((r ^ key) * 2654435761 >> 13) % 10_000 for r in range(10_000))
                            for key in [rng.getrandbits(32) for _ in range(4)])

    def __call__(self, n: int) -> str:
        left, right = divmod(n, 10_000)
        for table in self.rounds:
            left, right = right, (left + table[right]) % 10_000
        return self._DIGITS[left] + self._DIGITS[right]


def _picker(rng: random.Random, items: Iterable[Any], weights: Iterable[float]) -> Callable[[], Any]:
    """Return a function drawing one item by weight (cumulative weights and bisect: cheap in a hot loop)."""
    cum, seq, rnd = list(accumulate(weights)), tuple(items), rng.random
    total = cum[-1]
    return lambda: seq[bisect(cum, rnd() * total)]


def _icd10_codes(ranges: str, preferred: str | None) -> tuple[str, ...]:
    """Expand `E10-E14;E27` into concrete codes; a preferred code (E11 for diabetes) gets two draws in three."""
    codes: list[str] = []
    for part in ranges.split(";"):
        lo, _, hi = part.partition("-")
        codes += [f"{lo[0]}{n:02d}" for n in range(int(lo[1:]), int(hi[1:]) + 1)] if hi else [part]
    return tuple([preferred] * (2 * len(codes)) + codes if preferred else codes)


class _Context:
    """The seeded generator, reference data and the pickers shared by providers and members."""

    def __init__(self, rng: random.Random, seed: int) -> None:
        self.rng = rng
        self.govs = load_reference("governorates")
        self.delegations = [g["delegations"].split(";") for g in self.govs]
        self.gov = _picker(rng, range(len(self.govs)), [int(g["population"]) for g in self.govs])
        names = load_reference("names")
        _check_plain([n["latin"] for n in names] + [n["arabic"] for n in names] + list(STREETS) + list(MINISTRIES)
                     + [d for delegations in self.delegations for d in delegations])
        self.male, self.female, self.last = (
            _picker(rng, [(n["latin"], n["arabic"]) for n in names if n["kind"] == kind],
                    [int(n["weight"]) for n in names if n["kind"] == kind])
            for kind in ("male_first", "female_first", "last"))
        # Tax ids: an affine bijection of a counter modulo 10**7 (multiplier prime to 10), so all differ.
        self.tax_a, self.tax_b = rng.choice((3, 7, 9)) + 10 * rng.randrange(10**6), rng.randrange(10**7)
        self.tax_count = 0
        # Bank accounts from a stream of their own: the rest of a population stays what it was before providers
        # had accounts (the demo's families, cards and examples).
        self.bank_rng = random.Random(f"bank accounts {seed}")

    def address(self) -> str:
        rnd = self.rng.random
        return f"{int(rnd() * 239) + 1} {STREETS[int(rnd() * len(STREETS))]}"

    def iban(self) -> str:
        """Return a bank account for a provider the fund pays, or "" for one in fifty (none on record yet)."""
        rng = self.bank_rng
        if rng.random() < 0.02:
            return ""
        return IBAN.generate("TN", bank_code=rng.choice(BANKS), branch_code=f"{rng.randrange(1, 1000):03d}",
                             account_code=f"{rng.randrange(10**13):013d}").compact

    def tax_id(self, category: str) -> str:
        """Return a unique matricule fiscal such as `1234567A/A/M/000` (M: company, N: liberal profession)."""
        self.tax_count += 1
        n = (self.tax_a * self.tax_count + self.tax_b) % 10**7
        return f"{n:07d}{TAX_KEY[n % 23]}/A/{category}/000"


GP = "general_practitioner"


def _write_providers(path: Path, ctx: _Context, members: int, cin: _Permutation) -> tuple[int, int, list[list[str]]]:
    """Write facilities then professionals; return their counts and, by governorate, the family doctors to choose."""
    rng, govs, dates, n_govs, scale = ctx.rng, ctx.govs, _dates(), len(ctx.govs), members / 1000
    gov_index = {g["code"]: i for i, g in enumerate(govs)}
    rows: dict[str, list[str]] = {}  # facility code → row, in creation order
    by_kind: dict[Any, list[str]] = {}  # kind, and (kind, governorate) → facility codes
    seq, contracts = [0] * n_govs, [0]

    def contract(public: bool) -> list[str]:
        contracts[0] += 1
        if public:  # the public facilities' conventions with the fund since the 2007 reform
            return [f"C2007{contracts[0]:06d}", "2007-07-01", "", "active"]
        start, r = _day(2008, 7, 1) + rng.randrange(_day(2025) - _day(2008, 7, 1)), rng.random()
        status, end = "active" if r < 0.85 else "suspended" if r < 0.93 else "terminated", ""
        if status == "terminated":
            end = dates[start + 365 + rng.randrange(_REF - start - 365)]
        elif status == "active" and rng.random() < 0.4:
            end = f"{2026 + rng.randrange(3)}-12-31"
        return [f"C{dates[start][:4]}{contracts[0]:06d}", dates[start], end, status]

    def facility(kind: str, g: int, name_lat: str, name_ar: str, public: bool, delegation: str = "") -> str:
        seq[g] += 1
        code = f"F{govs[g]['code']}{seq[g]:05d}"
        rows[code] = ["facility", code, "", kind, "", "", "", name_ar, name_lat, govs[g]["code"],
                      delegation or rng.choice(ctx.delegations[g]), ctx.address(), "public" if public else "private",
                      "", *contract(public), "" if public else ctx.tax_id("M"), "", ctx.iban()]
        by_kind.setdefault((kind, g), []).append(code)
        by_kind.setdefault(kind, []).append(code)
        return code

    def near(g: int, *kinds: str) -> str:
        """Return a facility of the first of `kinds` found in governorate `g`, else anywhere."""
        return rng.choice(by_kind[next(k for k in [(kind, g) for kind in kinds] + list(kinds) if k in by_kind)])

    def count(rate: float, minimum: int = 1) -> int:
        return max(minimum, round(rate * scale))

    for kind, fr, ar in (("primary_health_centre", "Centre de santé de base", "مركز الصحة الأساسية"),
                         ("district_hospital", "Hôpital de circonscription", "المستشفى المحلي")):
        local = [0] * n_govs
        for _ in range(count(FACILITY_RATES[kind])):
            g = ctx.gov()
            local[g], where = local[g] + 1, rng.choice(ctx.delegations[g])
            facility(kind, g, f"{fr} {where}", f"{ar} عدد {local[g]} ب{govs[g]['name_ar']}", True, where)
    regional = list(range(n_govs)) if members >= 10_000 else [ctx.gov()]  # one per governorate
    local = [0] * n_govs
    for g in regional + [ctx.gov() for _ in range(round(0.01 * scale) - len(regional))]:
        local[g] += 1
        suffix = f" {local[g]}" if local[g] > 1 else ""
        facility("regional_hospital", g, f"Hôpital régional {govs[g]['name_fr']}{suffix}",
                 f"المستشفى الجهوي ب{govs[g]['name_ar']}{suffix}", True)
    for code, fr, ar in UNIVERSITY_HOSPITALS[:1 if members < 10_000 else 4 if members < 100_000 else None]:
        facility("university_hospital", gov_index[code], f"CHU {fr}", f"المستشفى الجامعي {ar}", True)
    for code, where, fr, ar in CNSS_POLYCLINICS:
        facility("cnss_polyclinic", gov_index[code], f"Polyclinique CNSS {fr}", f"مصحة الضمان الاجتماعي ب{ar}",
                 True, where)
    for _ in range(count(FACILITY_RATES["private_clinic"])):
        g, (fr, ar) = ctx.gov(), rng.choice(CLINIC_NAMES)
        facility("private_clinic", g, f"Clinique {fr} {govs[g]['name_fr']}", f"مصحة {ar} ب{govs[g]['name_ar']}", False)
    for kind, fr, ar in (("laboratory", "Laboratoire d'analyses médicales", "مخبر التحاليل الطبية"),
                         ("imaging_centre", "Centre d'imagerie médicale", "مركز التصوير الطبي")):
        for _ in range(count(FACILITY_RATES[kind])):
            g, (last, last_ar) = ctx.gov(), ctx.last()
            facility(kind, g, f"{fr} {last}", f"{ar} {last_ar}", False)

    specialty = _picker(rng, SPECIALTIES, SPECIALTIES.values())
    counts = {kind: count(rate, 2 if kind == GP else 1)  # a family doctor and a public GP
              for kind, rate in PROFESSIONAL_RATES.items()}
    licences = [f"L{n:06d}" for n in rng.sample(range(10**6), sum(counts.values()))]
    professionals: list[list[str]] = []
    family_doctors: list[list[tuple[str, bool]]] = [[] for _ in range(n_govs)]
    for kind, n in counts.items():
        for i in range(n):
            g, male, licence = ctx.gov(), rng.random() < 0.5, licences[len(professionals)]
            (first, first_ar), (last, last_ar) = (ctx.male() if male else ctx.female()), ctx.last()
            name, name_ar, doctor = f"{first} {last}", f"{first_ar} {last_ar}", "الدكتور" if male else "الدكتورة"
            family_doctor = kind == GP and i % 2 == 0  # half the GPs, all in private practice
            public = not family_doctor and (rng.random() < PUBLIC_SHARE[kind] or (kind, i) == (GP, 1))
            if kind == "pharmacist":
                places = [facility("pharmacy", g, f"Pharmacie {name}", f"صيدلية {name_ar}", False)]
            elif public:
                places = [near(g, *PUBLIC_PLACES[kind])]
                if rng.random() < 0.2:
                    places.append(near(g, "cnss_polyclinic", "district_hospital"))
            elif kind in ("biologist", "radiologist"):
                places = [near(g, "laboratory" if kind == "biologist" else "imaging_centre")]
            else:  # their own cabinet, and for doctors sometimes a clinic as well
                fr, ar = {"dentist": ("Cabinet dentaire Dr", f"عيادة طب الأسنان {doctor}"),
                          "physiotherapist": ("Cabinet de kinésithérapie", "عيادة العلاج الطبيعي")}.get(
                              kind, ("Cabinet médical Dr", f"عيادة {doctor}"))
                places = [facility("private_clinic", g, f"{fr} {name}", f"{ar} {name_ar}", False)]
                if kind in (GP, "specialist") and rng.random() < 0.3:
                    places.append(near(g, "private_clinic"))
            deal = ["", "", "", ""] if public else contract(False)
            g = gov_index[rows[places[0]][9]]  # where they practise, when none was found in their own governorate
            if family_doctor:
                family_doctors[g].append((licence, deal[3] == "active"))
            where = rows[places[0]][10:12] if not public else [rng.choice(ctx.delegations[g]), ctx.address()]
            professionals.append([
                "professional", "", licence, kind, specialty() if kind == "specialist" else "", str(int(family_doctor)),
                cin(10**8 - 1 - len(professionals)), name_ar, name, govs[g]["code"], *where,
                "public" if public else "private", ";".join(dict.fromkeys(places)), *deal,
                "" if public else ctx.tax_id("N"), "actual" if rng.random() < 0.8 else "flat",
                "" if public else ctx.iban()])
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(PROVIDER_COLUMNS)
        writer.writerows(rows.values())
        writer.writerows(professionals)
    # Members choose among family doctors whose contract is active (among all of them if none is).
    any_active = any(active for doctors in family_doctors for _, active in doctors)
    return len(rows), len(professionals), [
        [licence for licence, active in doctors if active or not any_active] for doctors in family_doctors]


def _chronic_drawer(rng: random.Random) -> Callable[[int, int], str]:
    """Return `chronic(age, birth)` → the `code|icd10|from|to;…` cell at the APCI prevalences scaled by age."""
    rnd, dates, diseases = rng.random, _dates(), load_reference("chronic_diseases")
    tables = []
    for band, factor in enumerate(AGE_FACTORS):
        rates = [float(d["prevalence_per_1000"]) / 1000 * (
            CHILD_FACTORS.get(d["code"], 0.02) if band == 0 else factor if d["code"] in AGE_RELATED else 1.0)
            for d in diseases]
        tables.append((sum(rates), list(accumulate(rates))))
    band_of = [tables[bisect(AGE_BANDS, age)] for age in range(131)]
    icd = [_icd10_codes(d["icd10"], PREFERRED_ICD10.get(d["code"])) for d in diseases]
    codes, first_day = [d["code"] for d in diseases], _day(2021, 1, 2)

    def chronic(age: int, birth: int) -> str:
        total, cum = band_of[age]
        r = rnd()
        if r >= total or birth + 30 >= _REF:
            return ""
        start, found = max(birth + 30, first_day), []
        while r < total and len(found) < 3:  # further draws at half the rates: comorbidity rises with age
            if (i := bisect(cum, r)) not in found:
                found.append(i)
            r = rnd() * 2
        parts = []
        for i in found:  # approved in the last five years, for five years
            since, icd_codes = start + int(rnd() * (_REF - start)), icd[i]
            parts.append(f"{codes[i]}|{icd_codes[int(rnd() * len(icd_codes))]}|{dates[since]}|{dates[since + 1826]}")
        return ";".join(parts)

    return chronic


def _write_members(path: Path, ctx: _Context, members: int, cin: _Permutation, family_doctors: list[list[str]],
                   progress: Callable[[int], None] | None) -> int:
    """Stream one member row per family, followed by its dependants' rows; return the number of dependants."""
    rng, govs, dates, rnd = ctx.rng, ctx.govs, _dates(), ctx.rng.random
    gov_codes = [g["code"] for g in govs]
    social, household, chronic = _Permutation(rng), _Permutation(rng), _chronic_drawer(rng)
    year_start = [_day(REFERENCE_DATE.year - 1 - age) for age in range(131)]  # born that year: `age` on REFERENCE_DATE
    worker_age = _picker(rng, range(20, 66), [min(a - 19, 6) * 2 if a < 45 else 10 if a < 55 else 7 if a < 60 else 3
                                              for a in range(20, 66)])
    pension_age = _picker(rng, range(60, 86), [10 if a < 70 else 87 - a for a in range(60, 86)])
    kids = _picker(rng, range(7), (10, 15, 30, 25, 12, 5, 3))
    employers = [f"{name}|{ctx.tax_id('M')}" for name in dict.fromkeys(
        f"{rng.choice(COMPANY_PREFIXES)} {rng.choice(COMPANY_TRADES)} {rng.choice(('SA', 'SARL', 'SUARL'))}"
        for _ in range(400))]
    _check_plain(employers)
    ministry = _picker(rng, MINISTRIES, MINISTRIES.values())
    pops = [int(g["population"]) for g in govs]
    # Amen households: 10% of CNSS members and pensioners on average, more where deprivation is higher.
    amen_scale = 0.10 * sum(pops) / sum(AMEN_WEIGHT[c] * p for c, p in zip(gov_codes, pops, strict=True))
    amen_share = [AMEN_WEIGHT[c] * amen_scale for c in gov_codes]
    national_fd = [licence for doctors in family_doctors for licence in doctors]
    # Mobile prefixes: 2x Ooredoo, 9x and 4x Tunisie Telecom, 5x Orange.
    prefixes = [str(p) for p in [*range(20, 30)] * 7 + [*range(90, 100)] * 6 + [*range(50, 60)] * 5
                + [*range(40, 47)] * 3]
    scheme_first = _day(2017)
    counter = {"cin": 0, "dependants": 0}

    def phone() -> str:
        return f"+216{prefixes[int(rnd() * len(prefixes))]}{int(rnd() * 1_000_000):06d}"

    with path.open("w", encoding="utf-8", newline="", buffering=1 << 20) as out:
        # Plain joins (no csv.writer) halve the cost of a row: `_check_plain` vouched for every text used.
        put = out.write
        put(",".join(MEMBER_COLUMNS) + "\n")

        def dependant(relationship: str, rank: str, age: int, male: bool, last: tuple[str, str],
                      student: bool = False, disabled: bool = False) -> None:
            first, birth, number = ctx.male() if male else ctx.female(), year_start[age] + 1 + int(rnd() * 364), ""
            if age >= 18:
                number, counter["cin"] = cin(counter["cin"]), counter["cin"] + 1
            r = rnd()
            until = "" if not student else "2026-09-15" if r < 0.85 else "2026-06-30" if r < 0.95 else "2025-09-15"
            evidence = (f"CH-{2000 + int(rnd() * 26)}-{int(rnd() * 10**6):06d}" if disabled else
                        f"ATT-2025-{int(rnd() * 10**6):06d}" if student else "")
            counter["dependants"] += 1
            put(",".join(["dependant", sid, relationship, rank, number, first[1], last[1], first[0], last[0],
                          dates[birth], "M" if male else "F", phone() if age >= 18 and rnd() < 0.5 else "", language,
                          "", "", "", "", "", "", "", "", "", "", "", chronic(age, birth), until,
                          "1" if disabled else "0", evidence, ""]) + "\n")

        for index in range(members):
            g, r = ctx.gov(), rnd()
            regime = "CNSS" if r < 0.62 else "CNRPS" if r < 0.85 else "PENSION"
            pensioner = regime == "PENSION"
            age = pension_age() if pensioner else worker_age()
            male = rnd() < (0.75 if pensioner else 0.70)
            first, last = (ctx.male() if male else ctx.female()), ctx.last()
            birth, sid = year_start[age] + 1 + int(rnd() * 364), make_social_id("0" + social(index))
            number, counter["cin"] = cin(counter["cin"]), counter["cin"] + 1
            language = "ar" if rnd() < 0.7 else "fr"
            if pensioner:  # affiliated as a pensioner since retiring at 60 or 61
                employer, start = "", min(birth + 21915 + int(rnd() * 730), _REF - 1)
            else:  # first job between 20 and 30
                employer = employers[int(rnd() * len(employers))] if regime == "CNSS" else ministry()
                start = min(birth + 7305 + int(rnd() * 365 * min(age - 19, 10)), _REF - 1)
            r = rnd()
            status = "active" if r < 0.95 else "suspended" if r < 0.98 else "ended"
            end = dates[max(start, _day(2024) + int(rnd() * 730))] if status == "ended" else ""
            r = rnd()
            scheme = "public" if r < 0.50 else "private" if r < 0.85 else "reimbursement"
            since = max(start, scheme_first)
            since += int(rnd() * (_REF - since))
            doctor = ""
            if scheme == "private":
                pool = family_doctors[g] or national_fd
                doctor = pool[int(rnd() * len(pool))]
            amen = ""
            if regime != "CNRPS" and rnd() < amen_share[g]:  # free care for 5 years (AMG1), reduced fees for 3 (AMG2)
                level, valid = ("free", 1826) if rnd() < 1 / 3 else ("reduced", 1095)
                granted = _REF - valid + 30 + int(rnd() * (valid - 30))
                amen = f"A1{household(index)}|{level}|{dates[granted]}|{dates[granted + valid]}"
            delegations = ctx.delegations[g]
            put(",".join(["member", sid, "insured", "0", number, first[1], last[1], first[0], last[0], dates[birth],
                          "M" if male else "F", phone() if rnd() < 0.92 else "", language, gov_codes[g],
                          delegations[int(rnd() * len(delegations))], ctx.address(), regime, employer, dates[start],
                          end, status, scheme, dates[since], doctor, chronic(age, birth), "", "", "", amen]) + "\n")

            married, gap = rnd() < (0.72 if age >= 25 else 0.15), int(rnd() * 5) + int(rnd() * 6)
            mother_age, father_last = (age - gap, last) if male else (age, ctx.last())
            # A wife is usually without her own coverage; a husband rarely is.
            if married and rnd() < ((0.8 if pensioner else 0.62) if male else 0.12):
                dependant("spouse", "1", max(18, age - gap) if male else age + gap, not male,
                          ctx.last() if male else father_last)
            if married or rnd() < 0.08:  # widowed or divorced parents keep their children
                birth_age, rank = 20 + int(rnd() * 12), 0
                for _ in range(kids()):
                    child_age = mother_age - birth_age
                    if child_age < 0 or birth_age > 45:
                        break
                    birth_age += 2 + int(rnd() * 4)
                    son, disabled, student = rnd() < 0.51, rnd() < 0.007, False
                    if child_age >= 20 and not disabled:  # grown up: in charge while studying, or unmarried daughters
                        student = child_age < 28 and rnd() < STUDYING[child_age - 20]
                        if not student and (son or rnd() > (0.3 if child_age <= 27 else 0.1)):
                            continue
                    rank += 1
                    dependant("child", str(rank), child_age, son, father_last, student, disabled)
            if age <= 60 and rnd() < 0.055:  # dependent parents: father rank 1, mother rank 2
                mother, r = age + 20 + int(rnd() * 18), rnd()
                father = mother + int(rnd() * 10)
                if r >= 0.45 and father <= 100:
                    dependant("father", "1", father, True, last)
                if (r < 0.45 or r >= 0.6) and mother <= 100:
                    dependant("mother", "2", mother, False, ctx.last())
            if progress is not None and (index + 1) % 10_000 == 0:
                progress(index + 1)
    if progress is not None and members % 10_000:
        progress(members)
    return counter["dependants"]


def generate(out_dir: Path, *, members: int, seed: int,
             progress: Callable[[int], None] | None = None) -> GenerateResult:
    """Write `members.csv` and `providers.csv` for `members` families into `out_dir`; same seed, same bytes."""
    if members < 1:
        raise ValueError(f"Generate at least one member; got {members}.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = _Context(random.Random(seed), seed)
    cin = _Permutation(ctx.rng)  # one CIN sequence for members (from 0 up) and professionals (from 10**8 - 1 down)
    providers_path, members_path = out_dir / "providers.csv", out_dir / "members.csv"
    facilities, professionals, family_doctors = _write_providers(providers_path, ctx, members, cin)
    dependants = _write_members(members_path, ctx, members, cin, family_doctors, progress)
    return GenerateResult(members=members, dependants=dependants, persons=members + dependants, facilities=facilities,
                          professionals=professionals, members_path=members_path, providers_path=providers_path)
