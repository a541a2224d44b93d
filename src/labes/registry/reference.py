"""Reference lists the registry validates against (from `src/labes/rules/`)."""

from __future__ import annotations

from functools import lru_cache

from labes.rules import chronic_disease_codes, governorate_codes, load_reference

__all__ = ["chronic_disease_codes", "chronic_disease_names", "governorate_codes"]


@lru_cache
def chronic_disease_names() -> dict[str, str]:
    """Return code → French name of the 24 chronic diseases (APCI)."""
    return {row["code"]: row["name_fr"] for row in load_reference("chronic_diseases")}
