"""Command progress and batches through the handlers without Faust (processor/handlers/progress.py,
backfill.py, commands.py; processor/catalog/batch.py): each partition's backfill reports, the
command goes ACCEPTED -> APPLYING -> APPLIED with the users it evaluated, added and removed; a
partition taken over mid-backfill still reports; a failed one is visible; a batch of many rules
is decided once and backfilled once per partition, with the membership the same commands one
by one give."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from processor.catalog.entry import ProgressEntry, decode_entry
from processor.handlers import control
from tests.support.handler_world import CONTROL, World, command, event, managed_segment

SITE = "pr"
DEPTS = ["Sales", "Marketing", "HR", "Engineering"]


def dept(value: str) -> dict:
    return {"field": "department", "op": "equals", "value": value}


async def stored_users(w: World, n: int = 40, site: str = SITE) -> dict[str, dict]:
    users = {f"u{i:03d}": {"department": DEPTS[i % 4], "city": f"c{i % 7}"} for i in range(n)}
    for i, (uid, prof) in enumerate(users.items()):
        await w.event(event(site, uid, **prof), partition=i % w.partitions)
    return users


def catalog_entries(w: World) -> list[Any]:
    """Every entry appended to the (in-memory) catalog log, decoded."""
    return [decode_entry(e) for e in w.appended]


def recording(w: World) -> World:
    """Record every catalog entry the handlers append, and the outbox's pending owners at each
    catalog append and each published result."""
    w.appended = []  # type: ignore[attr-defined]
    w.pending_at_append = []  # type: ignore[attr-defined]
    append = w.bus.append_catalog

    async def record(site_id: str, entry: bytes) -> int:
        w.appended.append(entry)  # type: ignore[attr-defined]
        w.pending_at_append.append(set(w.changes.pending))  # type: ignore[attr-defined]
        return await append(site_id, entry)

    w.bus.append_catalog = record  # type: ignore[method-assign]
    w.pending_at_result = []  # type: ignore[attr-defined]
    result = w.bus.result

    async def record_result(site_id: str, value: bytes) -> None:
        w.pending_at_result.append(set(w.changes.pending))  # type: ignore[attr-defined]
        await result(site_id, value)

    w.bus.result = record_result  # type: ignore[method-assign]
    return w


async def test_a_rule_goes_accepted_applying_applied_with_its_counts() -> None:
    w = recording(World(partitions=2, chunk=3))
    await managed_segment(w, SITE, "sales")
    users = await stored_users(w)
    cmd = command(SITE, "CreateRule", rule_id="r", segment_id="sales", name="r", condition=dept("Sales"))
    sent = len(w.bus.control_sent)
    decision = await w.command(cmd, deliver=False)
    assert decision.status == "ACCEPTED" and decision.partitions_total is None  # the decision's v1 record
    prog = w.catalog.registry.progress.get(SITE, cmd.command_id)
    assert prog is not None and (prog.state, prog.total) == ("ACCEPTED", 2)
    orders = w.bus.control_sent[sent:]
    assert sorted(p for p, _, _ in orders) == [0, 1]

    on = {p: sum(1 for i in range(len(users)) if i % 2 == p) for p in (0, 1)}
    sales = {p: sum(1 for i, u in enumerate(users.values()) if i % 2 == p and u["department"] == "Sales")
             for p in (0, 1)}
    await w.deliver_control(sent)  # partition 0's order first, then partition 1's
    results = w.results_for(cmd.command_id)
    assert [r.status for r in results] == ["ACCEPTED", "APPLYING", "APPLIED"]
    applying, applied = results[1], results[2]
    first = orders[0][0]
    assert (applying.partitions_done, applying.partitions_total, applying.users_evaluated,
            applying.users_added, applying.users_removed) == (1, 2, on[first], sales[first], 0)
    assert (applied.partitions_done, applied.partitions_total, applied.users_evaluated, applied.users_added,
            applied.users_removed) == (2, 2, len(users), sum(sales.values()), 0)
    assert applied.applied_at == w.now and applied.code is None
    assert prog.state == "APPLIED" and len(w.members(SITE, "sales")) == sum(sales.values())
    # the results that follow the done reports were published once the changes had left the outbox
    assert [w.pending_at_result[i] for i, r in enumerate(w.bus.results)
            if r.command_id == cmd.command_id and r.status != "ACCEPTED"] == [set(), set()]
    assert w.changes.settled  # the publisher waited for the partition's last changes
    done = [e for e in catalog_entries(w) if isinstance(e, ProgressEntry) and e.command_id == cmd.command_id]
    assert [(e.partition, e.done) for e in done] == [(orders[0][0], True), (orders[1][0], True)]


async def test_update_then_delete_count_removed_users() -> None:
    w = World(partitions=2, chunk=4)
    await managed_segment(w, SITE, "s", {"r": dept("Sales")})
    users = await stored_users(w)
    upd = command(SITE, "UpdateRule", rule_id="r", segment_id="s", name="r", condition=dept("HR"))
    await w.command(upd)
    applied = w.results_for(upd.command_id)[-1]
    n_sales = sum(u["department"] == "Sales" for u in users.values())
    n_hr = sum(u["department"] == "HR" for u in users.values())
    assert (applied.status, applied.users_added, applied.users_removed) == ("APPLIED", n_hr, n_sales)


async def test_a_command_without_backfill_is_applied_at_once() -> None:
    w = World()
    cmd = command(SITE, "UpsertSegment", roles=("system",), segment_id="x", name="X")
    res = await w.command(cmd)
    assert [r.status for r in w.results_for(cmd.command_id)] == ["ACCEPTED", "APPLIED"]
    applied = w.results_for(cmd.command_id)[1]
    assert (applied.partitions_total, applied.applied_at) == (0, res.processed_at)
    bad = command(SITE, "DeleteRule", rule_id="ghost")
    await w.command(bad)
    assert [r.status for r in w.results_for(bad.command_id)] == ["REJECTED"]


async def test_a_resent_command_id_gets_its_decision_and_its_final_state() -> None:
    w = World(partitions=2)
    await managed_segment(w, SITE, "s")
    await stored_users(w, 6)
    cmd = command(SITE, "CreateRule", rule_id="r", segment_id="s", name="r", condition=dept("HR"))
    await w.command(cmd)
    published = len(w.bus.results)
    await w.command(cmd)  # the same command again (another message)
    assert [r.status for r in w.bus.results[published:]] == ["ACCEPTED", "APPLIED"]


async def test_a_partition_taken_over_mid_backfill_still_reports_and_the_command_is_applied() -> None:
    """The first owner of partition 0 reports part of the way, then dies (no failure report, no
    commit); the next owner runs the order again from the start and completes the command, with
    the counts of its own run, not the sum of both."""
    w = recording(World(partitions=1, chunk=3))
    await managed_segment(w, SITE, "s")
    users = await stored_users(w, 20)
    cmd = command(SITE, "CreateRule", rule_id="r", segment_id="s", name="r", condition=dept("Sales"))
    sent = len(w.bus.control_sent)
    await w.command(cmd, deliver=False)
    [(partition, key, body)] = w.bus.control_sent[sent:]
    w.users.backfill.report_every_s = 0.0  # report after every chunk

    reports = 0
    real = w.reporter.running

    async def die_after_two_reports(*a: Any) -> None:
        nonlocal reports
        await real(*a)
        reports += 1
        if reports == 2:
            raise asyncio.CancelledError  # kill -9: the run stops here, nothing else happens

    w.reporter.running = die_after_two_reports  # type: ignore[method-assign]
    msg = w.message(CONTROL, partition, key, body)
    with pytest.raises(asyncio.CancelledError):
        await w.guard.run(msg, w.users.handle)
    prog = w.catalog.registry.progress.get(SITE, cmd.command_id)
    assert prog is not None and prog.state == "APPLYING" and prog.totals()[0] == 0
    assert prog.totals()[1] == 6  # two chunks of 3 users reported by the dead run
    assert [r.status for r in w.results_for(cmd.command_id)] == ["ACCEPTED"]

    w.wire()  # the next owner (a new assignment); the order is re-delivered at the same offset
    await w.guard.run(type(msg)(CONTROL, partition, msg.offset, key, body), w.users.handle)
    await w.reporter.drain()  # the result follows the report in the background
    n_sales = sum(u["department"] == "Sales" for u in users.values())
    final = w.results_for(cmd.command_id)[-1]
    assert (final.status, final.users_evaluated, final.users_added) == ("APPLIED", 20, n_sales)
    assert w.members(SITE, "s") == {u for u, p in users.items() if p["department"] == "Sales"}


async def test_a_partition_whose_run_raises_is_reported_failed_and_a_replay_finishes_the_command() -> None:
    w = World(partitions=2, chunk=3)
    await managed_segment(w, SITE, "s")
    await stored_users(w, 12)
    cmd = command(SITE, "CreateRule", rule_id="r", segment_id="s", name="r", condition=dept("Sales"))
    sent = len(w.bus.control_sent)
    await w.command(cmd, deliver=False)
    orders = w.bus.control_sent[sent:]
    real_partition = w.store.partition

    class Broken:
        partition = 1

        def items(self, *a: Any, **kw: Any) -> Any:
            raise OSError("disk on fire")

    w.store.partition = lambda p: Broken() if p == 1 else real_partition(p)  # type: ignore[method-assign]
    await w.deliver_control(sent)
    assert [d.error_code for d in w.dead_letters.sent] == ["PROCESSING_ERROR"]
    results = w.results_for(cmd.command_id)
    assert [r.status for r in results] == ["ACCEPTED", "APPLYING", "APPLYING"]
    failed = [r for r in results if r.code == "BACKFILL_FAILED"]
    assert failed and all("OSError: disk on fire" in (r.message or "") for r in failed)
    prog = w.catalog.registry.progress.get(SITE, cmd.command_id)
    assert prog is not None and prog.as_dict()["failed_partitions"] == [1]

    w.store.partition = real_partition  # type: ignore[method-assign]
    [(p, key, body)] = [o for o in orders if o[0] == 1]
    await w.guard.run(w.message(CONTROL, p, key, body), w.users.handle)  # the dead letter replayed
    await w.reporter.drain()
    assert w.results_for(cmd.command_id)[-1].status == "APPLIED" and prog.as_dict()["failed_partitions"] == []


async def test_a_batch_is_decided_once_and_backfilled_once_per_partition_like_its_commands_one_by_one() -> None:
    """One Batch of segments, enables and 30 rules (with an update and a delete among them): one
    catalog entry, one backfill order per partition, and the same members as the same commands
    one by one; each change's cause is the batch, with the kind of the operation behind it."""
    rules = {f"r{i:02d}": ({"all": [dept(DEPTS[i % 4]), {"field": "city", "op": "equals", "value": f"c{i % 7}"}]},
                           f"seg{i % 12:02d}") for i in range(30)}
    ops: list[tuple[str, dict]] = []
    for s in sorted({seg for _, seg in rules.values()}):
        ops.append(("UpsertSegment", {"segment_id": s, "name": s}))
        ops.append(("EnableSegmentAutomation", {"segment_id": s}))
    for rid, (cond, seg) in rules.items():
        ops.append(("CreateRule", {"rule_id": rid, "segment_id": seg, "name": rid, "condition": cond}))
    ops.append(("UpdateRule", {"rule_id": "r03", "segment_id": "seg05", "name": "moved", "condition": dept("HR")}))
    ops.append(("DeleteRule", {"rule_id": "r04"}))

    one_by_one = World(partitions=2, chunk=4)
    await stored_users(one_by_one, 60)
    for ptype, payload in ops:
        res = await one_by_one.command(command(SITE, ptype, **payload))
        assert res.status == "ACCEPTED", res

    w = World(partitions=2, chunk=4)
    w.users.backfill.report_every_s = 1e9  # done reports only
    await stored_users(w, 60)
    entries, sent = w.catalog.next_offset, len(w.bus.control_sent)
    batch = command(SITE, "Batch", operations=[{"type": t, "payload": command(SITE, t, **p).payload}
                                               for t, p in ops])
    res = await w.command(batch)
    assert res.status == "ACCEPTED", res
    orders = [control.parse(b) for _, _, b in w.bus.control_sent[sent:]]
    assert len(orders) == 2 and {o.command_id for o in orders} == {batch.command_id}  # type: ignore[union-attr]
    # one decision entry, then one done report per partition
    assert w.catalog.next_offset - entries == 3
    assert w.results_for(batch.command_id)[-1].status == "APPLIED"
    for s in sorted({seg for _, seg in rules.values()}):
        assert w.members(SITE, s) == one_by_one.members(SITE, s), s
    assert sum(len(w.members(SITE, s)) for s in {seg for _, seg in rules.values()}) > 0
    batch_changes = [c for c in w.new_changes() if c.cause_id == batch.command_id]
    assert batch_changes and {c.cause_kind for c in batch_changes} == {"SEGMENT_AUTOMATION_ENABLED"}
    total = w.results_for(batch.command_id)[-1]
    assert total.users_added == sum(c.change == "ADDED" for c in batch_changes)
    assert total.users_evaluated == 60


