"""Unit tests for processor/catalog/commands.py: decide (validate + authorize) and apply.

Expectations follow issue 2's command validation list (REJECTED codes
FORBIDDEN, UNKNOWN_FIELD, INVALID_OPERATOR, INVALID_CONDITION,
UNKNOWN_SEGMENT, SEGMENT_NOT_MANAGED, DUPLICATE_RULE, NOT_FOUND,
KEY_MISMATCH) and its backfill semantics (which segments every stored user
must be re-evaluated for, and how).
"""

from __future__ import annotations

import copy
import itertools
import json

import pytest

from processor.catalog.commands import REMOVE_ALL, RECONCILE, BackfillPlan, Decision, apply, decide
from processor.catalog.model import SiteCatalog
from processor.contract.models import Actor, Command

SITE = "site-a"
ADMIN = ("site_admin",)
SYSTEM = ("system",)
_ids = itertools.count()

SALES_COND = json.dumps({"field": "department", "op": "equals", "value": "Sales"})
TEAM_COND = json.dumps({"field": "profile_field_team", "op": "equals", "value": "Red"})


def command(payload_type: str, roles=ADMIN, site: str = SITE, **payload) -> Command:
    return Command(f"cmd-{next(_ids)}", site, 1_700_000_000_000, Actor("actor-1", tuple(roles)), payload_type, payload)


def upsert_field(shortname="team", datatype="MENU", options=("Red", "Blue"), roles=SYSTEM, name=None):
    return command("UpsertProfileField", roles, shortname=shortname, name=name or shortname.title(),
                   datatype=datatype, options=list(options))


def upsert_segment(segment_id, name=None, roles=SYSTEM):
    return command("UpsertSegment", roles, segment_id=segment_id, name=name or segment_id.title())


def enable(segment_id, roles=ADMIN):
    return command("EnableSegmentAutomation", roles, segment_id=segment_id)


def disable(segment_id, remove_members=False, roles=ADMIN):
    return command("DisableSegmentAutomation", roles, segment_id=segment_id, remove_members=remove_members)


def create_rule(rule_id, segment_id="sales", cond=SALES_COND, enabled=True, roles=ADMIN):
    return command("CreateRule", roles, rule_id=rule_id, segment_id=segment_id, name=f"rule {rule_id}",
                   condition_json=cond if isinstance(cond, str) else json.dumps(cond), enabled=enabled)


def update_rule(rule_id, segment_id="sales", cond=SALES_COND, enabled=True, roles=ADMIN):
    return command("UpdateRule", roles, rule_id=rule_id, segment_id=segment_id, name=f"rule {rule_id}",
                   condition_json=cond if isinstance(cond, str) else json.dumps(cond), enabled=enabled)


def delete_rule(rule_id, roles=ADMIN):
    return command("DeleteRule", roles, rule_id=rule_id)


def accept(cat: SiteCatalog, cmd: Command) -> Decision:
    d = decide(cat, cmd, cmd.site_id)
    assert d.accepted, (d.code, d.message)
    apply(cat, cmd)
    return d


def reject(cat: SiteCatalog, cmd: Command, code: str, key_site: str | None = None) -> Decision:
    before = snapshot(cat)
    d = decide(cat, cmd, key_site)
    assert d.status == "REJECTED"
    assert d.code == code, (d.code, d.message)
    assert d.message  # human readable
    assert d.backfill is None
    assert snapshot(cat) == before, "decide must not mutate the catalog"
    return d


def snapshot(cat: SiteCatalog):
    return (copy.deepcopy(cat.fields), copy.deepcopy(cat.segments), copy.deepcopy(cat.rules),
            {k: tuple(r for r, _ in v) for k, v in cat.active.items()})


def active_rules(cat: SiteCatalog, segment_id: str) -> list[str]:
    return [rid for rid, _ in cat.active.get(segment_id, ())]


