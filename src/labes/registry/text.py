"""Fold names for case-, accent- and spelling-insensitive search in Latin and Arabic script."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_ARABIC_LETTER = re.compile(r"[\u0600-\u06FF]")
# Harakat, tanwin, shadda, sukun, superscript alef and tatweel carry no identity for search.
_ARABIC_MARKS = re.compile(r"[\u064B-\u065F\u0670\u0640]")
_ARABIC_FOLD = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ة": "ه", "ى": "ي", "ؤ": "و", "ئ": "ي"})
_NON_WORD = re.compile(r"[^\w]+")


def has_arabic(text: str) -> bool:
    """Return whether `text` contains an Arabic letter."""
    return bool(_ARABIC_LETTER.search(text))


@lru_cache(maxsize=65536)  # names repeat a lot: a bulk import folds each one once
def fold_latin(text: str) -> str:
    """Lower-case, strip accents and punctuation: 'Bén-Sälah' → 'ben salah'."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(_NON_WORD.sub(" ", stripped.casefold()).split())


@lru_cache(maxsize=65536)
def fold_arabic(text: str) -> str:
    """Drop diacritics and tatweel, unify alef/hamza, ta marbuta and alef maqsura forms."""
    text = _ARABIC_MARKS.sub("", unicodedata.normalize("NFKC", text)).translate(_ARABIC_FOLD)
    return " ".join(_NON_WORD.sub(" ", text).split())


def fold(text: str) -> str:
    """Fold `text` with the rules of its script."""
    return fold_arabic(text) if has_arabic(text) else fold_latin(text)


def search_key(first: str, last: str, *, arabic: bool) -> str:
    """Return the indexed key 'last first' of a name."""
    folder = fold_arabic if arabic else fold_latin
    return f"{folder(last)} {folder(first)}".strip()
