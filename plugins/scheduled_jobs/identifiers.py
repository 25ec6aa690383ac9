"""Identifiers generated from names, as the seed product does: ``Orders to ERP`` -> ``orders-to-erp``."""

from __future__ import annotations

import re
import unicodedata

IDENTIFIER_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")
# Letters that Unicode does not decompose into an ASCII letter plus accents.
_LIGATURES = str.maketrans(
    {
        "ß": "ss",
        "æ": "ae",
        "Æ": "AE",
        "ø": "o",
        "Ø": "O",
        "œ": "oe",
        "Œ": "OE",
        "ł": "l",
        "Ł": "L",
        "đ": "d",
        "Đ": "D",
        "þ": "th",
        "Þ": "TH",
    }
)


def identifier_from_name(name: str) -> str:
    """Fold accents, lowercase, and join the remaining ASCII letters and digits with '-'.

    Returns an empty string when nothing usable is left (e.g. a name in a non-Latin script).
    """
    decomposed = unicodedata.normalize("NFKD", name.translate(_LIGATURES))
    ascii_only = decomposed.encode("ascii", "ignore").decode("ascii").lower()
    return _NOT_ALNUM.sub("-", ascii_only).strip("-")
