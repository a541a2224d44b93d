"""Pick-up points (نقاط السحب): post offices, the fund's centres, regional health directorates, mobile centres.

A registry of their own: imported from CSV or generated for the demo and benchmarks, each with names,
addresses and opening hours in Arabic and French, and the delegations they serve (rules/pickup_points.csv).
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from labes.cards import service
from labes.cards.models import POINT_KINDS, PickupPoint
from labes.errors import Conflict, InvalidInput
from labes.registry.bulk import FileError, ImportResult, RowError, choice, optional, required
from labes.registry.text import fold_latin
from labes.rules import governorate_codes, load_reference
from labes.security import audit
from labes.security.audit import SYSTEM, Actor, snapshot

POINT_COLUMNS = ("code", "kind", "name_ar", "name_fr", "governorate", "delegation", "address_ar", "address_fr",
                 "hours_ar", "hours_fr")
_CODE = re.compile(r"[A-Z0-9-]{2,16}")


# ---------------------------------------------------------------- delegations (rules/pickup_points.csv)


@dataclass(frozen=True)
class Delegation:
    governorate: str
    name_fr: str
    name_ar: str
    seat: bool  # the governorate's seat: its main post office, fund centre and health directorate are there


@lru_cache
def _delegations() -> dict[str, tuple[Delegation, ...]]:
    table: dict[str, list[Delegation]] = defaultdict(list)
    for row in load_reference("pickup_points"):
        table[row["governorate"]].append(Delegation(row["governorate"], row["delegation"], row["delegation_ar"],
                                                    row["seat"] == "1"))
    return {code: tuple(rows) for code, rows in table.items()}


def delegations(governorate: str) -> tuple[Delegation, ...]:
    """Return the delegations of `governorate` with their Arabic names."""
    return _delegations().get(governorate, ())


def seat_of(governorate: str) -> str | None:
    """Return the delegation that is the seat of `governorate`."""
    return next((d.name_fr for d in delegations(governorate) if d.seat), None)


def _same_place(a: str | None, b: str | None) -> bool:
    return bool(a and b) and fold_latin(a) == fold_latin(b)


# ---------------------------------------------------------------- pick-up points


def _point_values(row: Mapping[str, str | None]) -> dict[str, str | None]:
    """Check one pick-up point's fields and return them cleaned; raise RowError naming the first bad one."""
    cells = {name: (row.get(name) or "") for name in POINT_COLUMNS}
    code = required(cells, "code", max_length=16).upper()
    if not _CODE.fullmatch(code):
        raise RowError("code", f"{code!r} may hold only letters, digits and '-'")
    governorate = required(cells, "governorate", max_length=3).upper()
    if governorate not in governorate_codes():
        raise RowError("governorate", f"{governorate!r} is not one of the 24 governorate codes")
    delegation = optional(cells, "delegation", max_length=80)
    if delegation is not None:
        known = next((d.name_fr for d in delegations(governorate) if _same_place(d.name_fr, delegation)), None)
        if known is None:
            raise RowError("delegation", f"{delegation!r} is not a delegation of {governorate} "
                                         "(see src/labes/rules/governorates.csv)")
        delegation = known
    return {
        "code": code, "kind": choice(cells, "kind", POINT_KINDS), "governorate": governorate, "delegation": delegation,
        "name_ar": required(cells, "name_ar"), "name_fr": required(cells, "name_fr"),
        "address_ar": optional(cells, "address_ar"), "address_fr": optional(cells, "address_fr"),
        "hours_ar": optional(cells, "hours_ar", max_length=120), "hours_fr": optional(cells, "hours_fr", max_length=120),
    }


def save_points(session: Session, rows: Sequence[Mapping[str, str | None]], *, actor: Actor, source: str,
                **about: Any) -> dict[str, int]:
    """Insert or update pick-up points by code (rows already checked); return how many were created, updated, unchanged."""
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    existing: dict[str, PickupPoint] = {}
    codes = [row["code"] for row in rows]
    for start in range(0, len(codes), 500):
        existing.update((p.code, p) for p in session.scalars(
            select(PickupPoint).where(PickupPoint.code.in_(codes[start:start + 500]))))
    for row in rows:
        point = existing.get(row["code"])
        if point is None:
            point = PickupPoint(**row)
            session.add(point)
            existing[point.code] = point
            counts["created"] += 1
        elif any(getattr(point, key) != value for key, value in row.items()):
            for key, value in row.items():
                setattr(point, key, value)
            counts["updated"] += 1
        else:
            counts["unchanged"] += 1
    session.flush()
    audit.record(session, actor=actor, action="cards:points:import", entity_type="import", entity_id=source,
                 after={**about, **counts})
    return counts


