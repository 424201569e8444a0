"""Unit tests for processor/membership/engine.py (apply_user_event, apply_backfill, change ids).

Spec (issue 2): a user is a member of managed segment S iff at least one
enabled rule targeting S matches the stored profile and the user is not
deleted; suspended users match nothing; unmanaged segments are never
touched; only real changes are emitted; replays at or below the last
applied offset re-emit the same deterministic changes; a duplicated event
emits nothing new; change ids are deterministic per cause and state.
"""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.catalog.active import ActiveRuleSet
from processor.catalog.commands import REMOVE_ALL, RECONCILE
from processor.catalog.commands import apply as apply_command
from processor.catalog.commands import decide
from processor.catalog.model import SiteCatalog
from processor.contract.codec import encode_membership_change
from processor.contract.models import Actor, Command, UserEvent
from processor.membership.engine import (
    ahead_of,
    current_changes,
    APPLIED,
    DUPLICATE,
    REPLAYED,
    Cause,
    apply_backfill,
    apply_tick,
    apply_user_event,
    reissue_tick,
)
from processor.rules.compiler import compile_condition
from processor.rules.fields import StaticFields
from processor.state.user_state import Fact, UserState, decode_state, encode_state

SITE, USER = "site-a", "u-1"
FIELDS = StaticFields()


def rule(cond: dict):
    return compile_condition(json.dumps(cond), FIELDS)


R_SALES = ("r-sales", rule({"field": "department", "op": "equals", "value": "Sales"}))
R_DE = ("r-de", rule({"field": "country", "op": "in", "value": ["DE", "FR"]}))
R_LONDON = ("r-london", rule({"field": "city", "op": "equals", "value": "London"}))

ACTIVE = ActiveRuleSet.build({"sales": (R_SALES,), "emea": (R_DE, R_LONDON)})


def ev(event_id: str, event_type: str = "USER_UPDATED", profile: dict | None = None, user: str = USER,
       site: str = SITE, at: int = 1_000) -> UserEvent:
    return UserEvent(event_id, event_type, site, user, at, profile or {})


def wire(changes) -> list[bytes]:
    return [encode_membership_change(c) for c in changes]


def summary(changes) -> list[tuple[str, str]]:
    return sorted((c.segment_id, c.change) for c in changes)


def members(st: UserState) -> set[str]:
    return {s for s, f in st.facts.items() if f.member}


def stored_user(profile: dict, **kw) -> UserState:
    """A user stored while no rules existed (no facts)."""
    out = apply_user_event(None, ev("e-seed", "USER_CREATED", profile, **kw), 0, ActiveRuleSet(), 1)
    assert out.changes == []
    return out.state


# ------------------------------------------------------------ user events


def test_created_matching_user_is_added():
    """USER_CREATED matching a rule emits one ADDED with the cause, the matched rule and the event time."""
    out = apply_user_event(None, ev("e1", "USER_CREATED", {"department": "Sales"}, at=1234), 7, ACTIVE, 9999)
    assert out.status == APPLIED and out.dirty
    (ch,) = out.changes
    assert (ch.site_id, ch.segment_id, ch.user_id, ch.change) == (SITE, "sales", USER, "ADDED")
    assert (ch.cause_kind, ch.cause_id) == ("USER_CREATED", "e1")
    assert ch.matched_rule_ids == ("r-sales",)
    assert (ch.occurred_at, ch.emitted_at) == (1234, 9999)
    assert ch.change_id
    assert out.state.is_member("sales")
    assert out.state.last_offset == 7


def test_created_non_matching_user_is_stored_without_changes():
    """A user matching no rule is stored (for later backfills) and nothing is emitted."""
    out = apply_user_event(None, ev("e1", "USER_CREATED", {"department": "HR"}), 0, ACTIVE, 1)
    assert out.changes == []
    assert out.dirty
    assert out.state.profile == {"department": "HR"}


def test_update_that_stops_matching_removes():
    """An employee moving from Sales to Marketing is REMOVED, cause USER_UPDATED, no matched rules."""
    st = apply_user_event(None, ev("e1", "USER_CREATED", {"department": "Sales"}), 0, ACTIVE, 1).state
    out = apply_user_event(st, ev("e2", "USER_UPDATED", {"department": "Marketing"}, at=2000), 1, ACTIVE, 2)
    (ch,) = out.changes
    assert (ch.segment_id, ch.change, ch.cause_kind, ch.cause_id) == ("sales", "REMOVED", "USER_UPDATED", "e2")
    assert ch.matched_rule_ids == ()
    assert ch.occurred_at == 2000
    assert not out.state.is_member("sales")


def test_patch_keeps_untouched_fields():
    """An update of an unrelated field keeps the matching field, so membership is unchanged and nothing is emitted."""
    st = apply_user_event(None, ev("e1", "USER_CREATED", {"department": "Sales"}), 0, ACTIVE, 1).state
    out = apply_user_event(st, ev("e2", "USER_UPDATED", {"lang": "fr"}), 1, ACTIVE, 2)
    assert out.changes == []
    assert out.state.profile == {"department": "Sales", "lang": "fr"}
    assert out.state.is_member("sales")


def test_no_change_when_a_different_rule_keeps_user_in():
    """Switching from one matching rule to another of the same segment emits nothing."""
    st = apply_user_event(None, ev("e1", "USER_CREATED", {"country": "DE"}), 0, ACTIVE, 1).state
    assert st.is_member("emea")
    out = apply_user_event(st, ev("e2", "USER_UPDATED", {"country": "US", "city": "London"}), 1, ACTIVE, 2)
    assert out.changes == []
    assert out.state.is_member("emea")


