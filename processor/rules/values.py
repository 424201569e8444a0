"""Normalisation of profile values and rule values, shared by operators.

Text comparisons are case-insensitive and ignore surrounding whitespace by
default (Moodle admins type "Sales " and "sales" and mean the same thing).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

TRUE_STRINGS = frozenset({"1", "true", "yes", "on", "y", "t"})
# The range of a rule's datetime value: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z (what Python's
# datetime and ISO-8601 dates can express), so every accepted value converts both ways.
MIN_EPOCH = -62135596800
MAX_EPOCH = 253402300799


def show(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages that echo input."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond the int -> str conversion limit (4,300 digits)
        return f"<{type(value).__name__} too large to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def norm_text(value: str, case_sensitive: bool = False) -> str:
    value = value.strip()
    return value if case_sensitive else value.casefold()


def as_text(actual: Any, case_sensitive: bool) -> str:
    """A scalar profile value as normalised text (numbers and booleans stringified)."""
    if isinstance(actual, str):
        return norm_text(actual, case_sensitive)
    if isinstance(actual, bool):
        return "1" if actual else "0"
    if isinstance(actual, float) and actual.is_integer():
        return str(int(actual))
    return norm_text(str(actual), case_sensitive)


def as_text_items(actual: Any, case_sensitive: bool) -> list[str]:
    """A profile value as a list of normalised strings (scalars become one item)."""
    if isinstance(actual, list):
        return [norm_text(str(a), case_sensitive) for a in actual]
    return [as_text(actual, case_sensitive)]


def as_number(actual: Any) -> float | None:
    """A profile value as a number; ``None`` when it is not numeric."""
    if isinstance(actual, bool):
        return None
    try:
        if isinstance(actual, (int, float)):
            return float(actual)
        if isinstance(actual, str):
            return float(actual.strip())
    except (ValueError, OverflowError):  # not numeric, or an int beyond float range
        return None
    return None


def as_epoch(actual: Any) -> int | None:
    """A datetime profile value (epoch seconds, truncated); 0 and non-numbers mean unset (Moodle).

    A value that truncates to 0 (``0.5``, ``"-0.9"``) is unset too, so the result is never 0 and
    ``as_epoch(as_epoch(x)) == as_epoch(x)``: a test given an already converted epoch answers
    like one given the profile value (the rule index relies on it). A value outside
    MIN_EPOCH..MAX_EPOCH is unset too: a time-relative rule's next transition (a timer key of
    8 bytes, an Avro long) stays in range whatever number a profile carries."""
    num = as_number(actual)
    if num is None or not MIN_EPOCH <= num <= MAX_EPOCH:  # NaN fails both comparisons
        return None
    return int(num) or None


def is_truthy(actual: Any) -> bool:
    if isinstance(actual, bool):
        return actual
    if isinstance(actual, (int, float)):
        return actual != 0
    if isinstance(actual, str):
        return actual.strip().lower() in TRUE_STRINGS
    return False


def is_blank(actual: Any) -> bool:
    """Missing, null, blank string or empty list."""
    if actual is None:
        return True
    if isinstance(actual, str):
        return not actual.strip()
    if isinstance(actual, list):
        return not any(str(a).strip() for a in actual)
    return False


def parse_epoch_value(value: Any) -> int | None:
    """A rule's datetime value: epoch seconds, or an ISO-8601 date/datetime (UTC if naive).

    ``None`` for anything else, including values outside MIN_EPOCH..MAX_EPOCH (a date past
    9999-12-31 or an integer with hundreds of digits is not a moment anyone means)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not value.is_integer():  # also NaN and infinities
            return None
        value = int(value)
    if isinstance(value, int):
        return value if MIN_EPOCH <= value <= MAX_EPOCH else None
    if isinstance(value, str):
        try:
            parsed = _dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=_dt.timezone.utc)
            epoch = int(parsed.timestamp())
        except (ValueError, OverflowError):  # malformed, or its UTC instant leaves datetime's range
            return None
        return epoch if MIN_EPOCH <= epoch <= MAX_EPOCH else None
    return None
