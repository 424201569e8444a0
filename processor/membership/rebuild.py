"""Rebuild one user's state from folded inputs and what the output topic already says (pure).

``--emit diff``: only changes relative to the output topic (nothing when the
live state was right). ``--emit snapshot``: additionally an ADDED for every
member, for consumers rebuilding from scratch. Both use cause ``REBUILD``
with ``cause_id = "rebuild:<run id>"``, so a re-run of the same rebuild yields
the same change ids.
"""

from __future__ import annotations

from processor.contract.models import MembershipChange
from processor.catalog.active import ActiveRuleSet
from processor.membership.decide import desired
from processor.membership.engine import Cause, change_id, fact_to_change, reconcile, reschedule
from processor.membership.evidence import evidence_of
from processor.state.user_state import Fact, UserState

DIFF, SNAPSHOT = "diff", "snapshot"


def fact_from_change(ch: MembershipChange) -> Fact:
    return Fact(ch.change == "ADDED", ch.change_id, ch.change, ch.cause_kind, ch.cause_id,
                tuple(ch.matched_rule_ids), ch.occurred_at, ch.emitted_at, ch.evidence)


def rebuild_user(
    st: UserState,
    active: ActiveRuleSet,
    published: dict[str, MembershipChange],
    mode: str,
    run_id: str,
    now_ms: int,
    *,
    use_index: bool = True,
) -> list[MembershipChange]:
    """Set ``st.facts`` to the truth and return the changes to publish.

    ``st`` holds the folded profile (facts empty); ``published`` is the last
    change the output topic carries per segment for this user. As on the streaming
    path the set's index finds the matches (``use_index=False``: every rule is
    evaluated, with the same result).
    """
    st.facts = {seg: fact_from_change(ch) for seg, ch in published.items()}
    cause = Cause("REBUILD", f"rebuild:{run_id}", now_ms)
    matches = active.match_segments(st.profile, now_ms // 1000) if use_index and not st.deleted else None
    changes = reconcile(st, active, None, cause, now_ms, matches)
    if mode == SNAPSHOT:
        touched = {c.segment_id for c in changes}
        for seg in active.segment_ids:
            f = st.facts.get(seg)
            if f is None or not f.member or seg in touched:
                continue
            cid = change_id(cause.cause_id, st.site_id, seg, st.user_id, "ADDED", f.change_id)
            matched = (matches.get(seg, ()) if matches is not None
                       else desired(active, seg, st.profile, st.deleted, now_ms // 1000))
            new = Fact(True, cid, "ADDED", cause.kind, cause.cause_id, matched, cause.occurred_at, now_ms,
                       evidence_of(active, seg, matched, st.profile))
            st.facts[seg] = new
            changes.append(fact_to_change(st, seg, new))
    reschedule(st, active, now_ms)
    return sorted(changes, key=lambda c: c.segment_id)