async def test_a_batch_of_rules_on_managed_segments_gives_each_change_its_operations_kind() -> None:
    w = World(partitions=2)
    await managed_segment(w, SITE, "a", {"old": dept("HR")})
    await managed_segment(w, SITE, "b")
    await stored_users(w, 16)
    batch = command(SITE, "Batch", operations=[
        {"type": "CreateRule", "payload": command(SITE, "CreateRule", rule_id="new", segment_id="b", name="n",
                                                  condition=dept("Sales")).payload},
        {"type": "DeleteRule", "payload": {"rule_id": "old"}},
    ])
    assert (await w.command(batch)).status == "ACCEPTED"
    kinds = {(c.segment_id, c.change, c.cause_kind) for c in w.new_changes() if c.cause_id == batch.command_id}
    assert kinds == {("b", "ADDED", "RULE_CREATED"), ("a", "REMOVED", "RULE_DELETED")}


async def test_a_batch_with_a_bad_operation_is_rejected_whole_and_names_the_operation() -> None:
    w = World(partitions=2)
    await managed_segment(w, SITE, "s")
    await stored_users(w, 8)
    sent, before = len(w.bus.control_sent), w.new_changes()
    batch = command(SITE, "Batch", operations=[
        {"type": "CreateRule", "payload": command(SITE, "CreateRule", rule_id="ok", segment_id="s", name="ok",
                                                  condition=dept("Sales")).payload},
        {"type": "UpsertSegment", "payload": {"segment_id": "t", "name": "T"}},
        {"type": "CreateRule", "payload": command(SITE, "CreateRule", rule_id="bad", segment_id="s", name="b",
                                                  condition={"field": "nope", "op": "equals", "value": 1}).payload},
    ])
    res = await w.command(batch)
    assert (res.status, res.code) == ("REJECTED", "UNKNOWN_FIELD")
    assert (res.message or "").startswith("operation 2 (CreateRule bad): ")
    site = w.catalog.registry.site(SITE)
    assert "ok" not in site.rules and "t" not in site.segments  # nothing of it applied
    assert w.bus.control_sent[sent:] == [] and w.new_changes() == before
    assert [r.status for r in w.results_for(batch.command_id)] == ["REJECTED"]


