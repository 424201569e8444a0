"""The contract's id rules (processor/contract/ids.py) and where they apply (issue 17).

Spec: every id is non-empty, at most 255 characters and of a documented character set.
Site, segment and rule ids: letters, digits, ``_``, ``-``, ``.`` (never ``:``, which separates
site and user in keys, nor ``/``); custom field shortnames: Moodle's ASCII letters, digits and
``_``; user, event and command ids stay permissive (Moodle usernames) but hold no control
character, no ``/`` and no leading or trailing whitespace. A command with a bad id is REJECTED
INVALID_ID at the id's path; a user event with one is dead-lettered INVALID_ID. Ids the project
already uses (tests, the oracle's workload, the docs) stay valid.
"""

from __future__ import annotations

import json

import pytest

from processor.catalog.commands import decide
from processor.catalog.model import Segment, SiteCatalog
from processor.contract.codec import decode_user_event, encode_user_event, user_event_key
from processor.contract.exceptions import ContractError
from processor.contract.ids import ID_KINDS, NAME, OPAQUE, SHORTNAME, check_id, id_problem
from processor.contract.models import Actor, Command, UserEvent
from tests.support.oracle.workload import generate

VALID_NAMES = ["acme", "site-a", "site-ü", "école", "sales-team", "rule-001", "r1", "v1.2", "a_b", "x" * 255, "..."]
INVALID_NAMES = ["", "a:b", "a/b", "a b", " a", "a?b", "a#b", "a%2Fb", "a\\b", ".", "..", "x" * 256, "a\x00",
                 "a\u202eb", "a\ud800", "acme\n"]
VALID_OPAQUE = ["42", "u-1", "jdoe", "j.doe@example.com", "ldap:jdoe", "usuário-ß", "Jean Dupont", "o'brien",
                "a+b=c", "x" * 255, "..", "用户"]
INVALID_OPAQUE = ["", " jdoe", "jdoe ", "jdoe\n", "a/b", "a\x00b", "a\x7fb", "a\x85b", "a\ud800", "x" * 256, "\t"]


@pytest.mark.parametrize("value", VALID_NAMES)
def test_valid_names(value):
    assert id_problem(value, NAME) is None


@pytest.mark.parametrize("value", INVALID_NAMES)
def test_invalid_names(value):
    assert id_problem(value, NAME) is not None


@pytest.mark.parametrize("value", VALID_OPAQUE)
def test_valid_opaque_ids(value):
    assert id_problem(value, OPAQUE) is None


@pytest.mark.parametrize("value", INVALID_OPAQUE)
def test_invalid_opaque_ids(value):
    assert id_problem(value, OPAQUE) is not None


@pytest.mark.parametrize("value,ok", [("level", True), ("Level_2", True), ("a-b", False), ("é", False),
                                      ("x" * 100, True), ("x" * 101, False), ("", False)])
def test_shortnames_follow_moodle(value, ok):
    """Moodle's profile field shortnames: [A-Za-z0-9_], at most 100 characters here."""
    assert (id_problem(value, SHORTNAME) is None) is ok


@pytest.mark.parametrize("value", [None, 5, ["a"], b"a"])
def test_non_strings_are_invalid(value):
    for kind in (NAME, SHORTNAME, OPAQUE):
        assert id_problem(value, kind) == "must be a non-empty string"


def test_check_id_error_has_code_path_and_a_short_message():
    """INVALID_ID at the given path; the message names the id and the rule, not the whole value."""
    with pytest.raises(ContractError) as info:
        check_id("x" * 5000, "rule_id", "$path.rule")
    assert (info.value.code, info.value.path) == ("INVALID_ID", "$path.rule")
    assert info.value.message.startswith("rule_id is 5000 characters") and len(info.value.message) < 100
    with pytest.raises(ContractError) as info:
        check_id("acme:evil", "site_id", "$.site_id")
    assert "':' at position 4" in info.value.message


def test_every_id_the_oracle_workload_generates_is_valid():
    """The oracle's generated workload (Faker names, every command type, deliberately invalid
    commands included) uses only valid ids: none of its intents changes."""
    wl = generate(seed=7, n_events=300, sites=2, users_per_site=40, rule_changes=60)
    seen = set()
    for _, obj in wl.steps:
        for name in ("site_id", "user_id", "event_id", "command_id"):
            if hasattr(obj, name):
                seen.add(name)
                assert id_problem(getattr(obj, name), ID_KINDS[name]) is None, (name, getattr(obj, name))
        for name, value in (getattr(obj, "payload", None) or {}).items():
            if name in ID_KINDS:
                seen.add(name)
                assert id_problem(value, ID_KINDS[name]) is None, (name, value)
    assert seen == set(ID_KINDS)


