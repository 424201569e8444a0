"""Unit tests for processor/state/members.py: members-tab entries derived from user states.

The entries are not changelogged, so whatever sequence of states a partition restores, folding
the derived writes must leave exactly the entries of the last state.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from processor.state.keys import member_key, timer_key, user_key
from processor.state.members import member_writes, restored_writes
from processor.state.user_state import Fact, UserState, encode_state

SEGMENTS = ("a", "b", "c")


def fact(member: bool, at: int, rules: tuple[str, ...] = ("r1",), cause: str = "USER_UPDATED") -> Fact:
    return Fact(member, f"id-{at}", "ADDED" if member else "REMOVED", cause, f"c-{at}", rules if member else (),
                at, at)


def state(facts: dict[str, Fact]) -> UserState:
    return UserState("site", "u1", facts=facts)


def fold(entries: dict[bytes, bytes], writes) -> dict[bytes, bytes]:
    for k, v in writes:
        if v is None:
            entries.pop(k, None)
        else:
            entries[k] = v
    return entries


def test_a_new_member_gets_an_entry_with_since_rules_and_cause():
    """The entry says since when (the change's emission time), which rules matched and why."""
    writes = member_writes(None, state({"a": fact(True, 7, ("r1", "r2"), "RULE_CREATED"), "b": fact(False, 8)}))
    assert [(k, json.loads(v)) for k, v in writes] == [
        (member_key("site", "a", "u1"), {"since": 7, "rules": ["r1", "r2"], "cause": "RULE_CREATED"})]


def test_leaving_deletes_and_unchanged_writes_nothing():
    """A member that left loses its entry; an unchanged member is not rewritten."""
    old = state({"a": fact(True, 1), "b": fact(True, 2)})
    new = state({"a": fact(True, 1), "b": fact(False, 3)})
    assert member_writes(old, new) == [(member_key("site", "b", "u1"), None)]
    assert member_writes(new, new) == []


def test_only_user_records_derive_entries():
    """Timer keys and identical re-deliveries of a state derive nothing; a tombstone removes all."""
    raw = encode_state(state({"a": fact(True, 1)}))
    assert restored_writes(timer_key(5, user_key("site", "u1")), None, b"") == []
    assert restored_writes(user_key("site", "u1"), raw, raw) == []
    assert restored_writes(user_key("site", "u1"), raw, None) == [(member_key("site", "a", "u1"), None)]


facts = st.dictionaries(st.sampled_from(SEGMENTS),
                        st.builds(fact, st.booleans(), st.integers(1, 50),
                                  st.sampled_from([("r1",), ("r1", "r2")]), st.sampled_from(["X", "Y"])))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), facts), min_size=1, max_size=8))
def test_folding_restored_writes_leaves_the_last_states_entries(history):
    """Whatever chain of states (and deletions) a partition restores, the folded writes equal the
    entries derived from scratch for the last state."""
    key = user_key("site", "u1")
    entries: dict[bytes, bytes] = {}
    prev: bytes | None = None
    for f in history:
        raw = None if f is None else encode_state(state(f))
        fold(entries, restored_writes(key, prev, raw))
        prev = raw
    last = history[-1]
    assert entries == fold({}, member_writes(None, state(last) if last is not None else None))