async def test_each_operation_of_a_batch_needs_its_own_role() -> None:
    w = World()
    await managed_segment(w, SITE, "s")
    batch = command(SITE, "Batch", roles=("system",), operations=[
        {"type": "UpsertSegment", "payload": {"segment_id": "t", "name": "T"}},
        {"type": "CreateRule", "payload": command(SITE, "CreateRule", rule_id="r", segment_id="s", name="r",
                                                  condition=dept("Sales")).payload},
    ])
    res = await w.command(batch)
    assert (res.status, res.code) == ("REJECTED", "FORBIDDEN") and "operation 1 (CreateRule r)" in (res.message or "")


async def test_a_batch_later_operation_sees_the_earlier_ones() -> None:
    """A segment created, managed and given a rule in one batch: each operation is decided against
    the catalog the ones before it leave (alone, the rule would be UNKNOWN_SEGMENT)."""
    w = World()
    batch = command(SITE, "Batch", roles=("site_admin",), operations=[
        {"type": "UpsertSegment", "payload": {"segment_id": "n", "name": "N"}},
        {"type": "EnableSegmentAutomation", "payload": {"segment_id": "n"}},
        {"type": "CreateRule", "payload": command(SITE, "CreateRule", rule_id="r", segment_id="n", name="r",
                                                  condition=dept("Sales")).payload},
    ])
    assert (await w.command(batch)).status == "ACCEPTED"
    await w.event(event(SITE, "u1", department="Sales"))
    assert w.members(SITE, "n") == {"u1"}
    alone = command(SITE, "CreateRule", rule_id="r2", segment_id="zz", name="r", condition=dept("Sales"))
    assert (await w.command(alone)).code == "UNKNOWN_SEGMENT"


async def test_an_empty_or_oversized_batch_is_rejected() -> None:
    w = World()
    empty = await w.command(command(SITE, "Batch", operations=[]))
    assert (empty.status, empty.code) == ("REJECTED", "INVALID_COMMAND")
    big = [{"type": "UpsertSegment", "payload": {"segment_id": f"s{i}", "name": "x"}} for i in range(1001)]
    res = await w.command(command(SITE, "Batch", roles=("system",), operations=big))
    assert (res.status, res.code) == ("REJECTED", "INVALID_COMMAND") and "1001" in (res.message or "")
