"""ISO-8601 durations for relative datetime rules (``P30D``, ``PT12H``, ``P2W``).

Only exact units (weeks, days, hours, minutes, seconds): months and years
have no fixed length, so "P1M" is rejected with a suggestion to use days.
"""

from __future__ import annotations

import re

from processor.rules.exceptions import RuleError
from processor.rules.values import show

# ASCII digits only (\d would take any Unicode digit); \Z, not $, which also matches before a final "\n"
_RE = re.compile(
    r"^P(?:(?P<w>[0-9]+)W)?(?:(?P<d>[0-9]+)D)?(?:T(?:(?P<h>[0-9]+)H)?(?:(?P<m>[0-9]+)M)?(?:(?P<s>[0-9]+)S)?)?\Z"
)
MAX_SECONDS = 100 * 366 * 86400
MAX_CHARS = 64  # far more than any duration up to 100 years needs


def parse_duration(text: object, path: str = "$") -> int:
    """Seconds in an ISO-8601 duration; RuleError(INVALID_VALUE) when malformed."""
    if not isinstance(text, str):
        raise RuleError("INVALID_VALUE", "duration must be an ISO-8601 string such as \"P30D\" or \"PT12H\"", path)
    t = text.strip().upper()
    if len(t) > MAX_CHARS:  # also keeps int() below clear of its 4,300-digit limit
        raise RuleError("INVALID_VALUE", f"duration is longer than {MAX_CHARS} characters; "
                        "durations go up to 100 years, e.g. \"P36600D\"", path)
    m = _RE.match(t)
    if not m or t in ("P", "PT") or t.endswith("T"):
        if re.match(r"^-|^P(?:T)?[0-9]*-", t):
            raise RuleError("INVALID_VALUE", f"a duration must be a positive number of weeks, days, hours, minutes or "
                            f"seconds; {show(text)} is negative", path)
        hint = ""
        if re.match(r"^P\d+[MY]", t):
            hint = "; months and years have no fixed length: use days, e.g. \"P30D\" or \"P365D\""
        raise RuleError("INVALID_VALUE", f"a duration is a number of weeks, days, hours, minutes or seconds, written "
                        f"\"P30D\" (30 days), \"P2W\" (2 weeks) or \"PT12H\" (12 hours); {show(text)} is not one{hint}",
                        path)
    secs = (
        int(m["w"] or 0) * 7 * 86400
        + int(m["d"] or 0) * 86400
        + int(m["h"] or 0) * 3600
        + int(m["m"] or 0) * 60
        + int(m["s"] or 0)
    )
    if secs <= 0:
        raise RuleError("INVALID_VALUE", "duration must be longer than zero", path)
    if secs > MAX_SECONDS:
        raise RuleError("INVALID_VALUE", "duration must be at most 100 years", path)
    return secs
