"""Unit tests for tests/support/oracle/oracle.py (expected membership from the final catalog and profiles).

Behaviour: commands are decided in order against the catalog of the moment
(REJECTED ones change nothing, a re-sent command id is ignored); each
user's events are merged in order (USER_CREATED replaces, USER_UPDATED
patches and null clears, USER_DELETED wipes; an already applied event id is
skipped); then a user is a member of a *managed* segment iff not deleted,
not suspended, and some enabled, non-broken rule of the segment matches.
Expected results below are derived by hand. With ``strict`` the oracle
refuses workloads whose answer depends on timing (a frozen segment, a
re-send outside the de-duplication window, a time-relative rule), and the
answer never depends on how different users' events interleave with each
other or with commands.
"""

from __future__ import annotations

import json
import random

import pytest

from processor.contract.models import Actor, Command, UserEvent
from tests.support.oracle import COMMAND, EVENT, OracleError, expected_membership, fold, generate

ADMIN, SYSTEM = ("site_admin",), ("system",)
SALES = {"field": "department", "op": "equals", "value": "Sales"}
PARIS = {"field": "city", "op": "equals", "value": "Paris"}


class Script:
    """Hand-written steps with deterministic ids."""

    def __init__(self, site: str = "s1") -> None:
        self.site = site
        self.steps: list = []
        self.n = 0

    def cmd(self, ptype: str, roles=ADMIN, site: str | None = None, command_id: str | None = None, **payload):
        self.n += 1
        if "condition" in payload:
            payload["condition_json"] = json.dumps(payload.pop("condition"))
        if ptype in ("CreateRule", "UpdateRule"):
            payload.setdefault("name", payload["rule_id"])
            payload.setdefault("enabled", True)
        if ptype == "UpsertProfileField":
            payload.setdefault("name", payload["shortname"])
            payload.setdefault("options", [])
        if ptype == "UpsertSegment":
            payload.setdefault("name", payload["segment_id"].title())
        if ptype == "DisableSegmentAutomation":
            payload.setdefault("remove_members", False)
        c = Command(command_id or f"c{self.n}", site or self.site, 1000 + self.n, Actor("t", roles), ptype,
                    payload)
        self.steps.append((COMMAND, c))
        return self

    def ev(self, user: str, etype: str = "USER_CREATED", event_id: str | None = None, site: str | None = None,
           **profile):
        self.n += 1
        e = UserEvent(event_id or f"e{self.n}", etype, site or self.site, user, 1000 + self.n, profile)
        self.steps.append((EVENT, e))
        return self

    def segment(self, seg: str = "sales", *rules: tuple[str, dict], site: str | None = None):
        self.cmd("UpsertSegment", SYSTEM, site=site, segment_id=seg)
        self.cmd("EnableSegmentAutomation", site=site, segment_id=seg)
        for rid, cond in rules:
            self.cmd("CreateRule", site=site, rule_id=rid, segment_id=seg, condition=cond)
        return self

    def expected(self, strict: bool = True):
        return expected_membership(self.steps, strict=strict)


def test_basic_rule_with_text_normalisation():
    """department equals "Sales" matches "Sales" and " sales " (case/whitespace ignored), not Marketing."""
    s = Script().segment("sales", ("r-sales", SALES))
    s.ev("u1", department="Sales").ev("u2", department="Marketing").ev("u3", department=" sales ")
    assert s.expected() == {("s1", "sales"): {"u1", "u3"}}


def test_managed_segment_without_members_is_present_and_unmanaged_absent():
    """Every managed segment is a key (possibly empty); unmanaged segments are not keys."""
    s = Script().segment("sales", ("r-sales", SALES)).cmd("UpsertSegment", SYSTEM, segment_id="library")
    s.ev("u1", department="Legal")
    assert s.expected() == {("s1", "sales"): set()}