# ------------------------------------------------------------------ user events: dead-lettered


def _event(site: str = "site-a", user: str = "u-1", event_id: str = "e-1") -> UserEvent:
    return UserEvent(event_id, "USER_CREATED", site, user, 1, {"department": "Sales"})


@pytest.mark.parametrize("field,value", [("site_id", "a:b"), ("site_id", "a/b"), ("site_id", "."),
                                         ("user_id", "a/zzz"), ("user_id", "u\x00"), ("user_id", "u\n"),
                                         ("event_id", "e\x1b[31m")])
def test_user_event_with_an_invalid_id_is_invalid_id(field, value):
    """A user event whose id breaks its rule is refused (dead-lettered) with INVALID_ID at its path."""
    ev = _event(**{{"site_id": "site", "user_id": "user", "event_id": "event_id"}[field]: value})
    with pytest.raises(ContractError) as info:
        decode_user_event(user_event_key(ev.site_id, ev.user_id), encode_user_event(ev))
    assert (info.value.code, info.value.path) == ("INVALID_ID", f"$.{field}")


@pytest.mark.parametrize("user", VALID_OPAQUE)
def test_user_event_with_a_permissive_user_id_is_accepted(user):
    """Moodle usernames (``@ . _ - :``, spaces inside, any script) stay accepted."""
    ev = _event(user=user)
    assert decode_user_event(user_event_key("site-a", user), encode_user_event(ev)) == ev


# ------------------------------------------------------------------ commands: REJECTED INVALID_ID


def _site() -> SiteCatalog:
    site = SiteCatalog("site-a")
    site.segments["s"] = Segment("s", "S", managed=True)
    return site


def _cmd(ptype: str, site: str = "site-a", command_id: str = "c-1", **payload: object) -> Command:
    return Command(command_id, site, 1, Actor("admin", ("site_admin", "system")), ptype, payload)


COND = json.dumps({"field": "department", "op": "equals", "value": "Sales"})


@pytest.mark.parametrize("cmd,path", [
    (_cmd("DeleteRule", rule_id="x" * 5000), "$.payload.rule_id"),
    (_cmd("DeleteRule", rule_id="a/b"), "$.payload.rule_id"),
    (_cmd("CreateRule", rule_id="r 1", segment_id="s", name="n", condition_json=COND, enabled=True),
     "$.payload.rule_id"),
    (_cmd("CreateRule", rule_id="r1", segment_id="s?", name="n", condition_json=COND, enabled=True),
     "$.payload.segment_id"),
    (_cmd("UpdateRule", rule_id="..", segment_id="s", name="n", condition_json=COND, enabled=True),
     "$.payload.rule_id"),
    (_cmd("UpsertSegment", segment_id="sales/team", name="Sales"), "$.payload.segment_id"),
    (_cmd("DeleteSegment", segment_id=""), "$.payload.segment_id"),
    (_cmd("EnableSegmentAutomation", segment_id="s#1"), "$.payload.segment_id"),
    (_cmd("DisableSegmentAutomation", segment_id="s\n", remove_members=False), "$.payload.segment_id"),
    (_cmd("UpsertProfileField", shortname="a-b", name="A", datatype="TEXT", options=[]), "$.payload.shortname"),
    (_cmd("DeleteProfileField", shortname="x" * 300), "$.payload.shortname"),
    (_cmd("UpsertSegment", site="acme:evil", segment_id="s", name="S"), "$.site_id"),
    (_cmd("UpsertSegment", command_id="c/1", segment_id="s", name="S"), "$.command_id"),
    (_cmd("UpsertSegment", command_id="c\x00", segment_id="s", name="S"), "$.command_id"),
])
def test_command_with_an_invalid_id_is_rejected_invalid_id(cmd, path):
    """Every id in a command, payload or envelope, has the contract's limits: REJECTED INVALID_ID."""
    d = decide(_site(), cmd, cmd.site_id)
    assert (d.status, d.code, d.path) == ("REJECTED", "INVALID_ID", path)


def test_command_with_valid_unusual_ids_is_accepted():
    """Non-ASCII names and dotted versions are valid ids."""
    d = decide(SiteCatalog("école"), _cmd("UpsertSegment", site="école", command_id="moodle:cmd 7",
                                          segment_id="équipe-v1.2", name="x"), "école")
    assert d.status == "ACCEPTED", d
