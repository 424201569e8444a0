"""Instants as the history reads take them (``since``, ``until``, ``as_of``; pure).

Epoch milliseconds (``1763596800000``), an ISO-8601 date (``2026-11-20``: UTC) or date-time
(``2026-11-20T14:00:00+01:00``; no offset: UTC). A date as an end (``until``, ``as_of``) means
the end of that day: ``until=2026-11-20`` includes the 20th, ``as_of=2026-11-20`` asks for the
state at the end of it.
"""

from __future__ import annotations

import datetime as _dt
import re

DAY_MS = 86_400_000
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


class BadInstant(ValueError):
    """Not an instant: the message says what is accepted."""


def parse_instant(text: str, end_of_day: bool = False) -> int:
    raw = text.strip()
    try:
        if re.fullmatch(r"-?\d{1,16}", raw):
            value = int(raw)
        elif _DATE.fullmatch(raw):
            day = _dt.datetime.fromisoformat(raw).replace(tzinfo=_dt.timezone.utc)
            value = int(day.timestamp() * 1000) + (DAY_MS - 1 if end_of_day else 0)
        else:
            when = _dt.datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=_dt.timezone.utc)
            value = int(when.timestamp() * 1000)
    except (ValueError, OverflowError, OSError):
        raise BadInstant(f"{text!r} is not an instant: give epoch milliseconds, a date (2026-11-20, UTC) "
                         "or an ISO-8601 date-time (2026-11-20T14:00:00+01:00)") from None
    if not 0 <= value <= MAX_MS:
        raise BadInstant(f"{text!r} is out of range (1970-01-01 to 9999-12-31)")
    return value
