"""Unit tests for tests/support/oracle/checker.py (output vs oracle, as a consumer folds it).

Behaviour: changes are de-duplicated by change_id (first delivery wins) and
applied in the given order (ADDED = member now, REMOVED = not a member now);
the folded membership is compared with the expected one. Reported: MISSING
expected members, SPURIOUS members (also in segments not expected at all),
CONFLICTs (same change_id, different content -- naming the fields), and
REDUNDANT transitions (ADDED for a member, REMOVED for a non-member; can be
turned off). Counts: changes consumed, unique ids, duplicates. ``ok`` is
true iff nothing is reported; ``str()`` lists at most 20 differences.
"""

from __future__ import annotations

import dataclasses

import pytest

from processor.contract.models import MembershipChange
from tests.support.oracle import Report, check

_n = [0]


def ch(user: str, change: str = "ADDED", seg: str = "sales", site: str = "s1", change_id: str | None = None,
       cause_id: str = "e1", emitted_at: int = 5) -> MembershipChange:
    _n[0] += 1
    return MembershipChange(change_id or f"id-{_n[0]}", site, seg, user, change, "USER_CREATED", cause_id,
                            ("r1",) if change == "ADDED" else (), 1, emitted_at)


def test_matching_output_is_ok_and_counted():
    """An output that folds to the expected membership is ok, with counts."""
    a, b = ch("u1"), ch("u2")
    r = check([a, b, ch("u2", "REMOVED"), ch("u2")], {("s1", "sales"): {"u1", "u2"}})
    assert r.ok and bool(r)
    assert (r.changes, r.unique, r.duplicates, r.expected_members, r.actual_members) == (4, 4, 0, 2, 2)
    assert str(r).startswith("membership check OK")


def test_order_matters_per_user():
    """ADDED then REMOVED leaves a non-member; REMOVED then ADDED a member."""
    assert check([ch("u1"), ch("u1", "REMOVED")], {("s1", "sales"): set()}).ok
    r = check([ch("u1"), ch("u1", "REMOVED")], {("s1", "sales"): {"u1"}})
    assert [d.kind for d in r.differences] == ["MISSING"]
    assert "REMOVED" in r.missing[0].detail


def test_missing_added():
    """An expected member never ADDED is MISSING (and the text says no change was emitted)."""
    r = check([ch("u1")], {("s1", "sales"): {"u1", "u2"}, ("s1", "emea"): {"u3"}})
    assert not r.ok
    assert [(d.kind, d.segment_id, d.user_id) for d in r.differences] == [
        ("MISSING", "emea", "u3"), ("MISSING", "sales", "u2")]
    assert "no change was ever emitted" in r.missing[0].detail


def test_spurious_members():
    """A member the oracle does not expect is SPURIOUS, also in a segment absent from expected."""
    last = ch("u9", seg="library", cause_id="cmd-7")
    r = check([ch("u1"), ch("u2"), last], {("s1", "sales"): {"u1"}})
    assert [(d.kind, d.segment_id, d.user_id) for d in r.spurious] == [("SPURIOUS", "library", "u9"),
                                                                       ("SPURIOUS", "sales", "u2")]
    assert "not managed at the end" in r.spurious[0].detail and "cmd-7" in r.spurious[0].detail
    assert r.spurious[0].change == last


def test_identical_redeliveries_are_deduplicated():
    """The same change delivered again is counted as a duplicate and applied once."""
    a = ch("u1")
    removed = ch("u1", "REMOVED")
    r = check([a, a, removed, a, removed], {("s1", "sales"): set()})
    assert r.ok
    assert (r.changes, r.unique, r.duplicates) == (5, 2, 3)


@pytest.mark.parametrize("field,value", [("user_id", "u2"), ("segment_id", "emea"), ("change", "REMOVED"),
                                         ("cause_id", "other"), ("emitted_at", 99), ("site_id", "s2"),
                                         ("matched_rule_ids", ("r2",)), ("occurred_at", 7),
                                         ("cause_kind", "RULE_CREATED")])
def test_conflicting_duplicate(field, value):
    """Same change_id with different content is a CONFLICT naming the field; the first delivery wins."""
    a = ch("u1", change_id="X")
    b = dataclasses.replace(a, **{field: value})
    r = check([a, b], {("s1", "sales"): {"u1"}}, transitions=False)
    assert [d.kind for d in r.differences] == ["CONFLICT"]
    assert field in r.conflicts[0].detail and "X" in r.conflicts[0].detail
    assert r.duplicates == 1 and r.unique == 1


def test_redundant_transitions():
    """ADDED for a member and REMOVED for a non-member are REDUNDANT (contract: only real changes)."""
    r = check([ch("u1"), ch("u1"), ch("u2", "REMOVED")], {("s1", "sales"): {"u1"}})
    assert [(d.kind, d.user_id) for d in r.differences] == [("REDUNDANT", "u1"), ("REDUNDANT", "u2")]
    assert "already a member" in r.redundant[0].detail and "not a member" in r.redundant[1].detail
    assert check([ch("u1"), ch("u1"), ch("u2", "REMOVED")], {("s1", "sales"): {"u1"}}, transitions=False).ok


def test_sites_filter():
    """With ``sites``, other sites' changes (a shared topic) are ignored entirely."""
    noise = [ch("u1", site="other"), ch("u2", site="other")]
    assert check([*noise, ch("u1")], {("s1", "sales"): {"u1"}}, sites=["s1"]).ok
    r = check([*noise, ch("u1")], {("s1", "sales"): {"u1"}})
    assert [(d.kind, d.site_id) for d in r.differences] == [("SPURIOUS", "other"), ("SPURIOUS", "other")]


def test_accepts_any_iterable_and_empty():
    """A generator works; no output and no expectation is ok, empty expected segments too."""
    assert check(iter(()), {}).ok
    assert check((c for c in [ch("u1"), ch("u1", "REMOVED")]), {("s1", "sales"): set()}).ok


def test_str_lists_at_most_20_differences():
    """The text has a summary line, 20 differences and '... and N more'."""
    r = check([], {("s1", "sales"): {f"u{i:02d}" for i in range(25)}})
    text = str(r).splitlines()
    assert text[0].startswith("membership check FAILED: 25 difference(s)")
    assert "missing=25" in text[0]
    assert len(text) == 1 + 20 + 1 and text[-1].strip() == "... and 5 more"
    assert "MISSING" in text[1] and "s1/sales user u00" in text[1]


def test_report_is_plain_data():
    """Report exposes the difference lists and a summary for logs and benches."""
    r = Report()
    assert r.ok and r.differences == [] and "changes=0" in r.summary()
