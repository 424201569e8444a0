"""People, not ids: a user's display name and e-mail from the stored profile, and the member
search's matching (docs/api.md, "Members: names, search, CSV export").

The name is Moodle's default English full name, ``firstname lastname`` (the string
``fullnamedisplay`` of lang/en/moodle.php; a site's own ``$CFG->fullnamedisplay`` is not known
here). A search term matches a user when, compared case-insensitively (``str.casefold``) with
runs of whitespace collapsed to one space, it is a prefix of the user id, the first name, the
last name, the full name or the e-mail address. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

MAX_QUERY_CHARS = 255  # as long as an id may be (processor/contract/ids.py)
# a term as the workers pass it on, folded: str.casefold turns one character into at most three
# ("ß" -> "ss", "ﬃ" -> "ffi"), so a term within the limit may fold to three times as many
MAX_FOLDED_CHARS = 3 * MAX_QUERY_CHARS


def _text(value: Any) -> str:
    """A profile value as text for names: strings only (whitespace collapsed), else empty."""
    return " ".join(value.split()) if isinstance(value, str) else ""


def display_name(profile: Mapping[str, Any]) -> str | None:
    """``firstname lastname`` (whichever is set), or None when neither is."""
    name = " ".join(p for p in (_text(profile.get("firstname")), _text(profile.get("lastname"))) if p)
    return name or None


def email(profile: Mapping[str, Any]) -> str | None:
    return _text(profile.get("email")) or None


def person(profile: Mapping[str, Any]) -> dict[str, str | None]:
    """What a listing shows beside the id: ``{"name", "email"}`` (None when unknown)."""
    return {"name": display_name(profile), "email": email(profile)}


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


@dataclass(frozen=True)
class Query:
    """A normalised search term (see the module docstring for what it matches)."""

    text: str  # whitespace collapsed, casefolded; never empty

    @classmethod
    def parse(cls, raw: str | None, limit: int = MAX_QUERY_CHARS) -> "Query | None":
        """The term of ``?q=``; None for no term (absent, empty or only whitespace). ValueError
        when it is longer than ``limit`` (:data:`MAX_FOLDED_CHARS` for a term already folded)."""
        if raw is None:
            return None
        if len(raw) > limit:
            raise ValueError(f"q is {len(raw)} characters long; at most {limit}")
        text = _fold(raw)
        return cls(text) if text else None

    def matches(self, user_id: str, profile: Mapping[str, Any]) -> bool:
        q = self.text
        if " " not in q:
            # a term without a space is a prefix of a folded value exactly when it is a prefix of
            # the value with leading whitespace dropped, case-folded (folding goes character by
            # character; the term ends before the value's first space): no split and join. A
            # full name starts with such a term only if its first (or only) name does.
            for v in (user_id, profile.get("firstname"), profile.get("lastname"), profile.get("email")):
                if isinstance(v, str) and v.lstrip().casefold().startswith(q):
                    return True
            return False
        if _fold(user_id).startswith(q):
            return True
        first, last = _fold(_text(profile.get("firstname"))), _fold(_text(profile.get("lastname")))
        full = f"{first} {last}" if first and last else first or last
        return (first.startswith(q) or last.startswith(q) or full.startswith(q)
                or _fold(_text(profile.get("email"))).startswith(q))