def test_matched_rule_ids_lists_all_matching_rules():
    """When several rules of a segment match, ADDED lists all of them."""
    out = apply_user_event(None, ev("e1", "USER_CREATED", {"country": "FR", "city": "london"}), 0, ACTIVE, 1)
    (ch,) = out.changes
    assert set(ch.matched_rule_ids) == {"r-de", "r-london"}


def test_one_event_can_change_several_segments():
    """One event yields one change per affected segment."""
    st = apply_user_event(None, ev("e1", "USER_CREATED", {"department": "Sales"}), 0, ACTIVE, 1).state
    out = apply_user_event(st, ev("e2", "USER_UPDATED", {"department": "HR", "country": "DE"}), 1, ACTIVE, 2)
    assert summary(out.changes) == [("emea", "ADDED"), ("sales", "REMOVED")]


def test_deleted_user_removed_from_all_managed_segments():
    """USER_DELETED emits REMOVED for every managed segment the user was in, and nothing else."""
    st = apply_user_event(None, ev("e1", "USER_CREATED", {"department": "Sales", "country": "DE"}), 0,
                          ACTIVE, 1).state
    out = apply_user_event(st, ev("e2", "USER_DELETED"), 1, ACTIVE, 2)
    assert summary(out.changes) == [("emea", "REMOVED"), ("sales", "REMOVED")]
    assert all(c.cause_kind == "USER_DELETED" and c.cause_id == "e2" for c in out.changes)
    assert out.state.deleted
    again = apply_user_event(out.state, ev("e3", "USER_DELETED"), 2, ACTIVE, 3)
    assert again.changes == []


def test_deleted_user_profile_in_event_is_ignored():
    """A USER_DELETED carrying a matching profile still removes the user."""
    st = apply_user_event(None, ev("e1", "USER_CREATED", {"department": "Sales"}), 0, ACTIVE, 1).state
    out = apply_user_event(st, ev("e2", "USER_DELETED", {"department": "Sales"}), 1, ACTIVE, 2)
    assert summary(out.changes) == [("sales", "REMOVED")]


def test_suspended_user_does_not_match():
    """A suspended user matching a rule is not added; suspending a member removes them; unsuspending re-adds."""
    out = apply_user_event(None, ev("e1", "USER_CREATED", {"department": "Sales", "suspended": True}), 0,
                           ACTIVE, 1)
    assert out.changes == []
    st = out.state
    added = apply_user_event(st, ev("e2", "USER_UPDATED", {"suspended": False}), 1, ACTIVE, 2)
    assert summary(added.changes) == [("sales", "ADDED")]
    removed = apply_user_event(added.state, ev("e3", "USER_UPDATED", {"suspended": True}), 2, ACTIVE, 3)
    assert summary(removed.changes) == [("sales", "REMOVED")]
    readded = apply_user_event(removed.state, ev("e4", "USER_UPDATED", {"suspended": None}), 3, ACTIVE, 4)
    assert summary(readded.changes) == [("sales", "ADDED")]
    assert readded.changes[0].change_id != added.changes[0].change_id


def test_unmanaged_segment_never_touched():
    """A segment without automation (not in active) keeps its frozen members, even on delete."""
    st = apply_user_event(None, ev("e1", "USER_CREATED", {"department": "Sales"}), 0, ACTIVE, 1).state
    frozen_active = ActiveRuleSet.build({"emea": ACTIVE["emea"]})  # 'sales' automation disabled (frozen)
    before = copy.deepcopy(st.facts["sales"])
    out = apply_user_event(st, ev("e2", "USER_UPDATED", {"department": "HR"}), 1, frozen_active, 2)
    assert out.changes == []
    out = apply_user_event(out.state, ev("e3", "USER_DELETED"), 2, frozen_active, 3)
    assert out.changes == []
    assert out.state.facts["sales"] == before


def test_user_event_for_unmanaged_only_site_emits_nothing():
    """With no managed segment, no event emits anything."""
    out = apply_user_event(None, ev("e1", "USER_CREATED", {"department": "Sales"}), 0, ActiveRuleSet(), 1)
    assert out.changes == [] and out.status == APPLIED


# ------------------------------------------------------------------ replays


def _two_events():
    e1 = ev("e1", "USER_CREATED", {"department": "Sales"}, at=10)
    e2 = ev("e2", "USER_UPDATED", {"country": "DE"}, at=20)
    o1 = apply_user_event(None, e1, 5, ACTIVE, 100)
    o2 = apply_user_event(o1.state, e2, 6, ACTIVE, 200)
    return e1, e2, o1, o2


def test_replay_reemits_identical_changes_for_that_cause_only():
    """Re-delivery of an applied event (offset <= last_offset) re-emits exactly its changes, byte for
    byte, and asks for the (unchanged) state to be written again: the local store may be ahead of
    the changelog after a crash, and a re-emitted change must be backed by a changelogged fact."""
    e1, e2, o1, o2 = _two_events()
    assert summary(o1.changes) == [("sales", "ADDED")]
    assert summary(o2.changes) == [("emea", "ADDED")]
    st_before = copy.deepcopy(o2.state)

    r1 = apply_user_event(o2.state, e1, 5, ACTIVE, 999_999)
    assert r1.status == REPLAYED
    assert r1.dirty is True
    assert wire(r1.changes) == wire(o1.changes)

    r2 = apply_user_event(o2.state, e2, 6, ACTIVE, 999_999)
    assert wire(r2.changes) == wire(o2.changes)
    assert o2.state == st_before  # replays never change state


