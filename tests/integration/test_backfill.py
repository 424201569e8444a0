"""Rule changes re-evaluate every stored user of the site (backfill)."""

from __future__ import annotations

from tests.support.harness import Cluster, fold_membership, make_command, make_event

DEPTS = ["Sales", "Marketing", "HR", "Engineering"]


def _run(cluster: Cluster, *cmds: object) -> None:
    for c in cmds:
        cluster.producer.command(c)  # type: ignore[arg-type]
    cluster.producer.flush()
    res = cluster.wait_results([c.command_id for c in cmds])  # type: ignore[attr-defined]
    assert all(r.status == "ACCEPTED" for r in res.values()), res


def _members(cluster: Cluster, site: str, seg: str) -> set[str]:
    return fold_membership(cluster.changes_for(site)).get((site, seg), set())


def test_rule_create_update_delete_backfill_200_users(cluster: Cluster, site: str) -> None:
    """CreateRule adds exactly the matching stored users; UpdateRule adds/removes the
    difference; DeleteRule removes everyone except users another rule still matches."""
    users = {f"u{i:03d}": {"department": DEPTS[i % 4], "city": "Paris" if i % 5 == 0 else "Lyon"}
             for i in range(200)}
    _run(cluster, make_command(site, "UpsertSegment", segment_id="seg", name="Seg"),
         make_command(site, "EnableSegmentAutomation", segment_id="seg"))
    for uid, prof in users.items():
        cluster.producer.user_event(make_event(site, uid, **prof))
    marker = make_event(site, "zz-marker", department="none")
    cluster.producer.user_event(marker)
    cluster.producer.flush()
    # the users must be stored before the rule: wait until the worker holds all of them
    # (a rule created earlier would add them through USER_CREATED instead, which is fine
    #  for membership but not what this test is about)
    cluster.wait(lambda: cluster.stored_users(site) == len(users) + 1, what="every user stored")

    sales = {u for u, p in users.items() if p["department"] == "Sales"}
    _run(cluster, make_command(site, "CreateRule", rule_id="r-sales", segment_id="seg", name="sales",
                               condition={"field": "department", "op": "equals", "value": "sales"}))
    cluster.wait(lambda: _members(cluster, site, "seg") == sales, what="sales users added")
    assert all(c.cause_kind == "RULE_CREATED" for c in cluster.changes_for(site))
    assert len(cluster.changes_for(site)) == len(sales) == 50

    # a second rule keeps Paris users in the segment whatever their department
    paris = {u for u, p in users.items() if p["city"] == "Paris"}
    _run(cluster, make_command(site, "CreateRule", rule_id="r-paris", segment_id="seg", name="paris",
                               condition={"field": "city", "op": "equals", "value": "Paris"}))
    cluster.wait(lambda: _members(cluster, site, "seg") == sales | paris, what="paris users added")

    hr = {u for u, p in users.items() if p["department"] == "HR"}
    before = len(cluster.changes_for(site))
    _run(cluster, make_command(site, "UpdateRule", rule_id="r-sales", segment_id="seg", name="hr",
                               condition={"field": "department", "op": "equals", "value": "HR"}))
    cluster.wait(lambda: _members(cluster, site, "seg") == hr | paris, what="update applied")
    delta = cluster.changes_for(site)[before:]
    assert {c.user_id for c in delta if c.change == "ADDED"} == hr - paris
    assert {c.user_id for c in delta if c.change == "REMOVED"} == sales - paris
    assert {c.cause_kind for c in delta} == {"RULE_UPDATED"}

    before = len(cluster.changes_for(site))
    _run(cluster, make_command(site, "DeleteRule", rule_id="r-sales"))
    cluster.wait(lambda: _members(cluster, site, "seg") == paris, what="delete applied")
    delta = cluster.changes_for(site)[before:]
    assert {c.user_id for c in delta} == hr - paris
    assert {c.change for c in delta} == {"REMOVED"} and {c.cause_kind for c in delta} == {"RULE_DELETED"}


def test_disable_with_remove_and_reenable(cluster: Cluster, site: str) -> None:
    """Disable(remove_members) removes every member; re-enabling reconciles with the rules."""
    _run(cluster, make_command(site, "UpsertSegment", segment_id="s", name="S"),
         make_command(site, "EnableSegmentAutomation", segment_id="s"),
         make_command(site, "CreateRule", rule_id="r", segment_id="s", name="r",
                      condition={"field": "department", "op": "equals", "value": "Sales"}))
    for i in range(20):
        cluster.producer.user_event(make_event(site, f"u{i}", department="Sales" if i < 10 else "HR"))
    cluster.producer.flush()
    want = {f"u{i}" for i in range(10)}
    cluster.wait(lambda: _members(cluster, site, "s") == want, what="initial members")
    _run(cluster, make_command(site, "DisableSegmentAutomation", segment_id="s", remove_members=True))
    cluster.wait(lambda: _members(cluster, site, "s") == set(), what="all removed")
    _run(cluster, make_command(site, "EnableSegmentAutomation", segment_id="s"))
    cluster.wait(lambda: _members(cluster, site, "s") == want, what="reconciled")
    causes = [c.cause_kind for c in cluster.changes_for(site)]
    assert causes.count("SEGMENT_AUTOMATION_DISABLED") == 10
    assert causes.count("SEGMENT_AUTOMATION_ENABLED") == 10


def test_deleting_a_profile_field_breaks_its_rules(cluster: Cluster, site: str) -> None:
    """Members justified only by a rule on a deleted custom field are REMOVED (PROFILE_FIELD_DELETED)."""
    _run(cluster,
         make_command(site, "UpsertProfileField", roles=("system",), shortname="level", name="Level",
                      datatype="MENU", options=["junior", "senior"]),
         make_command(site, "UpsertSegment", segment_id="s", name="S"),
         make_command(site, "EnableSegmentAutomation", segment_id="s"),
         make_command(site, "CreateRule", rule_id="r-level", segment_id="s", name="senior",
                      condition={"field": "profile_field_level", "op": "equals", "value": "senior"}),
         make_command(site, "CreateRule", rule_id="r-dept", segment_id="s", name="sales",
                      condition={"field": "department", "op": "equals", "value": "Sales"}))
    cluster.producer.user_event(make_event(site, "a", profile_field_level="senior", department="HR"))
    cluster.producer.user_event(make_event(site, "b", profile_field_level="senior", department="Sales"))
    cluster.producer.flush()
    cluster.wait(lambda: _members(cluster, site, "s") == {"a", "b"}, what="both added")
    _run(cluster, make_command(site, "DeleteProfileField", roles=("system",), shortname="level"))
    cluster.wait(lambda: _members(cluster, site, "s") == {"b"}, what="a removed")
    last = cluster.changes_for(site)[-1]
    assert (last.user_id, last.change, last.cause_kind) == ("a", "REMOVED", "PROFILE_FIELD_DELETED")