def test_patch_null_clears_and_patch_of_unknown_user_becomes_profile():
    """USER_UPDATED: a null clears a field (u1 leaves); a never-seen user's patch is the profile (u2)."""
    s = Script().segment("sales", ("r-sales", SALES))
    s.ev("u1", department="Sales", city="Paris").ev("u1", "USER_UPDATED", department=None)
    s.ev("u2", "USER_UPDATED", department="Sales", city=None)
    s.ev("u3", department="Sales").ev("u3", "USER_UPDATED", city="Paris")  # absent keys keep their value
    assert s.expected() == {("s1", "sales"): {"u2", "u3"}}


def test_created_replaces_the_profile():
    """A second USER_CREATED is a resync: keys it lacks are gone."""
    s = Script().segment("sales", ("r-sales", SALES))
    s.ev("u1", department="Sales").ev("u1", city="Paris")
    assert s.expected() == {("s1", "sales"): set()}


def test_delete_and_recreate():
    """A deleted user is nobody's member; re-created (or patched) afterwards, the new profile counts."""
    s = Script().segment("sales", ("r-sales", SALES))
    s.ev("u1", department="Sales").ev("u1", "USER_DELETED")
    s.ev("u2", department="Sales").ev("u2", "USER_DELETED").ev("u2", department="Sales")
    s.ev("u3", department="Sales").ev("u3", "USER_DELETED").ev("u3", "USER_UPDATED", department="Sales")
    s.ev("u4", "USER_DELETED")
    assert s.expected() == {("s1", "sales"): {"u2", "u3"}}


@pytest.mark.parametrize("flag,member", [(True, False), (1, False), ("1", False), ("yes", False),
                                         (False, True), (0, True), ("0", True), (None, True)])
def test_suspended_users_are_excluded(flag, member):
    """Truthy ``suspended`` (True, 1, "1", "yes") excludes the user; falsy or missing does not."""
    s = Script().segment("sales", ("r-sales", SALES)).ev("u1", department="Sales", suspended=flag)
    assert s.expected() == {("s1", "sales"): {"u1"} if member else set()}


def test_any_enabled_rule_counts_and_disabled_rules_do_not():
    """Membership is the union of the segment's enabled rules; a disabled rule matches nobody."""
    s = Script().segment("emea", ("r-paris", PARIS))
    s.cmd("CreateRule", rule_id="r-sales", segment_id="emea", condition=SALES, enabled=False)
    s.cmd("CreateRule", rule_id="r-de", segment_id="emea", condition={"field": "country", "op": "in",
                                                                      "value": ["DE", "AT"]})
    s.ev("u1", city="Paris").ev("u2", department="Sales").ev("u3", country="de").ev("u4", country="FR")
    assert s.expected() == {("s1", "emea"): {"u1", "u3"}}


def test_nested_condition_and_custom_fields():
    """all/any/not over MENU, NUMBER, CHECKBOX and MULTISELECT custom fields, by hand."""
    s = Script()
    s.cmd("UpsertProfileField", SYSTEM, shortname="track", datatype="MENU", options=["Staff", "Alumni"])
    s.cmd("UpsertProfileField", SYSTEM, shortname="credits", datatype="NUMBER")
    s.cmd("UpsertProfileField", SYSTEM, shortname="mentor", datatype="CHECKBOX")
    s.cmd("UpsertProfileField", SYSTEM, shortname="skills", datatype="MULTISELECT", options=["sql", "python"])
    cond = {"all": [
        {"field": "profile_field_track", "op": "in", "value": ["Staff", "Alumni"]},
        {"any": [{"field": "profile_field_credits", "op": "gt", "value": 30},
                 {"field": "profile_field_mentor", "op": "is_checked"}]},
        {"not": {"field": "profile_field_skills", "op": "any_of", "value": ["sql"]}},
    ]}
    s.segment("g", ("r", cond))
    s.ev("u1", profile_field_track="staff", profile_field_credits="45")  # 45 > 30
    s.ev("u2", profile_field_track="Alumni", profile_field_credits=10, profile_field_mentor="yes")
    s.ev("u3", profile_field_track="Alumni", profile_field_credits=99, profile_field_skills=["SQL"])  # not
    s.ev("u4", profile_field_track="Student", profile_field_credits=99)  # track
    s.ev("u5", profile_field_track="Staff", profile_field_credits=30)  # 30 is not > 30
    assert s.expected() == {("s1", "g"): {"u1", "u2"}}