def test_replay_after_state_ran_ahead():
    """State saved after applying an event but before its output was committed: re-delivery re-emits."""
    e1 = ev("e1", "USER_CREATED", {"department": "Sales"})
    first = apply_user_event(None, e1, 42, ACTIVE, 100)
    restored = copy.deepcopy(first.state)  # what the table held after the crash
    again = apply_user_event(restored, e1, 42, ACTIVE, 555)
    assert again.status == REPLAYED
    assert wire(again.changes) == wire(first.changes)


def test_replay_of_event_without_changes_emits_nothing():
    """Replaying an event that changed no membership emits nothing and writes nothing."""
    e1 = ev("e1", "USER_CREATED", {"department": "HR"})
    st = apply_user_event(None, e1, 3, ACTIVE, 1).state
    out = apply_user_event(st, e1, 3, ACTIVE, 2)
    assert out.status == REPLAYED and out.changes == [] and out.dirty is False


def test_replay_does_not_apply_the_event_again():
    """A replayed event's profile is not re-applied, even if it would change the stored profile."""
    e1, e2, o1, o2 = _two_events()
    stale = ev("e1", "USER_CREATED", {"department": "Sales"})  # a full replace would drop country
    out = apply_user_event(o2.state, stale, 5, ACTIVE, 3)
    assert out.state.profile == {"department": "Sales", "country": "DE"}
    assert out.state.is_member("emea")


def test_duplicate_event_id_at_new_offset_emits_nothing():
    """The same event delivered again at a new offset (producer retry) is a DUPLICATE: nothing emitted."""
    e1 = ev("e1", "USER_CREATED", {"department": "Sales"})
    first = apply_user_event(None, e1, 5, ACTIVE, 1)
    dup = apply_user_event(first.state, e1, 9, ACTIVE, 2)
    assert dup.status == DUPLICATE
    assert dup.changes == []
    assert dup.state.is_member("sales")


def test_duplicate_does_not_undo_later_changes():
    """A late duplicate of an older event does not re-apply it over newer data."""
    e1 = ev("e1", "USER_CREATED", {"department": "Sales"})
    s = apply_user_event(None, e1, 1, ACTIVE, 1).state
    s = apply_user_event(s, ev("e2", "USER_UPDATED", {"department": "HR"}), 2, ACTIVE, 2).state
    dup = apply_user_event(s, e1, 3, ACTIVE, 3)
    assert dup.changes == []
    assert dup.state.profile == {"department": "HR"}
    assert not dup.state.is_member("sales")


# ---------------------------------------------------------------- change ids


def test_change_id_is_deterministic_for_same_cause_and_state():
    """Two workers applying the same event to the same state produce the same change_id, whatever the clock."""
    e1 = ev("e1", "USER_CREATED", {"department": "Sales"})
    a = apply_user_event(None, e1, 5, ACTIVE, 1).changes
    b = apply_user_event(None, e1, 5, ACTIVE, 987654321).changes
    assert [c.change_id for c in a] == [c.change_id for c in b]


def test_change_id_differs_by_cause_and_target():
    """Different events, users, sites or segments yield different change ids."""
    base = apply_user_event(None, ev("e1", "USER_CREATED", {"department": "Sales", "country": "DE"}), 0,
                            ACTIVE, 1).changes
    ids = {c.change_id for c in base}
    assert len(ids) == 2  # sales and emea differ
    for other in (ev("e2", "USER_CREATED", {"department": "Sales", "country": "DE"}),
                  ev("e1", "USER_CREATED", {"department": "Sales", "country": "DE"}, user="u-2"),
                  ev("e1", "USER_CREATED", {"department": "Sales", "country": "DE"}, site="site-b")):
        assert not ids & {c.change_id for c in apply_user_event(None, other, 0, ACTIVE, 1).changes}


def test_change_ids_unique_across_history():
    """ADDED, REMOVED and ADDED again for one user/segment all carry distinct change ids."""
    s = None
    seen = []
    for i, dept in enumerate(["Sales", "HR", "Sales", "HR", "Sales"]):
        out = apply_user_event(s, ev(f"e{i}", "USER_UPDATED", {"department": dept}), i, ACTIVE, i)
        s = out.state
        seen += [c.change_id for c in out.changes]
    assert len(seen) == 5
    assert len(set(seen)) == 5


# ----------------------------------------------------------------- backfill


def test_backfill_reconcile_adds_matching_user():
    """A new rule's backfill ADDS a stored matching user, with the command as cause."""
    st = stored_user({"department": "Sales"})
    out = apply_backfill(st, ACTIVE, [("sales", RECONCILE)], Cause("RULE_CREATED", "cmd-1", 4242), 77)
    (ch,) = out.changes
    assert (ch.segment_id, ch.change, ch.cause_kind, ch.cause_id) == ("sales", "ADDED", "RULE_CREATED", "cmd-1")
    assert ch.matched_rule_ids == ("r-sales",)
    assert (ch.occurred_at, ch.emitted_at) == (4242, 77)
    assert out.dirty
    assert out.state.is_member("sales")