@pytest.fixture
def cat() -> SiteCatalog:
    """A site with custom menu field 'team', managed segment 'sales', unmanaged 'hr', and rule r-sales."""
    c = SiteCatalog(SITE)
    accept(c, upsert_field())
    accept(c, upsert_segment("sales"))
    accept(c, upsert_segment("hr"))
    accept(c, enable("sales"))
    accept(c, create_rule("r-sales"))
    return c


# ------------------------------------------------------------ KEY_MISMATCH


def test_key_must_equal_site_id(cat):
    """A command whose message key is not its site_id is REJECTED KEY_MISMATCH."""
    d = reject(cat, upsert_segment("x"), "KEY_MISMATCH", key_site="site-b")
    assert "site-b" in d.message


def test_matching_key_and_no_key_accepted(cat):
    """The key check passes when the key equals site_id (or the caller has no key to check)."""
    assert decide(cat, upsert_segment("x"), SITE).accepted
    assert decide(cat, upsert_segment("x")).accepted


# --------------------------------------------------------------- FORBIDDEN


@pytest.mark.parametrize("make", [
    lambda: create_rule("r-new", roles=SYSTEM),
    lambda: update_rule("r-sales", roles=SYSTEM),
    lambda: delete_rule("r-sales", roles=SYSTEM),
    lambda: enable("hr", roles=SYSTEM),
    lambda: disable("sales", roles=SYSTEM),
    lambda: create_rule("r-new", roles=("teacher",)),
    lambda: create_rule("r-new", roles=()),
])
def test_rule_commands_forbidden_for_non_admins(cat, make):
    """Rule/automation commands from system or other non-admins are REJECTED FORBIDDEN with no state change."""
    reject(cat, make(), "FORBIDDEN")


@pytest.mark.parametrize("make", [
    lambda: upsert_field("dept2", "TEXT", (), roles=("teacher",)),
    lambda: command("DeleteProfileField", ("teacher",), shortname="team"),
    lambda: upsert_segment("x", roles=("student",)),
    lambda: command("DeleteSegment", (), segment_id="hr"),
])
def test_catalog_commands_forbidden_for_others(cat, make):
    """Catalog commands from neither site_admin nor system are REJECTED FORBIDDEN."""
    reject(cat, make(), "FORBIDDEN")


@pytest.mark.parametrize("roles", [ADMIN, SYSTEM])
def test_catalog_commands_accepted_from_admin_and_system(cat, roles):
    """Catalog commands are accepted from site_admin and from system."""
    accept(cat, upsert_field("region", "TEXT", (), roles=roles))
    accept(cat, upsert_segment("ops", roles=roles))
    accept(cat, command("DeleteSegment", roles, segment_id="ops"))
    accept(cat, command("DeleteProfileField", roles, shortname="region"))


def test_forbidden_checked_before_validation(cat):
    """A non-admin's invalid rule is FORBIDDEN (not a validation error): nothing about the site is revealed."""
    reject(cat, create_rule("r-sales", segment_id="nope", cond="{bad", roles=SYSTEM), "FORBIDDEN")


# ----------------------------------------------------- UpsertProfileField


def test_upsert_profile_field_defines_custom_key(cat):
    """After UpsertProfileField, profile_field_<shortname> resolves with its type; no backfill is needed."""
    d = accept(cat, upsert_field("region", "TEXT", ()))
    assert d.backfill is None
    spec = cat.resolve_field("profile_field_region")
    assert spec is not None and spec.type.value == "TEXT"
    assert cat.resolve_field("region") is None  # profiles carry the prefixed key


@pytest.mark.parametrize("shortname", ["bad name", "", "a-b", "x" * 101, "é"])
def test_upsert_profile_field_invalid_shortname(cat, shortname):
    """Shortnames must be non-empty letters/digits/_ (Moodle's rule); others are REJECTED."""
    d = decide(cat, upsert_field(shortname, "TEXT", ()))
    assert d.status == "REJECTED"
    assert d.code


def test_upsert_menu_without_options_rejected(cat):
    """A MENU field with no options is REJECTED (rules could never validate a value)."""
    d = decide(cat, upsert_field("level", "MENU", ()))
    assert d.status == "REJECTED"


