"""Which managed segments a profile belongs to, and why."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence, TypeVar

from processor.contract.models import Profile
from processor.rules.compiler import CompiledCondition, Leaf, time_leaves
from processor.rules.values import is_truthy

T = TypeVar("T")
ActiveRules = Mapping[str, Sequence[tuple[str, CompiledCondition]]]


def is_suspended(profile: Profile) -> bool:
    """Suspended users match no rule (peers' most common complaint is keeping them)."""
    return is_truthy(profile.get("suspended"))


def matching_rules(
    rules: Sequence[tuple[str, CompiledCondition]], profile: Profile, now: int | None = None
) -> tuple[str, ...]:
    """Ids of the rules (sorted) whose condition holds for ``profile`` at ``now`` (epoch s)."""
    return tuple(rid for rid, cond in rules if cond.evaluate(profile, now))


def desired(
    active: ActiveRules, segment_id: str, profile: Profile, deleted: bool, now: int | None = None
) -> tuple[str, ...]:
    """Matched rule ids of a managed segment; empty means "not a member"."""
    if deleted or segment_id not in active or is_suspended(profile):
        return ()
    return matching_rules(active[segment_id], profile, now)


_PER_RULE_SET: dict[tuple[str, int], tuple[ActiveRules, Any]] = {}
_PER_RULE_SET_MAX = 512  # (derivation, rule set) pairs remembered; a miss only recomputes


def per_rule_set(name: str, active: ActiveRules, build: Callable[[ActiveRules], T]) -> T:
    """``build(active)``, computed once per rule set: a catalog change builds a new ``active``
    mapping, so the cache is keyed by identity (and keeps the mapping alive so ids stay unique)."""
    hit = _PER_RULE_SET.get((name, id(active)))
    if hit is not None and hit[0] is active:
        return hit[1]  # type: ignore[no-any-return]
    value = build(active)
    if len(_PER_RULE_SET) >= _PER_RULE_SET_MAX:
        _PER_RULE_SET.clear()
    _PER_RULE_SET[(name, id(active))] = (active, value)
    return value


def distinct_time_leaves(active: ActiveRules) -> tuple[Leaf, ...]:
    """The distinct time-relative leaves of a site's managed rules (computed once per rule set).

    Thousands of rules typically share a handful of time conditions ("lastlogin within_last
    P30D"); the next transition is the minimum over these, so per user the cost follows the
    distinct leaves, not the number of rules. Cached by identity: a catalog change builds a new
    ``active`` mapping.
    """
    return per_rule_set("time_leaves", active, _time_leaves)


def _time_leaves(active: ActiveRules) -> tuple[Leaf, ...]:
    seen: dict[tuple[str, str, str], Leaf] = {}
    for rules in active.values():
        for _, cond in rules:
            if cond.time_relative:
                for leaf in time_leaves(cond.root):
                    seen.setdefault((leaf.field, leaf.op, repr(leaf.value)), leaf)
    return tuple(seen.values())


def next_check(active: ActiveRules, profile: Profile, deleted: bool, now: int) -> int:
    """Earliest instant after ``now`` at which a managed rule may flip with time alone (0: never)."""
    if deleted:
        return 0
    best = 0
    for leaf in distinct_time_leaves(active):
        t = leaf.next_transition(profile, now)
        if t is not None and (best == 0 or t < best):
            best = t
    return best