def test_backfill_rerun_same_cause_reemits_identical_changes():
    """Re-running a backfill for the same command re-emits byte-identical changes, and rewrites the
    state so the changelog backs them (as for a replayed event)."""
    st = stored_user({"department": "Sales"})
    cause = Cause("RULE_CREATED", "cmd-1", 4242)
    first = apply_backfill(st, ACTIVE, [("sales", RECONCILE)], cause, 77)
    snapshot = copy.deepcopy(first.state)
    again = apply_backfill(first.state, ACTIVE, [("sales", RECONCILE)], cause, 88_888)
    assert wire(again.changes) == wire(first.changes)
    assert again.dirty is True
    assert again.state == snapshot


def test_backfill_same_cause_on_fresh_copy_gives_same_ids():
    """The same backfill applied to two copies of the same state yields the same change ids."""
    st = stored_user({"department": "Sales"})
    cause = Cause("RULE_CREATED", "cmd-1", 1)
    a = apply_backfill(copy.deepcopy(st), ACTIVE, [("sales", RECONCILE)], cause, 1)
    b = apply_backfill(copy.deepcopy(st), ACTIVE, [("sales", RECONCILE)], cause, 2)
    assert [c.change_id for c in a.changes] == [c.change_id for c in b.changes]


def test_backfill_other_cause_without_change_emits_nothing():
    """A later command that does not change the user's membership emits nothing for them."""
    st = stored_user({"department": "Sales"})
    st = apply_backfill(st, ACTIVE, [("sales", RECONCILE)], Cause("RULE_CREATED", "cmd-1", 1), 1).state
    out = apply_backfill(st, ACTIVE, [("sales", RECONCILE)], Cause("RULE_UPDATED", "cmd-2", 2), 2)
    assert out.changes == []
    assert out.dirty is False


def test_backfill_reconcile_removes_user_no_longer_matching():
    """After a rule update, a member the rule no longer matches is REMOVED with the command as cause."""
    st = apply_user_event(None, ev("e1", "USER_CREATED", {"department": "Sales"}), 0, ACTIVE, 1).state
    updated = ActiveRuleSet.build({**ACTIVE, "sales": (("r-sales", rule({"field": "department", "op": "equals", "value": "Ops"})),)})
    out = apply_backfill(st, updated, [("sales", RECONCILE)], Cause("RULE_UPDATED", "cmd-9", 5), 6)
    assert [(c.segment_id, c.change, c.cause_kind, c.cause_id) for c in out.changes] == [
        ("sales", "REMOVED", "RULE_UPDATED", "cmd-9")]


def test_backfill_rule_deleted_keeps_users_another_rule_matches():
    """Deleting one rule removes only users no remaining rule of the segment matches."""
    both = apply_user_event(None, ev("e1", "USER_CREATED", {"country": "DE", "city": "London"}), 0, ACTIVE, 1).state
    only_de = apply_user_event(None, ev("e2", "USER_CREATED", {"country": "DE"}, user="u-2"), 0, ACTIVE, 1).state
    after = ActiveRuleSet.build({**ACTIVE, "emea": (R_LONDON,)})
    cause = Cause("RULE_DELETED", "cmd-del", 9)
    assert apply_backfill(both, after, [("emea", RECONCILE)], cause, 1).changes == []
    assert summary(apply_backfill(only_de, after, [("emea", RECONCILE)], cause, 1).changes) == [("emea", "REMOVED")]


def test_backfill_only_touches_listed_segments():
    """A backfill for one segment leaves the user's other segments alone even if their rules changed."""
    st = apply_user_event(None, ev("e1", "USER_CREATED", {"department": "Sales", "country": "DE"}), 0,
                          ACTIVE, 1).state
    nothing_matches = ActiveRuleSet.build({"sales": (), "emea": ()})
    out = apply_backfill(st, nothing_matches, [("sales", RECONCILE)], Cause("RULE_DELETED", "c", 1), 1)
    assert summary(out.changes) == [("sales", "REMOVED")]
    assert out.state.is_member("emea")


def test_backfill_duplicate_segment_entries_emit_once():
    """Listing a segment twice in a plan still yields a single change."""
    st = stored_user({"department": "Sales"})
    out = apply_backfill(st, ACTIVE, [("sales", RECONCILE), ("sales", RECONCILE)],
                         Cause("RULE_CREATED", "c", 1), 1)
    assert len(out.changes) == 1


def test_backfill_reconcile_skips_unmanaged_segment():
    """RECONCILE of a segment that is not managed (any more) changes nothing: frozen members stay."""
    st = apply_user_event(None, ev("e1", "USER_CREATED", {"department": "Sales"}), 0, ACTIVE, 1).state
    out = apply_backfill(st, ActiveRuleSet.build({"emea": ACTIVE["emea"]}), [("sales", RECONCILE)], Cause("RULE_DELETED", "c", 1), 1)
    assert out.changes == []
    assert out.state.is_member("sales")


def test_backfill_deleted_and_suspended_users_not_added():
    """Backfills never add deleted or suspended users."""
    cause = Cause("RULE_CREATED", "c", 1)
    deleted = apply_user_event(stored_user({"department": "Sales"}), ev("e9", "USER_DELETED"), 1, ActiveRuleSet(), 1).state
    assert apply_backfill(deleted, ACTIVE, [("sales", RECONCILE)], cause, 1).changes == []
    suspended = stored_user({"department": "Sales", "suspended": True})
    assert apply_backfill(suspended, ACTIVE, [("sales", RECONCILE)], cause, 1).changes == []


