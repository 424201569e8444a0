"""Messages an admin reads speak the admin's language: no command type names, no Python bytes,
no bare ISO-8601 codes without saying what they are, and they name what to change."""

from __future__ import annotations

import json
import re

import pytest

from processor.catalog.commands import apply, decide
from processor.catalog.model import SiteCatalog
from processor.contract.models import PAYLOAD_TYPES, Actor, Command
from processor.rules.compiler import compile_condition
from processor.rules.exceptions import CompileError
from processor.rules.offline import load_catalog

COMMAND_NAMES = re.compile("|".join(PAYLOAD_TYPES))


def _cmd(ptype: str, roles: tuple[str, ...] = ("site_admin",), **payload: object) -> Command:
    return Command(f"c-{ptype}-{len(payload)}", "s", 1, Actor("a", roles), ptype, dict(payload))


def _site() -> SiteCatalog:
    cat = SiteCatalog("s")
    for c in (_cmd("UpsertSegment", ("system",), segment_id="sales", name="Sales"),
              _cmd("UpsertSegment", ("system",), segment_id="off", name="Off"),
              _cmd("EnableSegmentAutomation", segment_id="sales"),
              _cmd("CreateRule", rule_id="r1", segment_id="sales", name="R", enabled=True,
                   condition_json=json.dumps({"field": "department", "op": "equals", "value": "x"}))):
        assert decide(cat, c).accepted, decide(cat, c)
        apply(cat, c)
    return cat


COND = json.dumps({"field": "department", "op": "equals", "value": "x"})
REJECTIONS = [
    ("SEGMENT_NOT_MANAGED", _cmd("CreateRule", rule_id="r2", segment_id="off", name="R", condition_json=COND,
                                 enabled=True), "segments manage off"),
    ("DUPLICATE_RULE", _cmd("CreateRule", rule_id="r1", segment_id="sales", name="R", condition_json=COND,
                            enabled=True), "choose another rule id"),
    ("NOT_FOUND", _cmd("UpdateRule", rule_id="gone", segment_id="sales", name="R", condition_json=COND,
                       enabled=True), "new rule"),
    ("UNKNOWN_SEGMENT", _cmd("EnableSegmentAutomation", segment_id="nope"), "LMS"),
    ("UNKNOWN_FIELD", _cmd("CreateRule", rule_id="r3", segment_id="sales", name="R", enabled=True,
                           condition_json=json.dumps({"field": "profile_field_x", "op": "equals", "value": "y"})),
     "LMS"),
]


@pytest.mark.parametrize("code,cmd,action", REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_rejections_name_the_control_not_the_command(code: str, cmd: Command, action: str) -> None:
    d = decide(_site(), cmd)
    assert d.code == code, d
    assert not COMMAND_NAMES.search(d.message or ""), d.message
    assert action in (d.message or ""), d.message


def _error(cond: dict) -> str:  # type: ignore[type-arg]
    with pytest.raises(CompileError) as exc:
        compile_condition(cond, load_catalog([]))
    return exc.value.errors[0].message


@pytest.mark.parametrize("pattern,words", [
    ("(?=a)", "lookahead"), ("(?!a)", "does not match"), ("(?<=a)b", "lookbehind"), ("([a-z", "not closed by ']'"),
    ("a\\1", "backreference"), ("a{2000}", "at most 1000"), ("*a", "must follow something"),
])
def test_regex_errors_are_text_not_bytes(pattern: str, words: str) -> None:
    msg = _error({"field": "email", "op": "matches", "value": pattern})
    assert "b'" not in msg and 'b"' not in msg and "RE2 syntax" not in msg, msg
    assert words in msg, msg


@pytest.mark.parametrize("value", ["P-5D", "-P5D", "PT-3H"])
def test_a_negative_duration_says_it_is_negative(value: str) -> None:
    msg = _error({"field": "lastlogin", "op": "within_last", "value": value})
    assert "positive" in msg and "negative" in msg, msg


def test_a_malformed_duration_says_what_a_duration_is() -> None:
    msg = _error({"field": "lastlogin", "op": "within_last", "value": "30 days"})
    assert "30 days" in msg and "(30 days)" in msg and "weeks, days, hours" in msg, msg
