"""The profile values recorded with each change (processor/membership/evidence.py, issue 21 part 4).

A change carries what its decision read: ADDED the fields of the rules that matched, REMOVED those
of every active rule of the segment, ``suspended`` when set. It is kept in the user's fact, so a
change re-emitted later (replay, re-confirmation) is byte-identical even after the profile moved
on, and it survives the state's encoding and the wire.
"""

from __future__ import annotations

import json

from hypothesis import example, given
from hypothesis import strategies as st

from processor.catalog.active import ActiveRuleSet
from processor.contract.codec import decode_membership_change, encode_membership_change
from processor.contract.models import UserEvent
from processor.membership.engine import Cause, apply_backfill, apply_user_event, current_changes
from processor.membership.evidence import MAX_CHARS, as_json, evidence_of, profile_of
from processor.rules.compiler import compile_condition
from processor.rules.fields import StaticFields
from processor.state.user_state import decode_state, encode_state

FIELDS = StaticFields()


def rule(cond: dict):  # type: ignore[no-untyped-def,type-arg]
    return compile_condition(json.dumps(cond), FIELDS)


SALES = ("r-sales", rule({"field": "department", "op": "equals", "value": "Sales"}))
PARIS = ("r-paris", rule({"all": [{"field": "city", "op": "equals", "value": "Paris"},
                                  {"field": "country", "op": "equals", "value": "FR"}]}))
ACTIVE = ActiveRuleSet.build({"team": (SALES, PARIS)})


def ev(eid: str, profile: dict, etype: str = "USER_UPDATED") -> UserEvent:  # type: ignore[type-arg]
    return UserEvent(eid, etype, "s", "bob", 1_000, profile)


def test_added_records_only_the_fields_of_the_rules_that_matched() -> None:
    out = apply_user_event(None, ev("e1", {"department": "Sales", "city": "Oslo", "lastname": "B"}, "USER_CREATED"),
                           0, ACTIVE, 5_000)
    (ch,) = out.changes
    assert (ch.change, ch.matched_rule_ids) == ("ADDED", ("r-sales",))
    assert ch.evidence == (("department", '"Sales"'),)  # not city (r-paris did not match), not lastname


def test_removed_records_every_field_the_segment_rules_read() -> None:
    st = apply_user_event(None, ev("e1", {"department": "Sales", "city": "Oslo"}, "USER_CREATED"), 0, ACTIVE,
                          5_000).state
    (ch,) = apply_user_event(st, ev("e2", {"department": "HR"}), 1, ACTIVE, 6_000).changes
    assert ch.change == "REMOVED"
    assert ch.evidence == (("city", '"Oslo"'), ("department", '"HR"'))  # country: not in the profile


def test_suspension_is_recorded_as_the_reason_for_a_removal() -> None:
    st = apply_user_event(None, ev("e1", {"department": "Sales"}, "USER_CREATED"), 0, ACTIVE, 5_000).state
    (ch,) = apply_user_event(st, ev("e2", {"suspended": True}), 1, ACTIVE, 6_000).changes
    assert ch.change == "REMOVED"
    assert dict(ch.evidence or ()) == {"department": '"Sales"', "suspended": "true"}


def test_values_are_json_text_and_long_strings_are_cut() -> None:
    rules = ActiveRuleSet.build({"g": (("r", rule({"field": "description", "op": "contains", "value": "x"})),
                                       ("n", rule({"field": "interests", "op": "any_of", "value": ["a"]})))})
    got = dict(evidence_of(rules, "g", (), {"description": "x" * 2000, "interests": ["a", "b"]}))
    assert got["interests"] == '["a","b"]'
    assert json.loads(got["description"]) == "x" * MAX_CHARS + "…"
    assert profile_of(got.items()) == {"description": "x" * MAX_CHARS + "…", "interests": ["a", "b"]}


def test_a_reemitted_change_keeps_its_evidence_after_the_profile_moved_on() -> None:
    """Re-confirmation re-emits the recorded change: same bytes, the values of its own time."""
    out = apply_user_event(None, ev("e1", {"department": "Sales"}, "USER_CREATED"), 0, ACTIVE, 5_000)
    first = encode_membership_change(out.changes[0])
    st = decode_state(encode_state(out.state))  # through the stored format
    st.profile["department"] = "Sales"  # unchanged membership, but ...
    st.profile["city"] = "Paris"  # ... values the change did not read
    (again,) = current_changes(st)
    assert encode_membership_change(again) == first
    assert decode_membership_change(first).evidence == (("department", '"Sales"'),)


def test_a_backfill_for_a_removed_segment_records_no_values() -> None:
    st = apply_user_event(None, ev("e1", {"department": "Sales"}, "USER_CREATED"), 0, ACTIVE, 5_000).state
    out = apply_backfill(st, ActiveRuleSet(), [("team", "REMOVE_ALL")], Cause("SEGMENT_DELETED", "c-1", 7), 8_000)
    (ch,) = out.changes
    assert (ch.change, ch.evidence) == ("REMOVED", ())


@example('say "hi"')
@example("back\\slash")
@example("line\nbreak")
@example("tab\t")
@example("x\u2028y")
@example("é" * 501)
@example(True)
@example(1.5)
@given(st.one_of(st.text(max_size=600), st.integers(), st.floats(allow_nan=False), st.booleans(),
                 st.lists(st.text(max_size=20), max_size=3)))
def test_as_json_writes_what_json_dumps_writes(value: object) -> None:
    """Any value is recorded as json.dumps writes it (compact, UTF-8 kept; long strings cut),
    including the strings as_json writes without calling json.dumps."""
    import json as _json

    cut = value[:MAX_CHARS] + "…" if isinstance(value, str) and len(value) > MAX_CHARS else value
    if isinstance(value, list):
        cut = [v[:MAX_CHARS] + "…" if len(v) > MAX_CHARS else v for v in value]
    assert as_json(value) == _json.dumps(cut, ensure_ascii=False, separators=(",", ":"))  # type: ignore[arg-type]