def test_backfill_remove_all_removes_members():
    """REMOVE_ALL (segment deleted / disabled with remove_members) removes every member, nobody else."""
    member = apply_user_event(None, ev("e1", "USER_CREATED", {"department": "Sales"}), 0, ACTIVE, 1).state
    non_member = apply_user_event(None, ev("e2", "USER_CREATED", {"department": "HR"}, user="u-2"), 0,
                                  ACTIVE, 1).state
    after = ActiveRuleSet.build({"emea": ACTIVE["emea"]})  # 'sales' gone
    cause = Cause("SEGMENT_DELETED", "cmd-x", 50)
    out = apply_backfill(member, after, [("sales", REMOVE_ALL)], cause, 60)
    (ch,) = out.changes
    assert (ch.segment_id, ch.change, ch.cause_kind, ch.cause_id, ch.matched_rule_ids) == (
        "sales", "REMOVED", "SEGMENT_DELETED", "cmd-x", ())
    assert ch.occurred_at == 50
    assert apply_backfill(non_member, after, [("sales", REMOVE_ALL)], cause, 60).changes == []
    again = apply_backfill(out.state, after, [("sales", REMOVE_ALL)], cause, 70)
    assert wire(again.changes) == wire(out.changes)


def test_backfill_remove_all_removes_members_even_if_rules_match():
    """REMOVE_ALL removes members regardless of profile: a disabled segment with remove_members empties."""
    member = apply_user_event(None, ev("e1", "USER_CREATED", {"department": "Sales"}), 0, ACTIVE, 1).state
    out = apply_backfill(member, ActiveRuleSet(), [("sales", REMOVE_ALL)], Cause("SEGMENT_AUTOMATION_DISABLED", "c", 1), 1)
    assert summary(out.changes) == [("sales", "REMOVED")]


def test_backfill_remove_all_skipped_if_segment_managed_again():
    """If the segment was re-enabled before the REMOVE_ALL backfill ran, it does not remove members."""
    member = apply_user_event(None, ev("e1", "USER_CREATED", {"department": "Sales"}), 0, ACTIVE, 1).state
    out = apply_backfill(member, ACTIVE, [("sales", REMOVE_ALL)], Cause("SEGMENT_AUTOMATION_DISABLED", "c", 1), 1)
    assert out.changes == []
    assert out.state.is_member("sales")


def test_reenable_reconciles_frozen_members():
    """Re-enabling reconciles a frozen segment: members that no longer match are REMOVED."""
    st = apply_user_event(None, ev("e1", "USER_CREATED", {"department": "Sales"}), 0, ACTIVE, 1).state
    st = apply_user_event(st, ev("e2", "USER_UPDATED", {"department": "HR"}), 1, ActiveRuleSet(), 2).state  # frozen
    assert st.is_member("sales")
    out = apply_backfill(st, ACTIVE, [("sales", RECONCILE)], Cause("SEGMENT_AUTOMATION_ENABLED", "c", 1), 1)
    assert summary(out.changes) == [("sales", "REMOVED")]


def test_backfill_survives_non_finite_datetime_in_stored_profile():
    """A profile stored while no rule read its datetime field may hold NaN (a legal Avro double); a later
    backfill for a rule on that field must evaluate it (not a member) instead of raising, since a raise
    aborts the backfill of every remaining user in the partition."""
    st = stored_user({"department": "Sales", "lastlogin": float("nan")})
    active = ActiveRuleSet.build({"inactive": (("r-old", rule({"field": "lastlogin", "op": "before", "value": 1_600_000_000})),)})
    out = apply_backfill(st, active, [("inactive", RECONCILE)], Cause("RULE_CREATED", "cmd-1", 1), 1)
    assert out.changes == []


def test_user_event_with_non_finite_datetime_is_processed():
    """A user event carrying lastlogin = Infinity is applied (stored, evaluated) without raising."""
    active = ActiveRuleSet.build({**ACTIVE, "inactive": (("r-old", rule({"field": "lastlogin", "op": "before", "value": 10})),)})
    out = apply_user_event(None, ev("e1", "USER_CREATED", {"department": "Sales", "lastlogin": float("inf")}),
                           0, active, 1)
    assert summary(out.changes) == [("sales", "ADDED")]


# ------------------------------------------------------- membership invariant

_patch = st.fixed_dictionaries({}, optional={
    "department": st.sampled_from(["Sales", " sales ", "HR", None]),
    "country": st.sampled_from(["DE", "fr", "US", None]),
    "city": st.sampled_from(["London", "Paris", None]),
    "suspended": st.sampled_from([True, False, None]),
})
_step = st.tuples(st.sampled_from(["USER_CREATED", "USER_UPDATED", "USER_UPDATED", "USER_DELETED"]), _patch,
                  st.sampled_from(["new", "new", "new", "replay", "duplicate"]))


def _model_merge(profile: dict, deleted: bool, etype: str, patch: dict) -> tuple[dict, bool]:
    if etype == "USER_DELETED":
        return {}, True
    if etype == "USER_CREATED" or deleted:
        return {k: v for k, v in patch.items() if v is not None}, False
    out = dict(profile)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out, False


def _model_members(profile: dict, deleted: bool) -> set[str]:
    if deleted or profile.get("suspended") is True:
        return set()
    norm = {k: v.strip().lower() for k, v in profile.items() if isinstance(v, str)}
    out = set()
    if norm.get("department") == "sales":
        out.add("sales")
    if norm.get("country") in {"de", "fr"} or norm.get("city") == "london":
        out.add("emea")
    return out