def test_rejected_commands_change_nothing():
    """Rules on unknown fields, bad values, non-admins or unmanaged segments are REJECTED and ignored."""
    s = Script().segment("sales", ("r-sales", SALES)).cmd("UpsertSegment", SYSTEM, segment_id="library")
    empty_city = {"field": "city", "op": "is_empty"}
    typo = {"field": "departmnt", "op": "is_empty"}
    s.cmd("CreateRule", rule_id="r-bad", segment_id="sales", condition=typo)
    s.cmd("CreateRule", SYSTEM, rule_id="r-sys", segment_id="sales", condition=empty_city)
    s.cmd("CreateRule", rule_id="r-lib", segment_id="library", condition=empty_city)
    s.cmd("DeleteRule", rule_id="nope")
    s.ev("u1").ev("u2", department="Sales")
    folded = fold(s.steps)
    assert folded.outcomes[-4:] == ["UNKNOWN_FIELD", "FORBIDDEN", "SEGMENT_NOT_MANAGED", "NOT_FOUND"]
    assert s.expected() == {("s1", "sales"): {"u2"}}


def test_duplicate_command_id_is_ignored():
    """A re-sent command id is answered with the original result: its (different) payload is not applied."""
    s = Script().segment("sales", ("r-sales", SALES))
    s.cmd("UpdateRule", command_id="c-up", rule_id="r-sales", segment_id="sales", condition=PARIS)
    s.cmd("UpdateRule", command_id="c-up", rule_id="r-sales", segment_id="sales", condition=SALES)
    s.ev("u1", department="Sales").ev("u2", city="Paris")
    assert fold(s.steps).outcomes[-2:] == ["ACCEPTED", "DUPLICATE"]
    assert s.expected() == {("s1", "sales"): {"u2"}}


def test_duplicate_event_id_is_skipped():
    """Re-sending an applied event (same event_id) does not re-apply it: the later update stands."""
    s = Script().segment("sales", ("r-sales", SALES))
    s.ev("u1", event_id="e-create", department="Sales").ev("u1", "USER_UPDATED", department="Legal")
    s.ev("u1", event_id="e-create", department="Sales")
    s.ev("u2", event_id="e-x", department="Sales")  # same id on another user: that user's own event
    assert s.expected() == {("s1", "sales"): {"u2"}}


def test_rule_update_move_and_delete():
    """UpdateRule replaces the condition and may move the rule; DeleteRule removes it."""
    s = Script().segment("sales", ("r-sales", SALES)).segment("emea", ("r-paris", PARIS))
    s.ev("u1", department="Sales", city="Paris").ev("u2", department="Legal", city="Paris")
    s.cmd("UpdateRule", rule_id="r-sales", segment_id="emea", condition=SALES)
    s.cmd("DeleteRule", rule_id="r-paris")
    assert s.expected() == {("s1", "sales"): set(), ("s1", "emea"): {"u1"}}


def test_disable_with_and_without_remove_then_enable():
    """Disable(remove) drops the segment from the answer; disable(freeze) + enable is a managed segment."""
    s = Script().segment("sales", ("r-sales", SALES)).segment("emea", ("r-paris", PARIS))
    s.ev("u1", department="Sales", city="Paris")
    s.cmd("DisableSegmentAutomation", segment_id="sales", remove_members=True)
    s.cmd("DisableSegmentAutomation", segment_id="emea", remove_members=False)
    s.ev("u2", city="Paris")
    s.cmd("EnableSegmentAutomation", segment_id="emea")
    assert s.expected() == {("s1", "emea"): {"u1", "u2"}}


def test_frozen_segment_at_the_end_is_refused_in_strict_mode():
    """A segment left disabled without remove_members has timing-dependent members: OracleError;
    non-strict, it is simply absent (unmanaged)."""
    s = Script().segment("sales", ("r-sales", SALES)).ev("u1", department="Sales")
    s.cmd("DisableSegmentAutomation", segment_id="sales", remove_members=False)
    with pytest.raises(OracleError, match="frozen"):
        s.expected()
    assert s.expected(strict=False) == {}
    s.cmd("DeleteSegment", SYSTEM, segment_id="sales")  # deleting it settles it
    assert s.expected() == {}


