"""Hostile ``Batch`` commands as another producer could write them on the commands topic: any
operations the Avro schema can carry (bad ids, huge or garbage conditions, UNKNOWN datatypes,
rules for segments that do not exist, the same id twice, roles that may not issue them).

Each one either fails to decode with a ContractError (the worker dead-letters it, keeping the
bytes) or is decided without raising: ACCEPTED, or REJECTED with a code, a message and a path
naming the operation. A decision that raised would leave the command to the worker's
INTERNAL_ERROR fallback instead of a result an admin can act on. An accepted batch applies
without raising, exactly like deciding it said. Short run by default; ``-m fuzz`` runs 20x.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.catalog.batch import trial
from processor.catalog.commands import apply, decide
from processor.catalog.model import SiteCatalog
from processor.catalog.registry import CatalogRegistry
from processor.contract.codec import decode_command, encode_command
from processor.contract.exceptions import ContractError
from processor.contract.models import Actor, Command

SITE = "s1"
GOOD = {"field": "department", "op": "equals", "value": "Sales"}
ids = st.one_of(st.sampled_from(["sales", "hr", "r1", "r2", "level", "new"]), st.just(""), st.just("a/b"),
                st.just(" x"), st.text(max_size=8), st.just("ab" * 150))
conditions = st.one_of(
    st.just(json.dumps(GOOD)), st.just(json.dumps({"all": [GOOD, {"not": GOOD}]})), st.just("{"), st.just(""),
    st.just("[]"), st.just("null"), st.just('{"all": []}'), st.just("[" * 3000), st.just('{"all": [' * 40 + "]}" * 40),
    st.just(json.dumps({"field": "nope", "op": "equals", "value": 1})),
    st.just(json.dumps({"field": "lastlogin", "op": "on", "value": {"date": "9999-12-31", "timezone": "America"}})),
    st.just(json.dumps({"field": "department", "op": "matches", "value": "(a+)+$"})),
    st.text(max_size=40), st.just("x" * 70_000))
PAYLOADS = {
    "UpsertProfileField": st.fixed_dictionaries({"shortname": ids, "name": st.text(max_size=10), "datatype": st.sampled_from(
        ["TEXT", "TEXTAREA", "MENU", "MULTISELECT", "CHECKBOX", "DATETIME", "NUMBER", "UNKNOWN"]),
        "options": st.lists(st.text(max_size=5), max_size=5)}),
    "DeleteProfileField": st.fixed_dictionaries({"shortname": ids}),
    "UpsertSegment": st.fixed_dictionaries({"segment_id": ids, "name": st.text(max_size=10)}),
    "DeleteSegment": st.fixed_dictionaries({"segment_id": ids}),
    "EnableSegmentAutomation": st.fixed_dictionaries({"segment_id": ids}),
    "DisableSegmentAutomation": st.fixed_dictionaries({"segment_id": ids, "remove_members": st.booleans()}),
    "CreateRule": st.fixed_dictionaries({"rule_id": ids, "segment_id": ids, "name": st.text(max_size=10),
                                         "condition_json": conditions, "enabled": st.booleans()}),
    "UpdateRule": st.fixed_dictionaries({"rule_id": ids, "segment_id": ids, "name": st.text(max_size=10),
                                         "condition_json": conditions, "enabled": st.booleans()}),
    "DeleteRule": st.fixed_dictionaries({"rule_id": ids}),
}
operation = st.sampled_from(sorted(PAYLOADS)).flatmap(
    lambda t: PAYLOADS[t].map(lambda p: {"type": t, "payload": p}))
roles = st.lists(st.sampled_from(["site_admin", "system", "ingest", "SITE_ADMIN"]), max_size=3).map(tuple)


def _catalog() -> SiteCatalog:
    """A site with a managed segment "sales", a custom field "level" and a rule "r1"."""
    cat = CatalogRegistry().site(SITE)
    for i, (t, p) in enumerate([
        ("UpsertProfileField", {"shortname": "level", "name": "Level", "datatype": "TEXT", "options": []}),
        ("UpsertSegment", {"segment_id": "sales", "name": "Sales"}),
        ("EnableSegmentAutomation", {"segment_id": "sales"}),
        ("CreateRule", {"rule_id": "r1", "segment_id": "sales", "name": "R1", "enabled": True,
                        "condition_json": json.dumps(GOOD)})]):
        c = Command(f"seed-{i}", SITE, 1, Actor("a", ("site_admin",)), t, p)
        assert decide(cat, c).accepted
        apply(cat, c)
    return cat


CATALOG = _catalog()


def _check(ops: list[dict[str, Any]], actor_roles: tuple[str, ...]) -> None:
    cmd = Command("batch-1", SITE, 1, Actor("a", actor_roles), "Batch", {"operations": ops})
    try:
        decoded = decode_command(encode_command(cmd))
    except ContractError as err:  # over the contract's limits: a dead letter with its code
        assert err.code and err.path
        return
    cat = trial(CATALOG)
    d = decide(cat, decoded, SITE)
    assert d.status in ("ACCEPTED", "REJECTED")
    if d.accepted:
        apply(cat, decoded)
        return
    assert d.code and d.message and d.path, d
    assert d.path.startswith(("$.payload.operations", "$.actor")), d


def _run(examples: int) -> None:
    @settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                            HealthCheck.data_too_large])
    @given(ops=st.lists(operation, min_size=0, max_size=6), actor_roles=roles)
    def check(ops: list[dict[str, Any]], actor_roles: tuple[str, ...]) -> None:
        _check(ops, actor_roles)

    check()


def test_hostile_batches_are_decided_with_a_code_or_fail_to_decode() -> None:
    """Short default run (about 150 batches)."""
    _run(150)


@pytest.mark.fuzz
def test_hostile_batches_long_run() -> None:
    _run(3000)


@pytest.mark.parametrize("count", [0, 1001])
def test_an_empty_or_oversized_batch_from_another_producer_is_rejected_with_a_code(count: int) -> None:
    """0 and 1,001 operations encode (the schema has no bounds) and are REJECTED INVALID_COMMAND."""
    ops = [{"type": "DeleteRule", "payload": {"rule_id": f"r{i}"}} for i in range(count)]
    cmd = decode_command(encode_command(Command("b", SITE, 1, Actor("a", ("site_admin",)), "Batch",
                                                {"operations": ops})))
    d = decide(trial(CATALOG), cmd, SITE)
    assert (d.status, d.code, d.path) == ("REJECTED", "INVALID_COMMAND", "$.payload.operations")


def test_the_same_rule_created_twice_in_one_batch_is_rejected_at_the_second() -> None:
    op = {"type": "CreateRule", "payload": {"rule_id": "twice", "segment_id": "sales", "name": "T",
                                            "condition_json": json.dumps(GOOD), "enabled": True}}
    cmd = decode_command(encode_command(Command("b", SITE, 1, Actor("a", ("site_admin",)), "Batch",
                                                {"operations": [op, op]})))
    d = decide(trial(CATALOG), cmd, SITE)
    assert d.status == "REJECTED" and d.path.startswith("$.payload.operations[1]"), d