@pytest.mark.parametrize("indexed", [False, True], ids=["every-rule", "rule-index"])
@settings(max_examples=60, deadline=None)
@given(steps=st.lists(_step, min_size=1, max_size=12))
def test_property_membership_follows_rules(indexed, steps):
    """After any sequence of events (with replays and duplicates), membership equals what the rules say,
    every emitted change is a real transition, and new change ids are never reused; with the site's
    rule index (which only visits matched and member segments) exactly as when evaluating every rule."""
    state = None
    profile, deleted = {}, False
    model_in: set[str] = set()
    offset = 0
    last = None  # (event, offset, changes)
    emitted_ids: set[str] = set()
    for i, (etype, patch, mode) in enumerate(steps):
        if mode == "replay" and last:
            e, off, changes = last
            out = apply_user_event(state, e, off, ACTIVE, 10_000 + i, use_index=indexed)
            assert out.status == REPLAYED
            assert wire(out.changes) == wire(changes)
            continue
        if mode == "duplicate" and last:
            offset += 1
            out = apply_user_event(state, last[0], offset, ACTIVE, 10_000 + i, use_index=indexed)
            assert out.status == DUPLICATE and out.changes == []
            state = out.state
            continue
        offset += 1
        e = ev(f"e{i}", etype, patch, at=i)
        out = apply_user_event(state, e, offset, ACTIVE, i, use_index=indexed)
        state = out.state
        profile, deleted = _model_merge(profile, deleted, etype, patch)
        want = _model_members(profile, deleted)
        assert state.profile == profile
        assert members(state) == want
        expected = sorted([(s, "ADDED") for s in want - model_in] + [(s, "REMOVED") for s in model_in - want])
        assert summary(out.changes) == expected
        for c in out.changes:
            assert c.change_id not in emitted_ids
            emitted_ids.add(c.change_id)
        model_in = want
        last = (e, offset, out.changes)


def test_fact_round_trip_through_state_keeps_replay_bytes():
    """Replays from a decoded stored state re-emit the same bytes (facts keep every change field)."""
    e1 = ev("e1", "USER_CREATED", {"department": "Sales", "country": "DE"})
    first = apply_user_event(None, e1, 1, ACTIVE, 123)
    restored = decode_state(encode_state(first.state))
    again = apply_user_event(restored, e1, 1, ACTIVE, 456)
    assert wire(again.changes) == wire(first.changes)


@pytest.mark.parametrize("fact_member", [True, False])
def test_facts_record_last_change(fact_member):
    """A user's fact for a segment records the last change (member flag, change and cause)."""
    dept = "Sales" if fact_member else "HR"
    s = apply_user_event(None, ev("e1", "USER_CREATED", {"department": "Sales"}), 0, ACTIVE, 1).state
    out = apply_user_event(s, ev("e2", "USER_UPDATED", {"department": dept}), 1, ACTIVE, 2)
    f: Fact = out.state.facts["sales"]
    assert f.member is fact_member
    assert f.change == ("ADDED" if fact_member else "REMOVED")
    assert f.cause_id == ("e1" if fact_member else "e2")


# ------------------------------------------- catalog + engine (pure end to end)

def _cmd(cid: str, payload_type: str, **payload) -> Command:
    return Command(cid, SITE, 7_000, Actor("adm", ("site_admin",)), payload_type, payload)


def _run(cat: SiteCatalog, cmd: Command):
    d = decide(cat, cmd, SITE)
    assert d.accepted, (d.code, d.message)
    apply_command(cat, cmd)
    return d


def _site_with_team_rule() -> SiteCatalog:
    cat = SiteCatalog(SITE)
    _run(cat, _cmd("c1", "UpsertProfileField", shortname="team", name="Team", datatype="TEXT", options=[]))
    _run(cat, _cmd("c2", "UpsertSegment", segment_id="sales", name="Sales"))
    _run(cat, _cmd("c3", "EnableSegmentAutomation", segment_id="sales"))
    _run(cat, _cmd("c4", "CreateRule", rule_id="r-dept", segment_id="sales", name="dept", enabled=True,
                   condition_json=json.dumps({"field": "department", "op": "equals", "value": "Sales"})))
    _run(cat, _cmd("c5", "CreateRule", rule_id="r-team", segment_id="sales", name="team", enabled=True,
                   condition_json=json.dumps({"field": "profile_field_team", "op": "equals", "value": "red"})))
    return cat


def _backfill(st: UserState, cat: SiteCatalog, decision, cid: str):
    plan = decision.backfill
    return apply_backfill(st, cat.active, plan.segments, Cause(plan.cause_kind, cid, 7_000), 8_000)


def test_profile_field_deleted_removes_members_only_that_rule_justified():
    """Deleting a custom field breaks its rule: members it alone justified are REMOVED (PROFILE_FIELD_DELETED),
    members another rule still matches stay."""
    cat = _site_with_team_rule()
    only_team = apply_user_event(None, ev("e1", "USER_CREATED", {"profile_field_team": "Red"}), 0,
                                 cat.active, 1).state
    both = apply_user_event(None, ev("e2", "USER_CREATED", {"profile_field_team": "Red", "department": "Sales"},
                                     user="u-2"), 0, cat.active, 1).state
    assert only_team.is_member("sales") and both.is_member("sales")

    d = _run(cat, _cmd("c6", "DeleteProfileField", shortname="team"))
    out1 = _backfill(only_team, cat, d, "c6")
    out2 = _backfill(both, cat, d, "c6")
    assert [(c.change, c.cause_kind, c.cause_id) for c in out1.changes] == [
        ("REMOVED", "PROFILE_FIELD_DELETED", "c6")]
    assert out2.changes == []
    assert cat.rule_status("r-team") == "broken"


