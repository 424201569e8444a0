"""processor/handlers/backfill.py without Faust: a command's backfill orders, delivered to every
partition, re-evaluate the site's stored users (the cases of tests/integration/test_backfill.py,
and the crash re-run of tests/integration/test_faults.py)."""

from __future__ import annotations

from processor.contract.codec import encode_membership_change
from processor.handlers import control
from processor.state.keys import user_key
from tests.support.handler_world import CONTROL, World, command, event, managed_segment

SITE = "bf"
DEPTS = ["Sales", "Marketing", "HR", "Engineering"]


def dept(value: str) -> dict:
    return {"field": "department", "op": "equals", "value": value}


async def stored_users(w: World, n: int = 40) -> dict[str, dict]:
    users = {f"u{i:03d}": {"department": DEPTS[i % 4], "city": "Paris" if i % 5 == 0 else "Lyon"} for i in range(n)}
    for i, (uid, prof) in enumerate(users.items()):
        await w.event(event(SITE, uid, **prof), partition=i % w.partitions)
    return users


async def test_rule_create_update_delete_re_evaluate_every_stored_user() -> None:
    """CreateRule adds exactly the matching stored users (on both partitions, across chunks);
    UpdateRule adds and removes the difference; DeleteRule removes those no other rule keeps."""
    w = World(partitions=2, chunk=3)
    await managed_segment(w, SITE, "seg")
    users = await stored_users(w)
    await w.event(event(SITE + "x", "intruder", department="Sales"))  # another site, next to this one
    assert w.new_changes() == []
    sales = {u for u, p in users.items() if p["department"] == "Sales"}
    paris = {u for u, p in users.items() if p["city"] == "Paris"}
    hr = {u for u, p in users.items() if p["department"] == "HR"}

    await w.command(command(SITE, "CreateRule", rule_id="r-sales", segment_id="seg", name="s",
                            condition=dept("sales")))
    assert w.members(SITE, "seg") == sales
    assert {c.cause_kind for c in w.new_changes()} == {"RULE_CREATED"} and len(w.new_changes()) == len(sales)
    await w.command(command(SITE, "CreateRule", rule_id="r-paris", segment_id="seg", name="p",
                            condition={"field": "city", "op": "equals", "value": "Paris"}))
    assert w.members(SITE, "seg") == sales | paris

    before = len(w.new_changes())
    await w.command(command(SITE, "UpdateRule", rule_id="r-sales", segment_id="seg", name="hr", condition=dept("HR")))
    delta = w.new_changes()[before:]
    assert w.members(SITE, "seg") == hr | paris
    assert {c.user_id for c in delta if c.change == "ADDED"} == hr - paris
    assert {c.user_id for c in delta if c.change == "REMOVED"} == sales - paris
    assert {c.cause_kind for c in delta} == {"RULE_UPDATED"}

    before = len(w.new_changes())
    await w.command(command(SITE, "DeleteRule", rule_id="r-sales"))
    delta = w.new_changes()[before:]
    assert w.members(SITE, "seg") == paris
    assert {c.user_id for c in delta} == hr - paris and {c.change for c in delta} == {"REMOVED"}
    assert {c.cause_kind for c in delta} == {"RULE_DELETED"}
    assert w.stats.counters["backfill.users"] == 4 * len(users)  # four backfills, each user once


async def test_disable_with_remove_then_reenable_reconciles() -> None:
    w = World()
    await managed_segment(w, SITE, "s", {"r": dept("Sales")})
    for i in range(20):
        await w.event(event(SITE, f"u{i}", department="Sales" if i < 10 else "HR"), partition=i % 2)
    want = {f"u{i}" for i in range(10)}
    assert w.members(SITE, "s") == want
    await w.command(command(SITE, "DisableSegmentAutomation", segment_id="s", remove_members=True))
    assert w.members(SITE, "s") == set()
    await w.command(command(SITE, "EnableSegmentAutomation", segment_id="s"))
    assert w.members(SITE, "s") == want
    causes = [c.cause_kind for c in w.new_changes()]
    assert causes.count("SEGMENT_AUTOMATION_DISABLED") == 10 and causes.count("SEGMENT_AUTOMATION_ENABLED") == 10


