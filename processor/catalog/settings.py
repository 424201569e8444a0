"""A site's settings, folded from ``SetSiteSettings`` commands (pure).

Today they hold the threshold of the admin API's large-change guard (docs/api.md#guarded-changes):
a change is *large* for a segment when it would remove at least ``large_change_min_removed``
people AND more than ``large_change_ratio`` of the segment's current members. Like the rest of the
catalog they are changed only by a command, so every worker folds the same values from the
catalog log and the audit keeps who changed them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any, Mapping

from processor.errors import ProcessorError

DEFAULT_MIN_REMOVED = 50
DEFAULT_RATIO = 0.1
MAX_MIN_REMOVED = 2**31 - 1  # the Avro int's range
FIELDS = ("large_change_min_removed", "large_change_ratio")


@dataclass(frozen=True, slots=True)
class SiteSettings:
    large_change_min_removed: int = DEFAULT_MIN_REMOVED
    large_change_ratio: float = DEFAULT_RATIO

    def as_dict(self) -> dict[str, Any]:
        return {"large_change_min_removed": self.large_change_min_removed,
                "large_change_ratio": self.large_change_ratio}


DEFAULTS = SiteSettings()


def check_payload(payload: Mapping[str, Any], path: str = "$.payload") -> None:
    """Raise ``ProcessorError`` INVALID_FIELD (at the field's path) unless ``payload`` is a valid
    ``SetSiteSettings``: each field null or in range, and at least one of them set."""
    n, r = payload.get("large_change_min_removed"), payload.get("large_change_ratio")
    if n is None and r is None:
        raise ProcessorError("INVALID_FIELD", "nothing to change: give large_change_min_removed and/or "
                             "large_change_ratio", path)
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_MIN_REMOVED):
        raise ProcessorError("INVALID_FIELD", f"large_change_min_removed must be a whole number from 0 to "
                             f"{MAX_MIN_REMOVED} (people removed from one segment)",
                             f"{path}.large_change_min_removed")
    # the range first: an integer too large for a float made math.isfinite raise OverflowError
    if r is not None and (isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 <= r <= 1
                          or not math.isfinite(r)):
        raise ProcessorError("INVALID_FIELD", "large_change_ratio must be a number from 0 to 1 (0.1 is 10% of "
                             "the segment's members)", f"{path}.large_change_ratio")


def folded(current: SiteSettings, payload: Mapping[str, Any]) -> SiteSettings:
    """``current`` with the non-null fields of an accepted ``SetSiteSettings`` payload."""
    changes = {k: payload[k] for k in FIELDS if payload.get(k) is not None}
    if "large_change_ratio" in changes:
        changes["large_change_ratio"] = float(changes["large_change_ratio"])
    return replace(current, **changes)


def ratio_fraction(ratio: float) -> Fraction:
    """The ratio as the exact decimal it was written as (0.1 is 1/10, not the nearest binary
    float): the guard compares ``removed > ratio x members`` in exact arithmetic."""
    return Fraction(repr(float(ratio)))
