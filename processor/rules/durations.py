"""ISO-8601 durations for relative datetime rules (``P30D``, ``PT12H``, ``P2W``).

Only exact units (weeks, days, hours, minutes, seconds): months and years
have no fixed length, so "P1M" is rejected with a suggestion to use days.
"""

from __future__ import annotations

import re

from processor.rules.exceptions import RuleError

_RE = re.compile(
    r"^P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?$"
)
MAX_SECONDS = 100 * 366 * 86400


def parse_duration(text: object, path: str = "$") -> int:
    """Seconds in an ISO-8601 duration; RuleError(INVALID_VALUE) when malformed."""
    if not isinstance(text, str):
        raise RuleError("INVALID_VALUE", "duration must be an ISO-8601 string such as \"P30D\" or \"PT12H\"", path)
    t = text.strip().upper()
    m = _RE.match(t)
    if not m or t in ("P", "PT") or t.endswith("T"):
        hint = ""
        if re.match(r"^P\d+[MY]", t):
            hint = "; months and years have no fixed length: use days, e.g. \"P30D\" or \"P365D\""
        raise RuleError("INVALID_VALUE", f"{text!r} is not a duration like \"P30D\", \"P2W\" or \"PT12H\"{hint}", path)
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