def test_disable_with_remove_members_end_to_end():
    """DisableSegmentAutomation(remove_members) removes every member with cause SEGMENT_AUTOMATION_DISABLED."""
    cat = _site_with_team_rule()
    st = apply_user_event(None, ev("e1", "USER_CREATED", {"department": "Sales"}), 0, cat.active, 1).state
    d = _run(cat, _cmd("c6", "DisableSegmentAutomation", segment_id="sales", remove_members=True))
    out = _backfill(st, cat, d, "c6")
    assert [(c.change, c.cause_kind) for c in out.changes] == [("REMOVED", "SEGMENT_AUTOMATION_DISABLED")]


def test_disable_freezes_then_reenable_reconciles_end_to_end():
    """While disabled nothing changes for the segment; re-enabling reconciles against the current rules."""
    cat = _site_with_team_rule()
    st = apply_user_event(None, ev("e1", "USER_CREATED", {"department": "Sales"}), 0, cat.active, 1).state
    d = _run(cat, _cmd("c6", "DisableSegmentAutomation", segment_id="sales", remove_members=False))
    assert d.backfill is None
    out = apply_user_event(st, ev("e2", "USER_UPDATED", {"department": "HR"}), 1, cat.active, 2)
    assert out.changes == [] and out.state.is_member("sales")
    d = _run(cat, _cmd("c7", "EnableSegmentAutomation", segment_id="sales"))
    out = _backfill(out.state, cat, d, "c7")
    assert [(c.change, c.cause_kind) for c in out.changes] == [("REMOVED", "SEGMENT_AUTOMATION_ENABLED")]


def test_delete_segment_end_to_end():
    """DeleteSegment emits REMOVED (cause SEGMENT_DELETED) for its members so downstream unenrols."""
    cat = _site_with_team_rule()
    st = apply_user_event(None, ev("e1", "USER_CREATED", {"department": "Sales"}), 0, cat.active, 1).state
    d = _run(cat, _cmd("c6", "DeleteSegment", segment_id="sales"))
    out = _backfill(st, cat, d, "c6")
    assert [(c.segment_id, c.change, c.cause_kind) for c in out.changes] == [
        ("sales", "REMOVED", "SEGMENT_DELETED")]


# ------------------------------------------------- state ahead of its owner (after a crash)


def test_backfill_with_changes_records_its_control_offset():
    """A backfill that changes a user records the control message's offset in the state (so a
    later owner can tell the state holds that message's changes); one without changes does not."""
    st = stored_user({"department": "Sales"})
    out = apply_backfill(st, ACTIVE, [("sales", RECONCILE)], Cause("RULE_CREATED", "cmd-1", 1), 1, 40)
    assert out.changes and out.state.last_control_offset == 40
    out = apply_backfill(out.state, ACTIVE, [("sales", RECONCILE)], Cause("RULE_UPDATED", "cmd-2", 2), 2, 41)
    assert out.changes == [] and out.state.last_control_offset == 40


def test_ahead_of_compares_both_input_streams():
    """The state is ahead when it recorded a user event or a control message past what the owner
    processed in that stream, and not otherwise."""
    st = UserState("s", "u", last_offset=10, last_control_offset=5)
    assert not ahead_of(st, 10, 5)
    assert ahead_of(st, 9, 5)
    assert ahead_of(st, 10, 4)
    assert not ahead_of(UserState("s", "u"), -1, -1)


def test_current_changes_reissue_every_recorded_fact_byte_identical_oldest_first():
    """``current_changes`` re-creates the last change of each segment exactly as first emitted,
    ordered by emission time."""
    e1 = ev("e1", "USER_CREATED", {"department": "Sales"})
    o1 = apply_user_event(None, e1, 1, ACTIVE, 1_000)
    e2 = ev("e2", "USER_UPDATED", {"country": "DE"})
    o2 = apply_user_event(o1.state, e2, 2, ACTIVE, 2_000)
    assert summary(o1.changes) == [("sales", "ADDED")] and summary(o2.changes) == [("emea", "ADDED")]
    again = current_changes(decode_state(encode_state(o2.state)))
    assert wire(again) == wire(o1.changes) + wire(o2.changes)


# ------------------------------------------------------------ timer ticks

DAY = 86_400
R_NEW = ("r-new", rule({"field": "timecreated", "op": "within_last", "value": "P30D"}))
TIMED = ActiveRuleSet.build({"new": (R_NEW,), "sales": (R_SALES,)})
T0 = 1_700_000_000


def newbie() -> UserState:
    """A user created at T0, evaluated at T0: a member of 'new' until T0 + 30 days."""
    out = apply_user_event(None, ev("e1", "USER_CREATED", {"timecreated": T0}), 1, TIMED, T0 * 1000)
    assert summary(out.changes) == [("new", "ADDED")]
    return out.state


def test_tick_at_the_due_instant_removes_and_records_the_tick():
    """The engine schedules the window's end; a tick at that instant removes the user with cause
    TIME_ELAPSED, records the tick's control offset and drops the timer (nothing left to flip)."""
    st = newbie()
    due = st.next_check_at
    assert T0 + 30 * DAY <= due <= T0 + 30 * DAY + 1
    out = apply_tick(st, TIMED, due, due * 1000, control_offset=77)
    assert summary(out.changes) == [("new", "REMOVED")]
    assert out.changes[0].cause_kind == "TIME_ELAPSED" and out.changes[0].cause_id == f"time:{due}"
    assert out.state.last_control_offset == 77
    assert out.timer == (due, 0)


