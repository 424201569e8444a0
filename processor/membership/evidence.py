"""What a membership decision read: the profile values recorded with each change (pure).

A change carries, as ``evidence``, the value of every profile field the deciding rules read, so
"why was Bob in Sales on 2026-11-20?" can be answered later from the history alone, whatever the
profile holds today. ADDED records the fields of the rules that matched; REMOVED those of every
active rule of the segment (none of which matched); ``suspended`` is recorded whenever it is set
(a suspended user matches no rule). A segment no longer managed (deleted, automation disabled)
had no rule read: empty evidence.

Values are JSON text (``"Sales"`` is ``'"Sales"'``, 42 is ``'42'``): unambiguous across field
types, and what the explain tree shows. A field the profile does not hold is absent. A string
longer than :data:`MAX_CHARS` is cut (ending with "…") so a long text area cannot bloat the
output topic, the stored facts and the history.
"""

from __future__ import annotations

import json
from typing import Iterable

from processor.catalog.active import ActiveRuleSet
from processor.contract.models import Profile, ProfileValue
from processor.membership.decide import is_suspended

MAX_CHARS = 500
Evidence = tuple[tuple[str, str], ...]  # sorted (profile field, value as JSON text)


def _cut(value: ProfileValue) -> ProfileValue:
    if isinstance(value, str) and len(value) > MAX_CHARS:
        return value[:MAX_CHARS] + "…"
    if isinstance(value, list):
        return [_cut(v) for v in value]  # type: ignore[misc]
    return value


def as_json(value: ProfileValue) -> str:
    if type(value) is str and len(value) <= MAX_CHARS and value.isprintable() and '"' not in value \
            and "\\" not in value:
        return '"' + value + '"'  # what json.dumps writes for such a string, without its cost
    return json.dumps(_cut(value), ensure_ascii=False, separators=(",", ":"))


def evidence_of(active: ActiveRuleSet, segment_id: str, matched: Iterable[str], profile: Profile) -> Evidence:
    """The values of the fields the decision for ``segment_id`` read (see the module doc)."""
    fields = active.fields_read(segment_id, frozenset(matched))
    if is_suspended(profile) and "suspended" not in fields:
        fields = tuple(sorted((*fields, "suspended")))
    return tuple((f, as_json(profile[f])) for f in fields if f in profile)


def profile_of(evidence: Iterable[tuple[str, str]]) -> Profile:
    """The recorded values as a profile again (to re-evaluate the rules of that time on them)."""
    out: Profile = {}
    for name, text in evidence:
        try:
            out[name] = json.loads(text)
        except ValueError:
            out[name] = text  # not written by this module; shown as it is
    return out
