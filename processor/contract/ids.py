"""The contract's identifier rules, in one place: length and character set of every id.

Every id is a non-empty string of at most ``MAX_ID_CHARS`` (255) characters, of one of three kinds:

* ``NAME`` (``site_id``, ``segment_id``, ``rule_id``): letters and digits (any script, as
  ``str.isalnum``), ``_``, ``-`` and ``.``, but not ``.`` or ``..``. Chosen by admins and other
  teams, so kept strict: a site id never holds ``:`` (keys are ``"site_id:user_id"``), and every
  name is one URL path segment as it is (no ``/``, ``?``, ``#``, ``%``, no dot segment).
* ``SHORTNAME`` (custom profile field shortnames): ASCII letters, digits and ``_``, at most 100
  characters: Moodle's own rule for profile field shortnames, and what rule text can name.
* ``OPAQUE`` (``user_id``, ``event_id``, ``command_id``): whatever Moodle or a producer uses (an
  id, idnumber or username; usernames may hold ``@ . _ - :`` and, with extendedusernamechars,
  almost anything), except control characters, ``/`` and leading or trailing whitespace.

The API answers 400 INVALID_ID for a bad id in a path, a command with one is REJECTED INVALID_ID,
and a user event with one is dead-lettered INVALID_ID (see docs/contract.md).
"""

from __future__ import annotations

import re

from processor.contract.exceptions import ContractError

MAX_ID_CHARS = 255
NAME = "name"
SHORTNAME = "shortname"
OPAQUE = "opaque"

# the id fields of the contract and their kind
ID_KINDS: dict[str, str] = {
    "site_id": NAME,
    "segment_id": NAME,
    "rule_id": NAME,
    "shortname": SHORTNAME,
    "user_id": OPAQUE,
    "event_id": OPAQUE,
    "command_id": OPAQUE,
}

_NAME = re.compile(r"[\w.-]+")  # \w on str patterns: Unicode letters and digits, and "_"
_NAME_CHAR = re.compile(r"[^\w.-]")
_SHORTNAME = re.compile(r"[A-Za-z0-9_]{1,100}")
_SHORTNAME_CHAR = re.compile(r"[^A-Za-z0-9_]")
_OPAQUE_BAD_CHAR = re.compile(r"[\x00-\x1f\x7f-\x9f/\ud800-\udfff]")

# JSON Schema patterns for the API description (Python regex flavour: \w is Unicode, as here)
PATTERNS = {
    NAME: r"^[\w.-]+$",
    SHORTNAME: r"^[A-Za-z0-9_]+$",
    OPAQUE: r"^[^\s/\x00-\x1f\x7f-\x9f](?:[^/\x00-\x1f\x7f-\x9f]*[^\s/\x00-\x1f\x7f-\x9f])?$",
}

RULES = {
    NAME: "letters, digits, '_', '-' and '.' (not '.' or '..')",
    SHORTNAME: "ASCII letters, digits and '_' (at most 100)",
    OPAQUE: "any characters but control characters and '/', without leading or trailing whitespace",
}


def _char(text: str, rx: re.Pattern[str]) -> str:
    m = rx.search(text)
    assert m is not None
    return f"{m.group()!r} at position {m.start()}"


def id_problem(value: object, kind: str) -> str | None:
    """Why ``value`` is not a valid id of ``kind`` (phrased to follow the id's name); None when it is."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if len(value) > MAX_ID_CHARS:
        return f"is {len(value)} characters; the limit is {MAX_ID_CHARS}"
    if kind == NAME:
        if _NAME.fullmatch(value) is None:
            return f"may contain only {RULES[NAME]}; found {_char(value, _NAME_CHAR)}"
        if value in (".", ".."):
            return f"cannot be {value!r}"
    elif kind == SHORTNAME:
        if _SHORTNAME.fullmatch(value) is None:
            if len(value) > 100:
                return f"is {len(value)} characters; a shortname may have at most 100"
            return f"may contain only {RULES[SHORTNAME]}; found {_char(value, _SHORTNAME_CHAR)}"
    elif kind == OPAQUE:
        if _OPAQUE_BAD_CHAR.search(value) is not None:
            return f"must not contain control characters or '/'; found {_char(value, _OPAQUE_BAD_CHAR)}"
        if value[0].isspace() or value[-1].isspace():
            return "must not start or end with whitespace"
    else:  # pragma: no cover - a programming error
        raise ValueError(f"unknown id kind {kind!r}")
    return None


def check_id(value: object, name: str, path: str) -> str:
    """``value`` if it is a valid ``name`` (a key of ID_KINDS); else ContractError INVALID_ID at ``path``."""
    problem = id_problem(value, ID_KINDS[name])
    if problem is not None:
        raise ContractError("INVALID_ID", f"{name} {problem}", path)
    return value  # type: ignore[return-value]