async def test_deleting_a_profile_field_breaks_its_rules() -> None:
    w = World()
    assert (await w.command(command(SITE, "UpsertProfileField", roles=("system",), shortname="level", name="Level",
                                    datatype="MENU", options=["junior", "senior"]))).status == "ACCEPTED"
    await managed_segment(w, SITE, "s", {
        "r-level": {"field": "profile_field_level", "op": "equals", "value": "senior"},
        "r-dept": dept("Sales")})
    await w.event(event(SITE, "a", profile_field_level="senior", department="HR"))
    await w.event(event(SITE, "b", profile_field_level="senior", department="Sales"), partition=1)
    assert w.members(SITE, "s") == {"a", "b"}
    await w.command(command(SITE, "DeleteProfileField", roles=("system",), shortname="level"))
    assert w.members(SITE, "s") == {"b"}
    last = w.new_changes()[-1]
    assert (last.user_id, last.change, last.cause_kind) == ("a", "REMOVED", "PROFILE_FIELD_DELETED")


async def test_an_order_waits_for_its_catalog_entry_and_a_rerun_re_issues_what_it_recorded() -> None:
    """The backfill reads the catalog only once it holds the command's entry. A re-run of the
    same order (the worker died after the writes, before the changes left) re-issues each user's
    recorded change byte for byte before anything the moved-on catalog makes of that user."""
    w = World(partitions=1)
    await managed_segment(w, SITE, "seg")
    users = await stored_users(w, 12)
    cmd = command(SITE, "CreateRule", rule_id="r", segment_id="seg", name="r", condition=dept("Sales"))
    sent = len(w.bus.control_sent)
    await w.command(cmd, deliver=False)
    [(partition, key, body)] = w.bus.control_sent[sent:]
    order = control.parse(body)
    assert isinstance(order, control.BackfillOrder) and order.command_id == cmd.command_id
    [msg] = await w.deliver_control(sent)
    assert w.catalog.waited_for[-1] == order.catalog_offset
    first = [encode_membership_change(c) for c in w.new_changes()]
    assert len(first) == sum(p["department"] == "Sales" for p in users.values())
    # the catalog moves on (the rule is deleted), then the same order is processed again
    await w.command(command(SITE, "DeleteRule", rule_id="r"), deliver=False)
    w.changes.log.clear()
    w.now += 3_600_000
    await w.guard.run(type(msg)(CONTROL, partition, msg.offset, key, body), w.users.handle)
    again = [encode_membership_change(r.change) for r in w.changes.log]
    assert set(first) <= set(again)
    for c in w.changes.log:  # per user: the recorded change comes first
        own = [encode_membership_change(r.change) for r in w.changes.log if r.change.user_id == c.change.user_id]
        assert own[0] in first


async def test_a_user_with_pending_changes_is_settled_before_the_backfill_touches_it() -> None:
    w = World(partitions=1)
    await managed_segment(w, SITE, "seg", {"r-city": {"field": "city", "op": "equals", "value": "Lyon"}})
    await w.event(event(SITE, "u1", department="Sales", city="Lyon"))
    assert w.changes.pending_for(user_key(SITE, "u1"))
    await w.command(command(SITE, "CreateRule", rule_id="r", segment_id="seg", name="r", condition=dept("Sales")))
    assert user_key(SITE, "u1") in w.changes.settled


async def test_a_rejected_command_fans_out_nothing() -> None:
    w = World()
    await managed_segment(w, SITE, "seg")
    await stored_users(w, 4)
    sent = len(w.bus.control_sent)
    res = await w.command(command(SITE, "CreateRule", roles=("teacher",), rule_id="r", segment_id="seg", name="r",
                                  condition=dept("Sales")))
    assert (res.status, res.code) == ("REJECTED", "FORBIDDEN")
    assert w.bus.control_sent[sent:] == [] and w.new_changes() == []


async def test_a_garbled_control_message_is_dead_lettered_as_invalid_control() -> None:
    w = World()
    for body in (b"{not json", b"[1, 2]", b'{"site_id": "x"}'):
        await w.raw(CONTROL, body, key=b"x")
    assert [d.error_code for d in w.dead_letters.sent] == ["INVALID_CONTROL"] * 3