def import_points(session: Session, path: Path, *, actor: Actor = SYSTEM,
                  errors_path: Path | None = None) -> ImportResult:
    """Upsert the pick-up points of a CSV (columns: POINT_COLUMNS) by code; bad rows go to FILE.errors.csv."""
    path = Path(path)
    if not path.is_file():
        raise FileError(f"No such file: {path}")
    errors_path = errors_path or path.with_name(path.stem + ".errors.csv")
    result = ImportResult("pickup_points", errors_path=errors_path,
                          sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    good: list[dict[str, str | None]] = []
    errors: list[tuple[int, str, str]] = []
    seen: dict[str, int] = {}
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            unknown, missing = [c for c in header if c not in POINT_COLUMNS], [c for c in POINT_COLUMNS if c not in header]
            if unknown or missing:
                raise FileError(f"{path.name}: the header does not match the pick-up point format "
                                f"(unknown: {', '.join(unknown) or 'none'}; missing: {', '.join(missing) or 'none'}); "
                                f"the columns are {','.join(POINT_COLUMNS)}.")
            for values in reader:
                result.rows += 1
                try:
                    if len(values) != len(header):
                        raise RowError("row", f"has {len(values)} cells; the header has {len(header)} columns")
                    row = _point_values(dict(zip(header, values)))
                    if row["code"] in seen:
                        raise RowError("code", f"{row['code']} is already on line {seen[row['code']]}")
                    seen[row["code"]] = reader.line_num
                    good.append(row)
                except RowError as exc:
                    errors.append((reader.line_num, exc.field, exc.reason))
    except UnicodeDecodeError:
        raise FileError(f"{path.name}: not UTF-8 text; save the file as UTF-8.") from None
    result.loaded, result.rejected = len(good), len(errors)
    result.counts = save_points(session, good, actor=actor, source=path.name, sha256=result.sha256, rows_read=result.rows,
                                rejected=result.rejected)
    if errors:
        with errors_path.open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows([("row", "field", "reason"), *errors])
    else:
        errors_path.unlink(missing_ok=True)
        result.errors_path = None
    return result


def create_point(session: Session, *, actor: Actor, data: Mapping[str, str | None]) -> PickupPoint:
    """Add a pick-up point."""
    try:
        values = _point_values(data)
    except RowError as exc:
        raise InvalidInput(f"{exc.field} {exc.reason}.", field=exc.field) from None
    if session.scalar(select(PickupPoint.id).where(PickupPoint.code == values["code"])) is not None:
        raise Conflict(f"A pick-up point with the code {values['code']} already exists; change it instead.", field="code")
    point = PickupPoint(**values)
    session.add(point)
    session.flush()
    audit.record(session, actor=actor, action="cards:point:create", entity_type="pickup_point", entity_id=point.code,
                 after=snapshot(point, exclude=("id",)))
    return point


def update_point(session: Session, *, actor: Actor, code: str, changes: Mapping[str, str | None]) -> PickupPoint:
    """Change a pick-up point's names, address, hours, kind or place (never its code)."""
    point = service.point_by_code(session, code.upper())
    if "code" in changes and changes["code"] != point.code:
        raise InvalidInput("A pick-up point's code never changes; create a new point instead.", field="code")
    before = snapshot(point, exclude=("id",))
    try:
        values = _point_values({**before, **changes})
    except RowError as exc:
        raise InvalidInput(f"{exc.field} {exc.reason}.", field=exc.field) from None
    for key, value in values.items():
        setattr(point, key, value)
    session.flush()
    audit.record(session, actor=actor, action="cards:point:update", entity_type="pickup_point", entity_id=point.code,
                 before=before, after=snapshot(point, exclude=("id",)))
    return point


def list_points(session: Session, *, governorate: str | None = None, kind: str | None = None, page: int = 1,
                page_size: int = 100) -> tuple[list[PickupPoint], bool]:
    """Return one page of pick-up points, by code, with whether more follow."""
    query = select(PickupPoint).order_by(PickupPoint.code)
    if governorate:
        query = query.where(PickupPoint.governorate == governorate.upper())
    if kind:
        query = query.where(PickupPoint.kind == kind)
    points = list(session.scalars(query.offset((page - 1) * page_size).limit(page_size + 1)))
    return points[:page_size], len(points) > page_size


_STREETS = (("Avenue Habib Bourguiba", "شارع الحبيب بورقيبة"), ("Avenue de la République", "شارع الجمهورية"),
            ("Rue Farhat Hached", "نهج فرحات حشاد"), ("Avenue de l'Indépendance", "شارع الاستقلال"),
            ("Rue Ibn Khaldoun", "نهج ابن خلدون"), ("Avenue 14 Janvier", "شارع 14 جانفي"),
            ("Rue de la Poste", "نهج البريد"), ("Avenue Hédi Chaker", "شارع الهادي شاكر"))
_HOURS = {
    "post_office": ("الاثنين-الجمعة 8:00-17:00، السبت 8:00-12:00", "Lun-Ven 8h-17h, Sam 8h-12h"),
    "fund_centre": ("الاثنين-الجمعة 8:00-16:00", "Lun-Ven 8h-16h"),
    "health_directorate": ("الاثنين-الجمعة 8:00-15:00", "Lun-Ven 8h-15h"),
    "mobile_centre": ("حسب برنامج الزيارات", "Selon le calendrier des tournées"),
}


def _of(name: str) -> str:
    """French "of": de Kasserine, d'Ariana, du Kef."""
    if name.startswith("Le "):
        return "du " + name[3:]
    return ("d'" if name[0] in "AEIOUÉ" else "de ") + name


def generate_points(governorates: Iterable[str] | None = None) -> list[dict[str, str | None]]:
    """Return a plausible national set of pick-up points (the same every time), in the import's columns.

    Per governorate: the fund's regional centre, the regional health directorate and a mobile service centre
    in its seat, and one post office per delegation (the seat's is the main post office, recette principale).
    """
    wanted = set(governorates) if governorates is not None else None
    rows: list[dict[str, str | None]] = []
    for gov in load_reference("governorates"):
        code, fr, ar = gov["code"], gov["name_fr"], gov["name_ar"]
        if wanted is not None and code not in wanted:
            continue
        seat = seat_of(code)
        town_fr, town_ar = fr, ar

        def point(point_code: str, kind: str, name_ar: str, name_fr: str, delegation: str | None, street: int,
                  place_fr: str, place_ar: str) -> dict[str, str | None]:
            street_fr, street_ar = _STREETS[street % len(_STREETS)]
            return {"code": point_code, "kind": kind, "name_ar": name_ar, "name_fr": name_fr, "governorate": code,
                    "delegation": delegation, "address_ar": f"{street_ar}، {place_ar}",
                    "address_fr": f"{street_fr}, {place_fr}", "hours_ar": _HOURS[kind][0], "hours_fr": _HOURS[kind][1]}

        rows.append(point(f"C{code}01", "fund_centre", f"المركز الجهوي للصندوق الوطني للتأمين على المرض ب{ar}",
                          f"Centre régional CNAM {_of(fr)}", seat, 0, town_fr, town_ar))
        rows.append(point(f"D{code}01", "health_directorate", f"الإدارة الجهوية للصحة ب{ar}",
                          f"Direction régionale de la santé {_of(fr)}", seat, 1, town_fr, town_ar))
        mobile = point(f"M{code}01", "mobile_centre", f"المركز المتنقل للصندوق ب{ar}", f"Centre mobile CNAM {_of(fr)}",
                       seat, 0, town_fr, town_ar)
        mobile["address_ar"], mobile["address_fr"] = f"المستشفى الجهوي ب{ar}", f"Hôpital régional {_of(fr)}"
        rows.append(mobile)
        for index, place in enumerate(delegations(code), start=1):
            if place.seat:
                name_ar, name_fr = f"مكتب البريد الرئيسي ب{ar}", f"Recette principale {_of(fr)}"
            else:
                name_ar, name_fr = f"مكتب بريد {place.name_ar}", f"Bureau de poste {place.name_fr}"
            rows.append(point(f"P{code}{index:02d}", "post_office", name_ar, name_fr, place.name_fr, index + 2,
                              place.name_fr, place.name_ar))
    return rows


def write_points_csv(rows: Iterable[Mapping[str, str | None]], path: Path) -> None:
    """Write pick-up points in the import's format."""
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=POINT_COLUMNS)
        writer.writeheader()
        writer.writerows({k: row.get(k) or "" for k in POINT_COLUMNS} for row in rows)