def test_changing_field_type_used_by_rule_rejected(cat):
    """Changing a field so that a rule using it no longer compiles is REJECTED and the rule keeps working."""
    accept(cat, create_rule("r-team", cond=TEAM_COND))
    d = decide(cat, upsert_field("team", "MENU", ("Blue", "Green")))
    assert d.status == "REJECTED"
    assert "r-team" in d.message
    assert "r-team" in active_rules(cat, "sales")


# ------------------------------------------------------ DeleteProfileField


def test_delete_unknown_profile_field_not_found(cat):
    """Deleting a profile field that does not exist is REJECTED NOT_FOUND naming it."""
    d = reject(cat, command("DeleteProfileField", SYSTEM, shortname="nope"), "NOT_FOUND")
    assert "nope" in d.message


def test_delete_unused_profile_field_needs_no_backfill(cat):
    """Deleting a field no rule uses changes no membership."""
    accept(cat, upsert_field("region", "TEXT", ()))
    d = accept(cat, command("DeleteProfileField", SYSTEM, shortname="region"))
    assert d.backfill is None
    assert cat.resolve_field("profile_field_region") is None


def test_delete_profile_field_breaks_rules_and_backfills(cat):
    """Deleting a field used by a rule: plan PROFILE_FIELD_DELETED/RECONCILE for its segment;
    the rule becomes broken and leaves `active`, other rules keep working."""
    accept(cat, upsert_segment("red"))
    accept(cat, enable("red"))
    accept(cat, create_rule("r-team", cond=TEAM_COND))
    accept(cat, create_rule("r-red", segment_id="red",
                            cond={"any": [json.loads(TEAM_COND), json.loads(SALES_COND)]}))
    assert set(active_rules(cat, "sales")) == {"r-sales", "r-team"}

    d = accept(cat, command("DeleteProfileField", SYSTEM, shortname="team"))
    assert d.backfill is not None
    assert d.backfill.cause_kind == "PROFILE_FIELD_DELETED"
    assert sorted(d.backfill.segments) == [("red", RECONCILE), ("sales", RECONCILE)]

    assert cat.rule_status("r-team") == "broken"
    assert cat.rule_status("r-red") == "broken"
    assert cat.rule_status("r-sales") == "enabled"
    assert active_rules(cat, "sales") == ["r-sales"]
    assert active_rules(cat, "red") == []
    assert "profile_field_team" in cat.rules["r-team"].broken


def test_broken_rule_stays_broken_until_updated(cat):
    """Re-creating a deleted field does not revive a broken rule; UpdateRule does."""
    accept(cat, create_rule("r-team", cond=TEAM_COND))
    accept(cat, command("DeleteProfileField", SYSTEM, shortname="team"))
    accept(cat, upsert_field())
    assert cat.rule_status("r-team") == "broken"
    assert "r-team" not in active_rules(cat, "sales")
    accept(cat, update_rule("r-team", cond=TEAM_COND))
    assert cat.rule_status("r-team") == "enabled"
    assert "r-team" in active_rules(cat, "sales")


def test_rule_using_deleted_field_cannot_be_created(cat):
    """After a field is deleted, new rules referencing it are REJECTED UNKNOWN_FIELD."""
    accept(cat, command("DeleteProfileField", SYSTEM, shortname="team"))
    reject(cat, create_rule("r-team", cond=TEAM_COND), "UNKNOWN_FIELD")


# ------------------------------------------------------------ segments


def test_upsert_segment_is_unmanaged_and_rename_keeps_managed(cat):
    """A new segment is not managed; renaming a managed segment keeps it managed."""
    accept(cat, upsert_segment("ops"))
    assert cat.segments["ops"].managed is False
    assert "ops" not in cat.active
    d = accept(cat, upsert_segment("sales", name="Sales EMEA"))
    assert d.backfill is None
    assert cat.segments["sales"].name == "Sales EMEA"
    assert cat.segments["sales"].managed is True
    assert active_rules(cat, "sales") == ["r-sales"]


