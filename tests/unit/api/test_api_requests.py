"""Request bodies: the nesting bound rejects what no rule can be, before the recursive JSON parser
sees it, and never rejects a condition the compiler accepts; the internal preview body is checked."""

from __future__ import annotations

import json
from typing import Any

import pytest

from processor.api.errors import ApiError
from processor.api.requests import MAX_BODY_DEPTH, nesting_exceeds, parse_json_text, preview_payload
from processor.catalog.model import SiteCatalog
from processor.rules.compiler import compile_condition
from processor.rules.exceptions import CompileError

LEAF = {"field": "city", "op": "in", "value": ["Paris", "Oslo"]}


def exceeds(text: str) -> bool:
    gen = nesting_exceeds(text)
    while True:
        try:
            next(gen)
        except StopIteration as done:
            return bool(done.value)


def nested(levels: int, group: str) -> Any:
    tree: Any = LEAF
    for _ in range(levels):
        tree = {"not": tree} if group == "not" else {group: [LEAF, tree]}
    return tree


def compiles(tree: Any) -> bool:
    try:
        compile_condition(tree, SiteCatalog("s"))
        return True
    except CompileError:
        return False


@pytest.mark.parametrize("group", ["all", "any", "not"])
def test_every_condition_the_compiler_accepts_passes_the_body_bound(group: str) -> None:
    accepted = 0
    for levels in range(0, 40):
        tree = nested(levels, group)
        if compiles(tree):
            accepted = levels
            body = json.dumps({"rule_id": "r", "segment_id": "s", "condition": tree})
            assert not exceeds(body), f"{levels} levels of {group!r} compile but the body was refused"
    assert accepted >= 10  # the loop did reach the compiler's own limit


def test_a_50000_deep_body_is_refused_without_recursion() -> None:
    assert exceeds("[" * 50_000 + "]" * 50_000)
    assert exceeds('{"condition": ' + '{"not": ' * 50_000 + "1" + "}" * 50_001)
    assert exceeds("[" * 50_000)  # unbalanced: still refused for depth, not parsed


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"name": "[" * 5000 + "{" * 5000, "quote": 'a\\"[[[[' * 100, "x": [[1]]})
    assert not exceeds(text)
    assert parse_json_text(text)["x"] == [[1]]


def test_depth_just_past_the_bound_is_refused() -> None:
    assert not exceeds("[" * MAX_BODY_DEPTH + "]" * MAX_BODY_DEPTH)
    assert exceeds("[" * (MAX_BODY_DEPTH + 1) + "]" * (MAX_BODY_DEPTH + 1))


def test_a_large_flat_body_is_checked_in_steps() -> None:
    """The check yields while it works through a large body (the API lets the loop run then)."""
    text = "[" + ",".join(["[1]"] * 60_000) + "]"
    gen = nesting_exceeds(text)
    steps = 0
    with pytest.raises(StopIteration) as done:
        while True:
            next(gen)
            steps += 1
    assert done.value.value is False
    assert steps >= len(text) // 8192 - 1


def test_not_json_is_a_400() -> None:
    with pytest.raises(ApiError) as err:
        parse_json_text("{nope")
    assert (err.value.status, err.value.code) == (400, "INVALID_JSON")


@pytest.mark.parametrize("body,path", [
    ([], "$"), ("x", "$"), ({}, "$.segment_id"), ({"segment_id": 5, "condition": {}}, "$.segment_id"),
    ({"segment_id": "s"}, "$.condition"), ({"segment_id": "s", "condition": 5}, "$.condition"),
    ({"segment_id": "s", "condition": {}, "rule_id": 7}, "$.rule_id"),
    ({"segment_id": "s", "condition": {}, "extra": 1}, "$.extra"),
])
def test_a_malformed_internal_preview_body_is_a_400(body: Any, path: str) -> None:
    with pytest.raises(ApiError) as err:
        preview_payload(body)
    assert err.value.status == 400 and err.value.path == path


def test_the_internal_preview_body_the_api_sends_is_accepted() -> None:
    sent = {"segment_id": "s", "rule_id": "", "condition": LEAF}
    assert preview_payload(sent) == sent