def test_tick_for_a_timer_the_state_no_longer_expects_is_stale():
    """A timer left over from an older schedule changes nothing."""
    st = newbie()
    out = apply_tick(st, TIMED, st.next_check_at - 5, T0 * 1000 + 1, control_offset=3)
    assert out.status == "STALE" and out.changes == [] and not out.dirty


def test_reissue_tick_recreates_the_ticks_changes_byte_identical():
    """The replay of a tick whose timer is gone re-issues exactly what the tick emitted."""
    st = newbie()
    due = st.next_check_at
    out = apply_tick(st, TIMED, due, due * 1000 + 250, control_offset=9)
    stored = decode_state(encode_state(out.state))
    assert wire(reissue_tick(stored, due)) == wire(out.changes)
    assert reissue_tick(stored, due - 1) == []  # another timer's cause: nothing of it stands


def test_reissue_tick_skips_changes_a_later_event_superseded():
    """Once a later event re-added the user to 'new' (a corrected timecreated), the tick's REMOVED
    no longer stands and is not re-issued; an untouched segment's tick change would be."""
    st = newbie()
    due = st.next_check_at
    out = apply_tick(st, TIMED, due, due * 1000, control_offset=9)
    later = apply_user_event(out.state, ev("e2", "USER_UPDATED", {"timecreated": due - DAY}), 2, TIMED,
                             due * 1000 + 10)
    assert summary(later.changes) == [("new", "ADDED")]
    assert reissue_tick(later.state, due) == []


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(_step, min_size=1, max_size=12))
def test_index_path_emits_byte_identical_changes_and_states(steps):
    """The same events through the rule index and through every rule: identical change bytes and
    identical stored states after every step (change ids, emission times, matched rules)."""
    a = b = None
    for i, (etype, patch, _) in enumerate(steps):
        e = ev(f"e{i}", etype, patch, at=i)
        oa = apply_user_event(a, e, i + 1, ACTIVE, 1_000 + i, use_index=False)
        ob = apply_user_event(b, e, i + 1, ACTIVE, 1_000 + i, use_index=True)
        assert wire(oa.changes) == wire(ob.changes)
        assert encode_state(oa.state) == encode_state(ob.state)
        a, b = oa.state, ob.state


def test_backfill_rerun_reissues_its_recorded_change_before_superseding_it():
    """A backfill re-run after a crash, with a catalog that moved on since (the user no longer
    matches): the change the first run recorded (and the dead worker may never have sent) is
    re-issued byte-identical first, then the REMOVED that supersedes it."""
    st = stored_user({"department": "Sales"})
    cause = Cause("RULE_CREATED", "cmd-7", 5)
    first = apply_backfill(st, ACTIVE, [("sales", RECONCILE)], cause, 100, 40)
    assert summary(first.changes) == [("sales", "ADDED")]
    moved_on = ActiveRuleSet.build({"sales": (("r-other", rule({"field": "department", "op": "equals", "value": "HR"})),)})
    rerun = apply_backfill(decode_state(encode_state(first.state)), moved_on, [("sales", RECONCILE)], cause, 200, 40)
    assert [c.change for c in rerun.changes] == ["ADDED", "REMOVED"]
    assert wire(rerun.changes[:1]) == wire(first.changes)
    plain = apply_backfill(decode_state(encode_state(first.state)), ACTIVE, [("sales", RECONCILE)], cause, 300, 40)
    assert wire(plain.changes) == wire(first.changes)  # unchanged catalog: the same change once


_EVENT = st.tuples(
    st.sampled_from(["e1", "e2", "e3", "e4", "e5", "e6"]),  # few ids: duplicates happen
    st.sampled_from(["USER_CREATED", "USER_UPDATED", "USER_UPDATED", "USER_DELETED"]),
    st.dictionaries(st.sampled_from(["department", "country", "city"]),
                    st.one_of(st.none(), st.sampled_from(["Sales", "HR", "DE", "FR", "London", "Oslo"])),
                    max_size=3),
    st.integers(min_value=0, max_value=2),  # offset step: 0 repeats the previous offset (a replay)
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_EVENT, max_size=12))
def test_folding_events_then_rebuilding_equals_streaming_them(events) -> None:
    """A rebuild folds a user's events without evaluating rules (``fold_user_event``) and
    evaluates once at the end; the folded profile, offsets, remembered ids and the final
    membership equal applying every event on the streaming path, replays and duplicates
    included."""
    from processor.membership.engine import fold_user_event
    from processor.membership.rebuild import DIFF, rebuild_user

    live: UserState | None = None
    folded = UserState(SITE, USER)
    offset = 0
    for eid, etype, profile, step in events:
        offset += step
        e = ev(eid, etype, profile)
        live = apply_user_event(live, e, offset, ACTIVE, 5_000).state
        fold_user_event(folded, e, offset)
    rebuild_user(folded, ACTIVE, {}, DIFF, "run", 5_000)
    if live is None:
        assert members(folded) == set()
        return
    assert (folded.profile, folded.deleted, folded.last_offset, folded.recent_event_ids) == (
        live.profile, live.deleted, live.last_offset, live.recent_event_ids)
    assert members(folded) == members(live)
