"""Command authorization and validation, end to end."""

from __future__ import annotations

from tests.support.harness import Cluster, make_command, make_event


def test_non_admin_rule_is_forbidden_and_changes_nothing(cluster: Cluster, site: str) -> None:
    """A CreateRule from a non-site_admin is REJECTED FORBIDDEN and no state changes."""
    setup = [make_command(site, "UpsertSegment", roles=("system",), segment_id="s", name="S"),
             make_command(site, "EnableSegmentAutomation", segment_id="s")]
    bad = make_command(site, "CreateRule", roles=("teacher",), rule_id="r", segment_id="s", name="r",
                       condition={"field": "department", "op": "equals", "value": "Sales"})
    for c in [*setup, bad]:
        cluster.producer.command(c)
    cluster.producer.flush()
    res = cluster.wait_results([c.command_id for c in [*setup, bad]])
    assert res[bad.command_id].status == "REJECTED" and res[bad.command_id].code == "FORBIDDEN"
    assert "site_admin" in (res[bad.command_id].message or "")
    # no rule exists: a matching user is not added, and the same rule id is still free
    cluster.producer.user_event(make_event(site, "u1", department="Sales"))
    good = make_command(site, "CreateRule", rule_id="r", segment_id="s", name="r",
                        condition={"field": "city", "op": "equals", "value": "Oslo"})
    cluster.producer.command(good)
    cluster.producer.flush()
    assert cluster.wait_results([good.command_id])[good.command_id].status == "ACCEPTED"
    # marker: u1's next event matches the good rule; processed after u1's first event (same user,
    # same partition), whose change, had the forbidden rule been kept, would have left first
    cluster.producer.user_event(make_event(site, "u1", "USER_UPDATED", city="Oslo"))
    cluster.producer.flush()
    cluster.wait(lambda: len(cluster.changes_for(site)) >= 1, what="the marker's ADDED")
    cluster.catch_up()
    changes = [(c.change, c.user_id, c.cause_kind, c.matched_rule_ids) for c in cluster.changes_for(site)]
    assert changes == [("ADDED", "u1", "USER_UPDATED", ("r",))]


def test_unknown_field_is_rejected_with_its_name(cluster: Cluster, site: str) -> None:
    """An admin's rule on an undefined custom field is REJECTED UNKNOWN_FIELD naming the field."""
    cmds = [make_command(site, "UpsertSegment", segment_id="s", name="S"),
            make_command(site, "EnableSegmentAutomation", segment_id="s"),
            make_command(site, "CreateRule", rule_id="r", segment_id="s", name="r",
                         condition={"field": "profile_field_costcentre", "op": "equals", "value": "42"})]
    for c in cmds:
        cluster.producer.command(c)
    cluster.producer.flush()
    r = cluster.wait_results([c.command_id for c in cmds])[cmds[-1].command_id]
    assert (r.status, r.code) == ("REJECTED", "UNKNOWN_FIELD")
    assert "profile_field_costcentre" in (r.message or "")


def test_validation_codes(cluster: Cluster, site: str) -> None:
    """Each class of invalid command gets its own code."""
    cases = {
        "SEGMENT_NOT_MANAGED": make_command(site, "CreateRule", rule_id="r1", segment_id="unmanaged", name="x",
                                            condition={"field": "city", "op": "equals", "value": "x"}),
        "UNKNOWN_SEGMENT": make_command(site, "EnableSegmentAutomation", segment_id="nope"),
        "INVALID_OPERATOR": make_command(site, "CreateRule", rule_id="r2", segment_id="m", name="x",
                                         condition={"field": "city", "op": "gt", "value": 3}),
        "INVALID_CONDITION": make_command(site, "CreateRule", rule_id="r3", segment_id="m", name="x",
                                          condition_json="{not json"),
        "NOT_FOUND": make_command(site, "DeleteRule", rule_id="ghost"),
    }
    setup = [make_command(site, "UpsertSegment", segment_id="unmanaged", name="U"),
             make_command(site, "UpsertSegment", segment_id="m", name="M"),
             make_command(site, "EnableSegmentAutomation", segment_id="m")]
    dup_a = make_command(site, "CreateRule", rule_id="dup", segment_id="m", name="x",
                         condition={"field": "city", "op": "equals", "value": "x"})
    dup_b = make_command(site, "CreateRule", rule_id="dup", segment_id="m", name="x",
                         condition={"field": "city", "op": "equals", "value": "y"})
    allc = [*setup, *cases.values(), dup_a, dup_b]
    for c in allc:
        cluster.producer.command(c)
    cluster.producer.flush()
    res = cluster.wait_results([c.command_id for c in allc])
    for code, c in cases.items():
        assert (res[c.command_id].status, res[c.command_id].code) == ("REJECTED", code)
    assert res[dup_a.command_id].status == "ACCEPTED"
    assert res[dup_b.command_id].code == "DUPLICATE_RULE"


def test_duplicate_command_gets_the_same_result(cluster: Cluster, site: str) -> None:
    """Re-sending a processed command_id publishes its original result again, byte-identical
    fields (same processed_at), and does nothing else: the command is not applied twice."""
    c = make_command(site, "UpsertSegment", segment_id="s", name="S")
    cluster.producer.command(c)
    cluster.producer.flush()
    first = cluster.wait_results([c.command_id])[c.command_id]
    cluster.producer.command(c)
    cluster.producer.flush()
    probe = make_command(site, "UpsertSegment", segment_id="t", name="T")
    cluster.producer.command(probe)
    cluster.producer.flush()
    cluster.wait_results([probe.command_id])
    cluster.wait(lambda: sum(r.command_id == c.command_id for r in cluster.out.result_log) >= 2, 30,
                 "the duplicate answered")
    answers = [r for r in cluster.out.result_log if r.command_id == c.command_id]
    assert answers == [first, first]
    assert cluster.out.results[c.command_id] == first


def test_key_must_match_site(cluster: Cluster, site: str) -> None:
    """A command whose key is another site is REJECTED KEY_MISMATCH (never applied to either site)."""
    c = make_command(site, "UpsertSegment", segment_id="s", name="S")
    cluster.producer.command(c, key="other-site")
    cluster.producer.flush()
    r = cluster.wait_results([c.command_id])[c.command_id]
    assert (r.status, r.code) == ("REJECTED", "KEY_MISMATCH")