@pytest.mark.parametrize("segment_id", ["", "   "])
def test_upsert_segment_empty_id_rejected(cat, segment_id):
    """Segment ids must be non-empty strings; anything else is REJECTED."""
    d = decide(cat, upsert_segment(segment_id, name="x"))
    assert d.status == "REJECTED"


def test_delete_unknown_segment(cat):
    """Deleting a segment that does not exist is REJECTED UNKNOWN_SEGMENT naming it."""
    d = reject(cat, command("DeleteSegment", SYSTEM, segment_id="ghost"), "UNKNOWN_SEGMENT")
    assert "ghost" in d.message


def test_delete_segment_drops_rules_and_removes_members(cat):
    """DeleteSegment plans SEGMENT_DELETED/REMOVE_ALL and drops the segment and its rules only."""
    accept(cat, upsert_segment("ops"))
    accept(cat, enable("ops"))
    accept(cat, create_rule("r-ops", segment_id="ops"))
    d = accept(cat, command("DeleteSegment", SYSTEM, segment_id="sales"))
    assert d.backfill == BackfillPlan("SEGMENT_DELETED", (("sales", REMOVE_ALL),))
    assert "sales" not in cat.segments
    assert "sales" not in cat.active
    assert "r-sales" not in cat.rules
    assert active_rules(cat, "ops") == ["r-ops"]


def test_delete_unmanaged_segment_still_removes_members(cat):
    """A frozen (disabled) segment's members are removed when it is deleted so downstream unenrols."""
    accept(cat, disable("sales"))
    d = accept(cat, command("DeleteSegment", SYSTEM, segment_id="sales"))
    assert d.backfill == BackfillPlan("SEGMENT_DELETED", (("sales", REMOVE_ALL),))


# ------------------------------------------------ Enable / Disable automation


def test_enable_unknown_segment(cat):
    """Enabling automation on a segment that does not exist is REJECTED UNKNOWN_SEGMENT."""
    reject(cat, enable("ghost"), "UNKNOWN_SEGMENT")


def test_enable_segment_reconciles(cat):
    """Enabling automation plans SEGMENT_AUTOMATION_ENABLED/RECONCILE and makes the segment managed."""
    d = accept(cat, enable("hr"))
    assert d.backfill == BackfillPlan("SEGMENT_AUTOMATION_ENABLED", (("hr", RECONCILE),))
    assert cat.segments["hr"].managed is True
    assert "hr" in cat.active


def test_disable_unknown_and_unmanaged(cat):
    """Disabling an unknown segment is UNKNOWN_SEGMENT; an unmanaged one is SEGMENT_NOT_MANAGED."""
    reject(cat, disable("ghost"), "UNKNOWN_SEGMENT")
    reject(cat, disable("hr"), "SEGMENT_NOT_MANAGED")


def test_disable_freezes_without_backfill(cat):
    """Disable with remove_members false freezes: no backfill, the segment leaves `active`, rules are kept."""
    d = accept(cat, disable("sales", remove_members=False))
    assert d.backfill is None
    assert "sales" not in cat.active
    assert "r-sales" in cat.rules
    assert cat.segments["sales"].managed is False


def test_disable_with_remove_members(cat):
    """Disable with remove_members true plans SEGMENT_AUTOMATION_DISABLED/REMOVE_ALL."""
    d = accept(cat, disable("sales", remove_members=True))
    assert d.backfill == BackfillPlan("SEGMENT_AUTOMATION_DISABLED", (("sales", REMOVE_ALL),))
    assert "sales" not in cat.active


def test_reenable_restores_rules(cat):
    """Re-enabling a frozen segment brings its enabled rules back into `active` and reconciles."""
    accept(cat, disable("sales"))
    d = accept(cat, enable("sales"))
    assert d.backfill == BackfillPlan("SEGMENT_AUTOMATION_ENABLED", (("sales", RECONCILE),))
    assert active_rules(cat, "sales") == ["r-sales"]


# ------------------------------------------------------------- CreateRule


