"""Rule and reference data kept as versioned files (CSV, JSON) next to this module.

The fund changes its rules by decree; keeping them as data lets the software follow without a release.
"""

from __future__ import annotations

import csv
import re
from functools import lru_cache
from importlib import resources

_TABLE_NAME = re.compile(r"[a-z0-9_]+")


@lru_cache
def _read_table(name: str) -> tuple[dict[str, str], ...]:
    if not _TABLE_NAME.fullmatch(name):
        raise ValueError(f"A reference table name is lower-case letters, digits and '_'; got {name!r}.")
    resource = resources.files(__name__).joinpath(f"{name}.csv")
    if not resource.is_file():
        raise LookupError(f"There is no reference table {name!r} in labes/rules/.")
    with resource.open("r", encoding="utf-8-sig", newline="") as handle:
        return tuple(csv.DictReader(handle))


def load_reference(name: str) -> list[dict[str, str]]:
    """Return the rows of `src/labes/rules/<name>.csv` as dicts keyed by the header (read once, then cached)."""
    return [dict(row) for row in _read_table(name)]


@lru_cache
def _governorate_codes() -> frozenset[str]:
    return frozenset(row["code"] for row in _read_table("governorates"))


def governorate_codes() -> frozenset[str]:
    """Return the codes of the 24 governorates (e.g. `TUN`, `SFX`)."""
    return _governorate_codes()


@lru_cache
def _chronic_disease_codes() -> tuple[tuple[str, str], ...]:
    return tuple((row["code"], row["icd10"]) for row in _read_table("chronic_diseases"))


def chronic_disease_codes() -> dict[str, str]:
    """Return the chronic diseases (APCI) as code (`01`…`24`) → ICD-10 ranges (`;`-separated, e.g. `E10-E14`)."""
    return dict(_chronic_disease_codes())
