"""The cohort write path against the Moodle double: batching, warnings, id resolution, split-and-retry."""

from __future__ import annotations

import pytest

from processor.connectors.moodle.cohorts import Assertion, CohortWriter, Resolver
from processor.connectors.moodle.mapping import SiteMapping
from processor.connectors.moodle.ws import MoodleClient, MoodleFatal
from tests.support.moodle_double import CAP_ASSIGN, MoodleDouble


def writer(moodle: MoodleDouble, user_field: str = "id", batch: int = 100, **cohorts: str) -> CohortWriter:
    client = MoodleClient(moodle.url, moodle.token)
    return CohortWriter(client, Resolver(client, SiteMapping("s", user_field, cohorts)), batch_size=batch)


def test_adds_are_batched_and_reapplying_them_is_harmless(moodle: MoodleDouble) -> None:
    moodle.add_cohort("sales")
    users = [moodle.add_user(f"u{i}") for i in range(250)]
    w = writer(moodle, batch=100)
    first = w.apply([Assertion("sales", str(u.id), True) for u in users])
    assert len(first.applied) == 250 and not first.failed
    assert len(moodle.calls_to("core_cohort_add_cohort_members")) == 3
    assert moodle.member_ids("sales") == {u.id for u in users}
    again = w.apply([Assertion("sales", str(u.id), True) for u in users[:10]])
    assert len(again.already) == 10 and not again.applied and not again.failed
    assert all(w["warningcode"] == "3" for w in moodle.calls_to("core_cohort_add_cohort_members")[-1].warnings)
    assert moodle.errors() == []


def test_add_to_a_missing_cohort_fails_that_record_only(moodle: MoodleDouble) -> None:
    moodle.add_cohort("sales")
    a, b = moodle.add_user("a"), moodle.add_user("b")
    rep = writer(moodle).apply([Assertion("sales", str(a.id), True), Assertion("nope", str(b.id), True)])
    assert [x.user_id for x in rep.applied] == [str(a.id)]
    assert [(f.assertion.user_id, f.code) for f in rep.failed] == [(str(b.id), "UNKNOWN_COHORT")]
    assert "--cohort" in rep.failed[0].message
    assert moodle.member_ids("sales") == {a.id}


def test_one_deleted_user_fails_moodles_whole_delete_call_so_it_is_split(moodle: MoodleDouble) -> None:
    """core_cohort_delete_cohort_members reads users with MUST_EXIST in one transaction."""
    c = moodle.add_cohort("sales")
    users = [moodle.add_user(f"u{i}") for i in range(8)]
    for u in users:
        moodle.members[c.id][u.id] = 0.0
    gone = users[5]
    moodle.delete_user(gone.id)
    moodle.members[c.id][gone.id] = 0.0  # a stale membership row Moodle would keep
    rep = writer(moodle).apply([Assertion("sales", str(u.id), False) for u in users])
    assert sorted(int(a.user_id) for a in rep.applied) == sorted(u.id for u in users if u is not gone)
    assert [(f.assertion.user_id, f.code) for f in rep.failed] == [(str(gone.id), "USER_NOT_FOUND")]
    assert rep.splits >= 1
    refused = [x for x in moodle.calls_to("core_cohort_delete_cohort_members") if x.error]
    assert refused and all(x.error == "invalidrecord" for x in refused)
    assert moodle.member_ids("sales") == {gone.id}


def test_username_mapping_resolves_ids_once_and_caches_them(moodle: MoodleDouble) -> None:
    c = moodle.add_cohort("sales")
    alice = moodle.add_user("alice")
    moodle.members[c.id][alice.id] = 0.0
    w = writer(moodle, user_field="username")
    assert len(w.apply([Assertion("sales", "alice", False)]).applied) == 1
    assert len(w.apply([Assertion("sales", "alice", True)]).applied) == 1
    assert len(w.apply([Assertion("sales", "alice", False)]).applied) == 1
    assert len(moodle.calls_to("core_user_get_users_by_field")) == 1
    assert len(moodle.calls_to("core_cohort_get_cohorts")) == 1
    assert moodle.member_ids("sales") == set()


def test_idnumber_mapping_adds_by_resolved_id(moodle: MoodleDouble) -> None:
    """add_cohort_members accepts usertype id or username only (idnumber is warning 1)."""
    moodle.add_cohort("sales")
    bob = moodle.add_user("bob", idnumber="E-17")
    rep = writer(moodle, user_field="idnumber").apply([Assertion("sales", "E-17", True),
                                                        Assertion("sales", "E-404", True)])
    assert [a.user_id for a in rep.applied] == ["E-17"]
    assert [(f.assertion.user_id, f.code) for f in rep.failed] == [("E-404", "USER_NOT_FOUND")]
    assert moodle.member_ids("sales") == {bob.id}


def test_mapped_segment_and_unknown_cohort_on_removal(moodle: MoodleDouble) -> None:
    c = moodle.add_cohort("COH-SALES")
    alice = moodle.add_user("alice")
    moodle.members[c.id][alice.id] = 0.0
    rep = writer(moodle, sales="COH-SALES").apply([Assertion("sales", str(alice.id), False),
                                                   Assertion("ghost", str(alice.id), False)])
    assert [a.segment_id for a in rep.applied] == ["sales"]
    assert [(f.assertion.segment_id, f.code) for f in rep.failed] == [("ghost", "UNKNOWN_COHORT")]
    assert moodle.calls_to("core_cohort_search_cohorts"), "an unknown idnumber is searched before giving up"
    assert moodle.member_ids("COH-SALES") == set()


def test_a_missing_capability_stops_and_applies_nothing(moodle: MoodleDouble) -> None:
    moodle.add_cohort("sales")
    users = [moodle.add_user(f"u{i}") for i in range(3)]
    moodle.capabilities.discard(CAP_ASSIGN)
    with pytest.raises(MoodleFatal):
        writer(moodle).apply([Assertion("sales", str(u.id), True) for u in users])
    assert moodle.member_ids("sales") == set()