def test_create_rule_accepted_with_reconcile(cat):
    """An enabled rule on a managed segment is accepted: RULE_CREATED/RECONCILE of its segment."""
    d = accept(cat, create_rule("r-team", cond=TEAM_COND))
    assert d.backfill == BackfillPlan("RULE_CREATED", (("sales", RECONCILE),))
    assert active_rules(cat, "sales") == ["r-sales", "r-team"]
    assert cat.rule_status("r-team") == "enabled"


def test_create_disabled_rule_is_not_active(cat):
    """A disabled rule is stored but not active."""
    accept(cat, create_rule("r-off", enabled=False))
    assert "r-off" in cat.rules
    assert "r-off" not in active_rules(cat, "sales")
    assert cat.rule_status("r-off") == "disabled"


def test_create_duplicate_rule(cat):
    """Creating a rule whose id exists is REJECTED DUPLICATE_RULE."""
    d = reject(cat, create_rule("r-sales"), "DUPLICATE_RULE")
    assert "r-sales" in d.message


def test_create_rule_unknown_segment(cat):
    """A rule targeting a segment that does not exist is REJECTED UNKNOWN_SEGMENT."""
    reject(cat, create_rule("r-x", segment_id="ghost"), "UNKNOWN_SEGMENT")


def test_create_rule_unmanaged_segment(cat):
    """A rule targeting an existing but unmanaged segment is REJECTED SEGMENT_NOT_MANAGED."""
    d = reject(cat, create_rule("r-x", segment_id="hr"), "SEGMENT_NOT_MANAGED")
    assert "hr" in d.message


def test_create_rule_unknown_field_names_field(cat):
    """A rule with an unknown custom field is REJECTED UNKNOWN_FIELD; message names the field,
    path points into condition_json."""
    cond = {"all": [json.loads(SALES_COND), {"field": "profile_field_costcentre", "op": "equals", "value": "1"}]}
    d = reject(cat, create_rule("r-x", cond=cond), "UNKNOWN_FIELD")
    assert "profile_field_costcentre" in d.message
    assert d.path == "$.payload.condition_json.all[1].field"


@pytest.mark.parametrize("cond,code", [
    ({"field": "department", "op": "gt", "value": 3}, "INVALID_OPERATOR"),
    ({"field": "department", "op": "equalz", "value": "x"}, "INVALID_OPERATOR"),
    ("{not json", "INVALID_CONDITION"),
    ({"all": []}, "INVALID_CONDITION"),
    ({"field": "department", "op": "equals", "value": 3}, "INVALID_VALUE"),
    ({"field": "profile_field_team", "op": "equals", "value": "Green"}, "INVALID_VALUE"),
])
def test_create_rule_condition_errors(cat, cond, code):
    """Condition problems reject the rule with the compiler's code."""
    reject(cat, create_rule("r-x", cond=cond), code)


def test_create_rule_deeply_nested_json_rejected(cat):
    """A condition_json nested thousands of levels deep is REJECTED INVALID_CONDITION (decide must not raise)."""
    text = '{"not": ' * 3000 + json.dumps(json.loads(SALES_COND)) + "}" * 3000
    d = decide(cat, create_rule("r-deep", cond=text), SITE)
    assert (d.status, d.code) == ("REJECTED", "INVALID_CONDITION")


def test_create_rule_empty_rule_id_rejected(cat):
    """A rule id must be a non-empty string."""
    d = decide(cat, create_rule(""))
    assert d.status == "REJECTED"


# ------------------------------------------------------------- UpdateRule


def test_update_missing_rule_not_found(cat):
    """Updating a rule that does not exist is REJECTED NOT_FOUND."""
    reject(cat, update_rule("ghost"), "NOT_FOUND")


def test_update_rule_same_segment(cat):
    """Updating a rule reconciles its segment once (RULE_UPDATED) and replaces the condition."""
    d = accept(cat, update_rule("r-sales", cond=TEAM_COND))
    assert d.backfill == BackfillPlan("RULE_UPDATED", (("sales", RECONCILE),))
    assert cat.rules["r-sales"].condition_json == TEAM_COND
    (rid, compiled), = cat.active["sales"]
    assert compiled.evaluate({"profile_field_team": "Red"}) is True
    assert compiled.evaluate({"department": "Sales"}) is False