def test_deleted_profile_field_breaks_rules_until_updated():
    """DeleteProfileField breaks the rules using it (even after the field is re-created) until UpdateRule."""
    s = Script()
    s.cmd("UpsertProfileField", SYSTEM, shortname="track", datatype="MENU", options=["Staff"])
    track = {"field": "profile_field_track", "op": "equals", "value": "Staff"}
    s.segment("staff", ("r-track", track), ("r-sales", SALES))
    s.ev("u1", profile_field_track="Staff").ev("u2", department="Sales")
    s.cmd("DeleteProfileField", SYSTEM, shortname="track")
    assert s.expected() == {("s1", "staff"): {"u2"}}
    s.cmd("UpsertProfileField", SYSTEM, shortname="track", datatype="MENU", options=["Staff"])
    assert s.expected() == {("s1", "staff"): {"u2"}}
    s.cmd("UpdateRule", rule_id="r-track", segment_id="staff", condition=track)
    assert s.expected() == {("s1", "staff"): {"u1", "u2"}}


def test_deleted_segment_and_recreation():
    """DeleteSegment drops it and its rules; re-created and enabled, it starts without rules."""
    s = Script().segment("sales", ("r-sales", SALES)).ev("u1", department="Sales")
    s.cmd("DeleteSegment", SYSTEM, segment_id="sales")
    assert s.expected() == {}
    s.segment("sales")
    assert s.expected() == {("s1", "sales"): set()}
    s.cmd("CreateRule", rule_id="r-sales", segment_id="sales", condition=SALES)  # the id is free again
    assert s.expected() == {("s1", "sales"): {"u1"}}


def test_sites_are_independent():
    """Same segment, rule and user ids on two sites never mix."""
    s = Script().segment("sales", ("r", SALES), site="a").segment("sales", ("r", PARIS), site="b")
    s.ev("u1", site="a", department="Sales").ev("u1", site="b", department="Sales")
    s.ev("u2", site="b", city="Paris")
    assert s.expected() == {("a", "sales"): {"u1"}, ("b", "sales"): {"u2"}}


def test_resend_outside_the_window_is_refused():
    """An event re-sent after 32 other applied events of the user would be re-applied: OracleError."""
    s = Script().segment("sales", ("r-sales", SALES)).ev("u1", event_id="old", department="Sales")
    for i in range(32):
        s.ev("u1", "USER_UPDATED", event_id=f"p{i}", city=f"c{i}")
    s.ev("u1", event_id="old", department="Sales")
    with pytest.raises(OracleError, match="re-sent"):
        s.expected()
    assert s.expected(strict=False) == {("s1", "sales"): {"u1"}}


def test_time_relative_rule_is_refused():
    """An active time-relative rule makes membership depend on the clock: OracleError."""
    s = Script().segment("recent", ("r", {"field": "lastaccess", "op": "within_last", "value": "P30D"}))
    with pytest.raises(OracleError, match="time-relative"):
        s.expected()


def test_unknown_step_kind():
    """Only ("command", Command) and ("event", UserEvent) steps exist."""
    with pytest.raises(ValueError):
        expected_membership([("nope", None)])


def _reinterleave(steps, rng: random.Random):
    """Another valid delivery order: commands keep their order, each user's events keep theirs."""
    queues: dict[object, list] = {}
    for kind, item in steps:
        key = "commands" if kind == COMMAND else (item.site_id, item.user_id)
        queues.setdefault(key, []).append((kind, item))
    out = []
    keys = list(queues)
    while keys:
        k = rng.choice(keys)
        out.append(queues[k].pop(0))
        if not queues[k]:
            keys.remove(k)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_answer_does_not_depend_on_interleaving(seed):
    """Re-interleaving users' events with each other and with commands leaves the answer unchanged."""
    wl = generate(seed, 600, users_per_site=15, rule_changes=25)
    want = expected_membership(wl.steps)
    assert any(want.values())
    for k in range(3):
        assert expected_membership(_reinterleave(wl.steps, random.Random(k))) == want
