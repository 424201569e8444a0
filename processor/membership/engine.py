"""Apply a user event or a backfill to one user's state and compute the changes.

Replay safety (at-least-once delivery, and table state that may run ahead
of committed offsets after a crash):

* an event at an offset <= the user's ``last_offset`` was already applied:
  do not re-apply it, but re-emit every stored change it caused, byte for
  byte (same change_id, same emitted_at), so a change whose output was lost
  in the crash is delivered, and write the state again (it may exist only in
  the local store, ahead of the changelog: rewriting it makes the changelog
  hold every fact before that fact's change is re-emitted);
* an event id seen recently at a new offset is a duplicate: nothing new;
* a backfill re-run for the same command re-emits the changes it made.

Change ids hash the cause, the target and the previous change id, so the
same cause applied to the same state always yields the same id, and a user
re-added later by the same kind of cause gets a new id.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable, Mapping

from processor.catalog.commands import RECONCILE, REMOVE_ALL
from processor.contract.models import MembershipChange, UserEvent
from processor.catalog.active import ActiveRuleSet
from processor.membership.decide import desired, is_suspended, next_check
from processor.membership.evidence import evidence_of
from processor.membership.profile import merge_profile
from processor.state.user_state import Fact, UserState

APPLIED, REPLAYED, DUPLICATE = "APPLIED", "REPLAYED", "DUPLICATE"


@dataclass(frozen=True, slots=True)
class Cause:
    kind: str
    cause_id: str
    occurred_at: int
    kinds: Mapping[str, str] | None = None  # segment -> its own cause kind (a batch's backfill)

    def kind_for(self, segment_id: str) -> str:
        return self.kind if not self.kinds else self.kinds.get(segment_id, self.kind)


@dataclass(slots=True)
class Outcome:
    state: UserState
    changes: list[MembershipChange]
    status: str  # APPLIED | REPLAYED | DUPLICATE | STALE
    dirty: bool  # state must be written back
    timer: tuple[int, int] | None = None  # (old, new) next_check_at when it moved


def change_id(cause_id: str, site_id: str, segment_id: str, user_id: str, change: str, prev: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in (cause_id, site_id, segment_id, user_id, change, prev):
        raw = part.encode()
        h.update(len(raw).to_bytes(4, "big"))  # length-prefixed: no two part lists collide
        h.update(raw)
    return h.hexdigest()


def fact_to_change(st: UserState, segment_id: str, f: Fact) -> MembershipChange:
    return MembershipChange(
        change_id=f.change_id,
        site_id=st.site_id,
        segment_id=segment_id,
        user_id=st.user_id,
        change=f.change,
        cause_kind=f.cause_kind,
        cause_id=f.cause_id,
        matched_rule_ids=f.matched_rule_ids,
        occurred_at=f.occurred_at,
        emitted_at=f.emitted_at,
        evidence=f.evidence,
    )


def _reissue(st: UserState, cause_id: str, segments: Iterable[str] | None = None) -> list[MembershipChange]:
    segs = st.facts if segments is None else segments
    out = []
    for seg in sorted(segs):
        f = st.facts.get(seg)
        if f is not None and f.cause_id == cause_id:
            out.append(fact_to_change(st, seg, f))
    return out


def every_segment(active: ActiveRuleSet) -> list[tuple[str, str]]:
    """``(segment, RECONCILE)`` for every managed segment, sorted."""
    return [(s, RECONCILE) for s in active.segment_ids]


def reconcile(
    st: UserState,
    active: ActiveRuleSet,
    segments: Iterable[tuple[str, str]] | None,
    cause: Cause,
    now_ms: int,
    matches: Mapping[str, tuple[str, ...]] | None = None,
) -> list[MembershipChange]:
    """Bring the user's facts for ``segments`` (id, mode) in line with the rules; mutate ``st``.

    ``segments=None`` means every managed segment in RECONCILE mode (the per-event case).
    ``matches`` (segment -> matched rule ids, from ``active.match_segments``) replaces the
    per-segment evaluation when given.
    """
    changes: list[MembershipChange] = []
    excluded = st.deleted or is_suspended(st.profile)
    if segments is None and matches is not None:
        # Only segments where something can happen: the matched ones, the current members, and
        # facts of this very cause (a re-run). Elsewhere want == current == False: no change.
        # O(matches + facts) instead of O(managed segments) per event.
        cid = cause.cause_id
        maybe = {s for s, f in st.facts.items() if f.member or f.cause_id == cid}
        if not excluded:
            maybe.update(matches)
        ordered = [(s, RECONCILE) for s in sorted(maybe) if s in active]
    elif segments is None:
        ordered = every_segment(active)
    else:
        ordered = sorted(set(segments))
    for seg, mode in ordered:
        fact = st.facts.get(seg)
        current = bool(fact and fact.member)
        if mode == REMOVE_ALL:
            if seg in active:  # re-enabled since; that command's reconcile decides
                continue
            matched: tuple[str, ...] = ()
        elif seg not in active:  # not managed (now): frozen, never touched
            continue
        elif excluded:
            matched = ()
        elif matches is not None:
            matched = matches.get(seg, ())
        else:
            matched = desired(active, seg, st.profile, st.deleted, now_ms // 1000)
        want = bool(matched)
        if want != current:
            kind = "ADDED" if want else "REMOVED"
            cid = change_id(cause.cause_id, st.site_id, seg, st.user_id, kind, fact.change_id if fact else "")
            new = Fact(want, cid, kind, cause.kind_for(seg), cause.cause_id, matched, cause.occurred_at, now_ms,
                       evidence_of(active, seg, matched, st.profile))  # what it read (history, explain)
            st.facts[seg] = new
            changes.append(fact_to_change(st, seg, new))
        elif fact is not None and fact.cause_id == cause.cause_id:
            changes.append(fact_to_change(st, seg, fact))  # re-run of the same cause
    return changes


def apply_user_event(
    st: UserState | None, ev: UserEvent, offset: int, active: ActiveRuleSet, now_ms: int, *,
    use_index: bool = True,
) -> Outcome:
    """Fold a user event at ``offset`` into the user's state; ``use_index=False`` evaluates every
    managed segment's rules instead of matching through the set's index (same result)."""
    if st is None:
        st = UserState(ev.site_id, ev.user_id)
    if offset <= st.last_offset:
        again = _reissue(st, ev.event_id)
        return Outcome(st, again, REPLAYED, dirty=bool(again))
    if fold_user_event(st, ev, offset) == DUPLICATE:
        return Outcome(st, [], DUPLICATE, dirty=True)
    cause = Cause(ev.event_type, ev.event_id, ev.occurred_at)
    matches = None
    if use_index and not st.deleted:
        matches = active.match_segments(st.profile, now_ms // 1000)
    changes = reconcile(st, active, None, cause, now_ms, matches)
    return Outcome(st, changes, APPLIED, dirty=True, timer=reschedule(st, active, now_ms))


def fold_user_event(st: UserState, ev: UserEvent, offset: int) -> str:
    """Merge the event at ``offset`` into ``st`` without evaluating any rule.

    The first step of :func:`apply_user_event`, alone: a rebuild folds every event of a user
    this way and evaluates the rules once, on the final profile. Returns REPLAYED (offset
    already applied: nothing changes), DUPLICATE (event id seen recently: only the offset
    moves) or APPLIED.
    """
    if offset <= st.last_offset:
        return REPLAYED
    if ev.event_id in st.recent_event_ids:
        st.last_offset = offset
        return DUPLICATE
    st.profile, st.deleted = merge_profile(st.profile, st.deleted, ev)
    st.last_offset = offset
    st.remember_event(ev.event_id)
    return APPLIED


INDEX_FROM = 8  # segments in one backfill from which a user is matched through the index


class Targets:
    """A backfill's (segment, mode) pairs, prepared once per order for every user it visits.

    Up to :data:`INDEX_FROM` segments, each is evaluated for each user (the single-command case,
    unchanged). From there on (a batch) the user is matched once through the rule index and only
    the segments where something can happen are visited: those matched, those the user is a
    member of, and those carrying a fact of this very cause (a re-run). Elsewhere the user is
    neither wanted nor a member: no change. Same outcome, O(matches + facts) per user instead of
    O(segments)."""

    __slots__ = ("pairs", "ids", "by_segment", "indexed")

    def __init__(self, segments: Iterable[tuple[str, str]]) -> None:
        self.pairs = sorted(set(segments))
        self.ids = frozenset(s for s, _ in self.pairs)
        self.by_segment: dict[str, list[tuple[str, str]]] = {}
        for pair in self.pairs:
            self.by_segment.setdefault(pair[0], []).append(pair)
        self.indexed = len(self.ids) > INDEX_FROM


def apply_backfill(
    st: UserState, active: ActiveRuleSet, segments: "Iterable[tuple[str, str]] | Targets", cause: Cause,
    now_ms: int, control_offset: int = -1,
) -> Outcome:
    """Re-evaluate a stored user for a command's segments (a control message at ``control_offset``).

    A re-run (after a crash) first re-issues what this cause already recorded, byte-identical:
    the catalog may have moved on since, and a recorded change the dead worker never sent must
    reach the output before the change that now supersedes it. ``segments``: the order's pairs,
    or :class:`Targets` prepared once for all its users.
    """
    targets = segments if isinstance(segments, Targets) else Targets(segments)
    if targets.indexed:
        again = _reissue(st, cause.cause_id, [s for s in st.facts if s in targets.ids])
        cid = cause.cause_id
        maybe = {s for s, f in st.facts.items() if (f.member or f.cause_id == cid) and s in targets.ids}
        matches: dict[str, tuple[str, ...]] = {}
        if not (st.deleted or is_suspended(st.profile)):
            matches = active.match_segments(st.profile, now_ms // 1000)
            maybe.update(s for s in matches if s in targets.ids)
        pairs = [p for s in sorted(maybe) for p in targets.by_segment[s]]
        changes = reconcile(st, active, pairs, cause, now_ms, matches)
    else:
        again = _reissue(st, cause.cause_id, targets.ids)
        changes = reconcile(st, active, targets.pairs, cause, now_ms)
    if again:
        seen = {c.change_id for c in again}
        changes = again + [c for c in changes if c.change_id not in seen]
    timer = reschedule(st, active, now_ms)
    if changes:
        st.last_control_offset = max(st.last_control_offset, control_offset)
    # A re-run that re-emits changes rewrites the state too (see the module docstring).
    dirty = timer is not None or bool(changes)
    return Outcome(st, changes, APPLIED, dirty=dirty, timer=timer)


def ahead_of(st: UserState, user_events_done: int, control_done: int) -> bool:
    """Whether the state records changes of a message its current owner has not processed yet.

    ``user_events_done`` / ``control_done`` are the highest offsets of the user's partition in the
    two input topics that the owner has processed (or its committed offset minus one before the
    first one). After a crash the stored state (local store or changelog) can hold changes of
    messages past those offsets whose output was never released. Their own replay re-emits them
    (``REPLAYED``), but a message from the *other* topic may reach the user first and supersede
    them: a caller that sees ``True`` re-emits :func:`current_changes` before applying it.
    """
    return st.last_offset > user_events_done or st.last_control_offset > control_done


def current_changes(st: UserState) -> list[MembershipChange]:
    """The last change recorded for every segment of the user, oldest first, byte-identical to the
    original emission (re-emitting one that was delivered is a duplicate with the same change_id)."""
    order = sorted(st.facts.items(), key=lambda item: (item[1].emitted_at, item[0]))
    return [fact_to_change(st, seg, f) for seg, f in order]


def reschedule(st: UserState, active: ActiveRuleSet, now_ms: int) -> tuple[int, int] | None:
    """Recompute when time alone may change this user's membership; (old, new) if it moved."""
    old = st.next_check_at
    st.next_check_at = next_check(active, st.profile, st.deleted, now_ms // 1000)
    return None if old == st.next_check_at else (old, st.next_check_at)


def time_cause(due: int) -> Cause:
    """The deterministic cause of a time-triggered re-evaluation (same due => same ids)."""
    return Cause("TIME_ELAPSED", f"time:{due}", due * 1000)


def reissue_tick(st: UserState, due: int) -> list[MembershipChange]:
    """The changes a tick for timer ``due`` recorded and that still stand (for its replay)."""
    return _reissue(st, time_cause(due).cause_id)


def apply_tick(st: UserState, active: ActiveRuleSet, due: int, now_ms: int, control_offset: int = -1) -> Outcome:
    """Re-evaluate a user whose timer fell due (a tick at ``control_offset``); a timer the state
    no longer expects is stale."""
    if st.next_check_at != due:
        return Outcome(st, _reissue(st, time_cause(due).cause_id), "STALE", dirty=False)
    # evaluate at max(now, due): a tick may run a little before the wall clock passes `due`
    eval_ms = max(now_ms, due * 1000)
    changes = reconcile(st, active, None, time_cause(due), eval_ms)
    timer = reschedule(st, active, eval_ms)
    if changes:
        st.last_control_offset = max(st.last_control_offset, control_offset)
    return Outcome(st, changes, APPLIED, dirty=True, timer=timer)