def test_update_rule_moving_segment_reconciles_both(cat):
    """Moving a rule to another segment reconciles both the new and the old segment."""
    accept(cat, enable("hr"))
    d = accept(cat, update_rule("r-sales", segment_id="hr"))
    assert d.backfill.cause_kind == "RULE_UPDATED"
    assert sorted(d.backfill.segments) == [("hr", RECONCILE), ("sales", RECONCILE)]
    assert active_rules(cat, "hr") == ["r-sales"]
    assert active_rules(cat, "sales") == []


def test_update_rule_disable(cat):
    """Disabling a rule via UpdateRule removes it from `active` and reconciles its segment."""
    d = accept(cat, update_rule("r-sales", enabled=False))
    assert d.backfill == BackfillPlan("RULE_UPDATED", (("sales", RECONCILE),))
    assert active_rules(cat, "sales") == []


@pytest.mark.parametrize("kwargs,code", [
    ({"segment_id": "ghost"}, "UNKNOWN_SEGMENT"),
    ({"segment_id": "hr"}, "SEGMENT_NOT_MANAGED"),
    ({"cond": {"field": "nope", "op": "equals", "value": "x"}}, "UNKNOWN_FIELD"),
    ({"cond": {"field": "suspended", "op": "equals", "value": "x"}}, "INVALID_OPERATOR"),
    ({"cond": "[]"}, "INVALID_CONDITION"),
])
def test_update_rule_validation(cat, kwargs, code):
    """UpdateRule is validated like CreateRule; rejection leaves the old rule active."""
    reject(cat, update_rule("r-sales", **kwargs), code)
    assert active_rules(cat, "sales") == ["r-sales"]
    assert cat.rules["r-sales"].condition_json == SALES_COND


# ------------------------------------------------------------- DeleteRule


def test_delete_missing_rule_not_found(cat):
    """Deleting a rule that does not exist is REJECTED NOT_FOUND."""
    reject(cat, delete_rule("ghost"), "NOT_FOUND")


def test_delete_rule_reconciles_its_segment(cat):
    """DeleteRule plans RULE_DELETED/RECONCILE of its segment and removes the rule."""
    d = accept(cat, delete_rule("r-sales"))
    assert d.backfill == BackfillPlan("RULE_DELETED", (("sales", RECONCILE),))
    assert "r-sales" not in cat.rules
    assert active_rules(cat, "sales") == []


def test_deleted_rule_id_can_be_reused(cat):
    """After DeleteRule the id is free for CreateRule again."""
    accept(cat, delete_rule("r-sales"))
    accept(cat, create_rule("r-sales"))


# ------------------------------------------------------------ misc


def test_commands_do_not_cross_sites(cat):
    """Applying commands to one site's catalog leaves another site's catalog untouched."""
    other = SiteCatalog("site-b")
    accept(other, upsert_segment("sales"))
    before = snapshot(cat)
    accept(other, enable("sales"))
    accept(other, create_rule("r-b"))
    assert snapshot(cat) == before
    assert active_rules(other, "sales") == ["r-b"]


def test_decide_never_mutates_on_accept(cat):
    """decide is pure even for commands it accepts; only apply changes the catalog."""
    before = snapshot(cat)
    for c in (create_rule("r-new"), delete_rule("r-sales"), disable("sales", True),
              command("DeleteSegment", SYSTEM, segment_id="sales"),
              command("DeleteProfileField", SYSTEM, shortname="team")):
        assert decide(cat, c).accepted
    assert snapshot(cat) == before


def test_backfill_plan_dict_round_trip():
    """BackfillPlan survives to_dict/from_dict (it is stored in the catalog log); None/{} mean no plan."""
    plan = BackfillPlan("RULE_UPDATED", (("a", RECONCILE), ("b", REMOVE_ALL)))
    assert BackfillPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    assert BackfillPlan.from_dict(None) is None
    assert BackfillPlan.from_dict({}) is None
