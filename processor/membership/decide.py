"""Which managed segments a profile belongs to, and why."""

from __future__ import annotations

from typing import Sequence

from processor.catalog.active import ActiveRuleSet
from processor.contract.models import Profile
from processor.rules.compiler import CompiledCondition
from processor.rules.values import is_truthy


def is_suspended(profile: Profile) -> bool:
    """Suspended users match no rule (peers' most common complaint is keeping them)."""
    return is_truthy(profile.get("suspended"))


def matching_rules(
    rules: Sequence[tuple[str, CompiledCondition]], profile: Profile, now: int | None = None
) -> tuple[str, ...]:
    """Ids of the rules (sorted) whose condition holds for ``profile`` at ``now`` (epoch s)."""
    return tuple(rid for rid, cond in rules if cond.evaluate(profile, now))


def desired(
    active: ActiveRuleSet, segment_id: str, profile: Profile, deleted: bool, now: int | None = None
) -> tuple[str, ...]:
    """Matched rule ids of a managed segment; empty means "not a member"."""
    if deleted or segment_id not in active or is_suspended(profile):
        return ()
    return matching_rules(active[segment_id], profile, now)


def next_check(active: ActiveRuleSet, profile: Profile, deleted: bool, now: int) -> int:
    """Earliest instant after ``now`` at which a managed rule may flip with time alone (0: never)."""
    if deleted:
        return 0
    best = 0
    for leaf in active.time_leaves:
        t = leaf.next_transition(profile, now)
        if t is not None and (best == 0 or t < best):
            best = t
    return best
