"""processor/handlers/commands.py without Faust: decisions, results, duplicates and the crash
replay (the cases of tests/integration/test_commands.py and test_command_status.py, and the
fan-out redo of tests/integration/test_faults.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from processor.contract.codec import encode_command
from processor.errors import ProcessorError
from processor.handlers import control
from tests.support.handler_world import COMMANDS, World, command, event, managed_segment

SITE = "cm"
SALES = {"field": "department", "op": "equals", "value": "Sales"}


async def test_a_non_admin_rule_is_forbidden_and_changes_nothing() -> None:
    w = World()
    await managed_segment(w, SITE, "s")
    res = await w.command(command(SITE, "CreateRule", roles=("teacher",), rule_id="r", segment_id="s", name="r",
                                  condition=SALES))
    assert (res.status, res.code) == ("REJECTED", "FORBIDDEN") and "site_admin" in (res.message or "")
    await w.event(event(SITE, "u1", department="Sales"))
    assert w.new_changes() == []
    good = await w.command(command(SITE, "CreateRule", rule_id="r", segment_id="s", name="r",
                                   condition={"field": "city", "op": "equals", "value": "Oslo"}))
    assert good.status == "ACCEPTED"  # the rule id is still free


async def test_an_unknown_field_is_rejected_with_its_name() -> None:
    w = World()
    await managed_segment(w, SITE, "s")
    res = await w.command(command(SITE, "CreateRule", rule_id="r", segment_id="s", name="r",
                                  condition={"field": "profile_field_costcentre", "op": "equals", "value": "42"}))
    assert (res.status, res.code) == ("REJECTED", "UNKNOWN_FIELD") and "profile_field_costcentre" in res.message


async def test_each_class_of_invalid_command_gets_its_own_code() -> None:
    w = World()
    await w.command(command(SITE, "UpsertSegment", segment_id="unmanaged", name="U"))
    await managed_segment(w, SITE, "m")
    cases = {
        "SEGMENT_NOT_MANAGED": command(SITE, "CreateRule", rule_id="r1", segment_id="unmanaged", name="x",
                                       condition={"field": "city", "op": "equals", "value": "x"}),
        "UNKNOWN_SEGMENT": command(SITE, "EnableSegmentAutomation", segment_id="nope"),
        "INVALID_OPERATOR": command(SITE, "CreateRule", rule_id="r2", segment_id="m", name="x",
                                    condition={"field": "city", "op": "gt", "value": 3}),
        "INVALID_CONDITION": command(SITE, "CreateRule", rule_id="r3", segment_id="m", name="x",
                                     condition_json="{not json"),
        "NOT_FOUND": command(SITE, "DeleteRule", rule_id="ghost"),
    }
    for code, cmd in cases.items():
        res = await w.command(cmd)
        assert (res.status, res.code) == ("REJECTED", code)
    a = await w.command(command(SITE, "CreateRule", rule_id="dup", segment_id="m", name="x",
                                condition={"field": "city", "op": "equals", "value": "x"}))
    b = await w.command(command(SITE, "CreateRule", rule_id="dup", segment_id="m", name="x",
                                condition={"field": "city", "op": "equals", "value": "y"}))
    assert (a.status, b.code) == ("ACCEPTED", "DUPLICATE_RULE")
    assert w.stats.counters["commands.REJECTED"] == 6


async def test_a_duplicate_command_gets_the_same_result_and_is_not_applied_twice() -> None:
    w = World()
    c = command(SITE, "UpsertSegment", segment_id="s", name="S")
    first = await w.command(c)
    entries = w.catalog.next_offset
    w.now += 10_000
    again = await w.command(c)
    assert again == first  # same processed_at: the kept record answers
    assert w.catalog.next_offset == entries  # nothing appended to the catalog log
    assert w.stats.counters["commands.duplicate"] == 1


async def test_a_command_keyed_by_another_site_is_rejected() -> None:
    w = World()
    res = await w.command(command(SITE, "UpsertSegment", segment_id="s", name="S"), key="other-site")
    assert (res.status, res.code) == ("REJECTED", "KEY_MISMATCH")
    assert SITE not in w.catalog.registry.sites and "other-site" not in w.catalog.registry.sites


async def test_an_accepted_rule_change_fans_out_one_backfill_order_per_partition() -> None:
    w = World(partitions=3)
    await managed_segment(w, SITE, "s")
    sent = len(w.bus.control_sent)
    cmd = command(SITE, "CreateRule", rule_id="r", segment_id="s", name="r", condition=SALES)
    await w.command(cmd, deliver=False)
    orders = w.bus.control_sent[sent:]
    assert [p for p, _, _ in orders] == [0, 1, 2]
    parsed = [control.parse(body) for _, _, body in orders]
    assert {o.command_id for o in parsed} == {cmd.command_id}  # type: ignore[union-attr]
    assert parsed[0] == control.BackfillOrder(SITE, w.catalog.registry.command(SITE, cmd.command_id).catalog_offset,
                                              cmd.command_id, [("s", "RECONCILE")], parsed[0].cause)  # type: ignore[union-attr]


async def test_the_same_message_again_after_a_crash_redoes_the_fan_out_and_the_result() -> None:
    """The worker decided the command (logged) and died before its offset was committed: the same
    message (same partition and offset) is recognised by its source offset, fans out again and
    publishes the original result; it is not decided a second time."""
    w = World(partitions=2)
    await managed_segment(w, SITE, "s")
    cmd = command(SITE, "CreateRule", rule_id="r", segment_id="s", name="r", condition=SALES)
    first = await w.command(cmd, deliver=False, offset=50)
    sent = len(w.bus.control_sent)
    entries = w.catalog.next_offset
    again = await w.command(cmd, deliver=False, offset=50)
    assert again == first and w.catalog.next_offset == entries
    assert [p for p, _, _ in w.bus.control_sent[sent:]] == [0, 1]


async def test_a_command_that_raises_gets_an_internal_error_result_and_is_dead_lettered() -> None:
    """An unexpected error while deciding: a REJECTED INTERNAL_ERROR decision is logged like any
    other (every worker folds the same record), its result is published without any server
    detail, and the message is dead-lettered; a re-sent command id answers the same."""
    def fault(stage: str, cmd: object) -> None:
        if stage == "decide":
            raise RuntimeError("injected")

    w = World(fault=fault)
    cmd = command(SITE, "UpsertSegment", segment_id="s", name="S")
    res = await w.command(cmd)
    assert (res.status, res.code) == ("REJECTED", "INTERNAL_ERROR")
    assert "dead letter of commands partition 0" in res.message and "RuntimeError" not in res.message
    [dl] = w.dead_letters.sent
    assert (dl.source_topic, dl.error_code) == (COMMANDS, "PROCESSING_ERROR")
    w.fault = None
    w.wire()
    assert await w.command(cmd) == res


async def test_a_failure_after_the_decision_keeps_the_decision() -> None:
    """Failing at the fan-out, after the ACCEPTED entry is in the catalog log: the result is the
    logged decision (ACCEPTED), never a second, different one."""
    def fault(stage: str, cmd: object) -> None:
        if stage == "fan_out" and cmd.command_id.startswith("boom"):  # type: ignore[attr-defined]
            raise RuntimeError("injected")

    w = World(fault=fault)
    await w.command(command(SITE, "UpsertSegment", segment_id="s", name="S"))
    res = await w.command(command(SITE, "EnableSegmentAutomation", command_id="boom-1", segment_id="s"))
    assert res.status == "ACCEPTED"
    assert [d.error_code for d in w.dead_letters.sent] == ["PROCESSING_ERROR"]


async def test_without_a_catalog_log_the_command_is_dead_lettered_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    w = World()
    w.bus.fail_append = True
    msg = w.message(COMMANDS, 0, SITE.encode(), encode_command(command(SITE, "UpsertSegment", segment_id="s", name="S")))
    await w.guard.run(msg, w.commands.handle)
    assert w.bus.results == [] and [d.error_code for d in w.dead_letters.sent] == ["PROCESSING_ERROR"]
    assert "no result could be published" in caplog.text


async def test_with_tokens_required_the_actor_comes_from_the_verified_token() -> None:
    """COMMANDS_REQUIRE_TOKEN=1: a refused token makes the command REJECTED with the verifier's
    code; an accepted one replaces the claimed actor; no token reaches the catalog log."""
    def verify(site_id: str, token: str | None) -> object:
        if token != "good":
            raise ProcessorError("FORBIDDEN", "the command's token is refused", "$.auth_token")
        return SimpleNamespace(sub="admin-7", roles=("site_admin",))

    w = World(verify=verify)
    bad = await w.command(command(SITE, "UpsertSegment", roles=("site_admin",), segment_id="s", name="S",
                                  auth_token="forged"))
    assert (bad.status, bad.code) == ("REJECTED", "FORBIDDEN")
    assert w.stats.counters["commands.token_refused"] == 1
    good = command(SITE, "UpsertSegment", roles=("teacher",), segment_id="s", name="S", auth_token="good")
    assert (await w.command(good)).status == "ACCEPTED"
    rec = w.catalog.registry.sites[SITE]
    assert "s" in rec.segments
