"""Hostile input against the API surface added with progress, people, guard and history, served
in process by the real HTTP layer (processor/http) on two workers (this one and a peer on
loopback) over the in-memory stores of tests/unit/api/test_guard_http.py.

The standard: bad input gets a 4xx with a machine code (and a path where a field is at fault),
never a 500, and nothing is produced; nothing is readable without a token for the site and the
role the route needs (docs/api.md). Expected values are written here from the docs, never taken
from the code under test.
"""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any, AsyncIterator

import pytest
from aiohttp.test_utils import TestClient

from processor.api.auth import make_token
from processor.api.routes import AUTHENTICATED
from processor.config import Settings
from processor.state.user_state import UserState
from tests.support.api_double import served_pair
from tests.unit.api.test_guard_http import SECRET, SITE, Model, _seed, _user

S = f"/sites/{SITE}"
RULE = {"rule_id": "new", "segment_id": "sales", "condition": 'department == "HR"'}


@pytest.fixture
async def api() -> AsyncIterator[tuple[TestClient, Model, Model]]:
    """This worker (the client's) and a peer, each holding half of the users u000-u129."""
    settings = Settings(bootstrap_servers="127.0.0.1:9", admin_jwt_secret=SECRET)
    users = [_user(i) for i in range(130)]
    peer = Model([u for u in users if u.user_id[-1] in "02468"])
    me = Model([u for u in users if u.user_id[-1] not in "02468"])
    peer.store.owned_partitions = lambda: [1]  # type: ignore[method-assign]  # (the double says [0] for both)
    async with served_pair(me, peer, settings) as client:
        for m in (me, peer):
            _seed(m.registry)
        yield client, me, peer


def auth(site: str = SITE, roles: tuple[str, ...] = ("site_admin",)) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(SECRET, 'alice', site, list(roles))}"}


async def answer(r: Any) -> tuple[int, dict[str, Any]]:
    text = await r.text()
    try:
        body = json.loads(text)
    except ValueError:
        body = {"not_json": text[:200]}
    return r.status, body


# ---------------------------------------------------------------------------------- auth matrix
PARAMS = {"site": SITE, "segment": "sales", "rule": "dept", "user": "u001", "command": "c1", "shortname": "level"}
# the routes docs/api.md opens to role system (catalog writes, ingest) and to role ingest (ingest)
SYSTEM_MAY = {("PUT", "/sites/{site}/segments/{segment}"), ("DELETE", "/sites/{site}/segments/{segment}"),
              ("PUT", "/sites/{site}/fields/{shortname}"), ("DELETE", "/sites/{site}/fields/{shortname}"),
              ("POST", "/sites/{site}/segments:bulk"), ("POST", "/sites/{site}/ingest/users")}
INGEST_MAY = {("POST", "/sites/{site}/ingest/users")}
ERROR_KEYS = {"code", "message", "path"}


def _route_cases() -> list[tuple[str, str]]:
    return [(m, re.sub(r"\{(\w+)\}", lambda g: PARAMS[g.group(1)], p)) for m, p in AUTHENTICATED]


async def _call(client: TestClient, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    body = None if method in ("GET", "DELETE") else {}
    return await answer(await client.request(method, path, headers=headers, json=body))


async def test_every_authenticated_route_refuses_another_sites_token_with_every_role(api: Any) -> None:
    """A token for another site, whatever roles it holds, gets 403 FORBIDDEN and nothing else on
    every declared authenticated route (the list is enumerated, so a new route is covered)."""
    client, me, peer = api
    other = auth("other-site", ("site_admin", "system", "ingest"))
    for method, path in _route_cases():
        status, body = await _call(client, method, path, other)
        assert (status, body.get("code")) == (403, "FORBIDDEN"), (method, path, body)
        assert set(body) <= ERROR_KEYS, (method, path, body)
    assert me.sent == [] and peer.sent == []


@pytest.mark.parametrize("roles", [(), ("ingest",), ("system",), ("reader", "SITE_ADMIN")])
async def test_every_authenticated_route_refuses_a_token_without_the_role_it_needs(api: Any,
                                                                                     roles: tuple[str, ...]) -> None:
    """A token for the right site but without the role a route needs (docs/api.md: site_admin;
    catalog writes also system; ingest system or ingest) gets 403 FORBIDDEN and no data. Roles
    are compared exactly: "SITE_ADMIN" is not site_admin."""
    client, me, peer = api
    may = (SYSTEM_MAY if "system" in roles else set()) | (INGEST_MAY if "ingest" in roles else set())
    for (method, path), (_, pattern) in zip(_route_cases(), AUTHENTICATED):
        if (method, pattern) in may:
            continue
        status, body = await _call(client, method, path, auth(roles=roles))
        assert (status, body.get("code")) == (403, "FORBIDDEN"), (method, path, roles, body)
        assert set(body) <= ERROR_KEYS, (method, path, body)
    assert me.sent == [] and peer.sent == []


# ----------------------------------------------------------------------------------- rules:bulk
def _rule(rid: str, **kw: Any) -> dict[str, Any]:
    return {**RULE, "rule_id": rid, **kw}


BULK_CASES = [
    ({}, 400, "INVALID_FIELD", "$.rules"),
    ({"rules": []}, 400, "INVALID_FIELD", "$.rules"),
    ({"rules": None}, 400, "INVALID_FIELD", "$.rules"),
    ({"rules": {"r": RULE}}, 400, "INVALID_FIELD", "$.rules"),
    ({"rules": [_rule(f"r{i}") for i in range(1001)]}, 400, "LIMIT_EXCEEDED", "$.rules"),
    ({"rules": [_rule("a"), _rule("b"), _rule("a")]}, 400, "INVALID_FIELD", "$.rules[2].rule_id"),
    ({"rules": [_rule("a"), 1]}, 400, "INVALID_BODY", "$.rules[1]"),
    ({"rules": [None]}, 400, "INVALID_BODY", "$.rules[0]"),
    ({"rules": [[RULE]]}, 400, "INVALID_BODY", "$.rules[0]"),
    ({"rules": [{"type": "Batch", "payload": {"operations": [RULE]}}]}, 400, "INVALID_FIELD", "$.rules[0].payload"),
    ({"rules": [_rule("x" * 100_000)]}, 400, "INVALID_FIELD", "$.rules[0].rule_id"),
    ({"rules": [_rule("a/b")]}, 400, "INVALID_ID", "$.rules[0].rule_id"),
    ({"rules": [_rule("ok", name="n" * 100_000)]}, 400, "INVALID_FIELD", "$.rules[0].name"),
    ({"rules": [_rule("ok", enabled="yes")]}, 400, "INVALID_FIELD", "$.rules[0].enabled"),
    ({"rules": [_rule("ok", enabled=None)]}, 400, "INVALID_FIELD", "$.rules[0].enabled"),
    ({"rules": [_rule("ok", segment_id=5)]}, 400, "INVALID_FIELD", "$.rules[0].segment_id"),
    ({"rules": [_rule("ok", condition=5)]}, 400, "INVALID_CONDITION", "$.rules[0].condition"),
    ({"rules": [_rule("ok", condition=["department"])]}, 400, "INVALID_CONDITION", "$.rules[0].condition"),
    ({"rules": [_rule("ok", confirm={"removed": 1})]}, 400, "INVALID_FIELD", "$.rules[0].confirm"),
    ({"rules": [_rule("ok")], "confirm": 5}, 400, "INVALID_FIELD", "$.confirm"),
    ({"rules": [_rule("ok")], "confirm": None}, 400, "INVALID_FIELD", "$.confirm"),
    ({"rules": [_rule("ok")], "confirm": {"removed": 1, "also": 2}}, 400, "INVALID_FIELD", "$.confirm"),
    ({"rules": [_rule("ok")], "confirm": {"removed": "1"}}, 400, "INVALID_FIELD", "$.confirm.removed"),
    ({"rules": [_rule("ok")], "confirm": {"removed": -1}}, 400, "INVALID_FIELD", "$.confirm.removed"),
    ({"rules": [_rule("ok")], "confirm": {"removed": 1.5}}, 400, "INVALID_FIELD", "$.confirm.removed"),
    ({"rules": [_rule("ok")], "confirm": {"removed": True}}, 400, "INVALID_FIELD", "$.confirm.removed"),
    ({"rules": [_rule("ok")], "extra": 1}, 400, "INVALID_FIELD", "$.extra"),
]


@pytest.mark.parametrize("dry_run", [False, True])
@pytest.mark.parametrize("body,status,code,path", BULK_CASES,
                         ids=[f"case{i}" for i in range(len(BULK_CASES))])
async def test_a_bad_bulk_rules_body_is_a_4xx_at_its_path_and_sends_nothing(api: Any, body: Any, status: int,
                                                                           code: str, path: str, dry_run: bool) -> None:
    """Empty, over 1,000, duplicate ids, items that are not rules, huge strings, wrong types,
    a Batch smuggled in as an item, a malformed confirm: each is refused whole, with its code
    and the JSON path of the culprit, and no command is produced."""
    client, me, _ = api
    r = await client.post(f"{S}/rules:bulk" + ("?dry_run=true" if dry_run else ""), headers=auth(), json=body)
    got, answer_body = await answer(r)
    assert (got, answer_body.get("code"), answer_body.get("path")) == (status, code, path), answer_body
    assert me.sent == []


@pytest.mark.parametrize("raw,code", [("", "INVALID_JSON"), ("null", "INVALID_BODY"), ("[]", "INVALID_BODY"),
                                      ('"rules"', "INVALID_BODY"), ('{"rules": [', "INVALID_JSON"),
                                      ('{"rules": [' * 40, "JSON_TOO_DEEP"), ('{"rules": NaN}', "INVALID_FIELD")])
async def test_a_bulk_rules_body_that_is_not_an_object_is_400(api: Any, raw: str, code: str) -> None:
    """Not JSON, JSON that is not an object, nesting deeper than a rule can be: 400 with a code."""
    client, me, _ = api
    r = await client.post(f"{S}/rules:bulk", headers={**auth(), "Content-Type": "application/json"}, data=raw)
    status, body = await answer(r)
    assert (status, body.get("code")) == (400, code), body
    assert me.sent == []


async def test_a_bulk_rule_the_catalog_refuses_is_422_on_dry_run_and_one_rejected_batch_otherwise(api: Any) -> None:
    """A rule for a segment that does not exist: the dry run lists it (422, its index and path);
    sent for real it is one Batch command (the worker rejects it whole with the same code)."""
    client, me, _ = api
    body = {"rules": [_rule("good"), _rule("bad", segment_id="nope")]}
    status, dry = await answer(await client.post(f"{S}/rules:bulk?dry_run=true", headers=auth(), json=body))
    assert status == 422 and dry["code"] == "UNKNOWN_SEGMENT", dry
    assert [(e["index"], e["rule_id"], e["path"]) for e in dry["errors"]] == [(1, "bad", "$.rules[1].segment_id")]
    assert me.sent == []
    status, sent = await answer(await client.post(f"{S}/rules:bulk", headers=auth(), json=body))
    assert status == 202 and sent["status"] == "PENDING", sent
    (cmd,) = me.sent
    assert cmd.payload_type == "Batch" and [o["payload"]["rule_id"] for o in cmd.payload["operations"]] == [
        "good", "bad"]


# ------------------------------------------------------------------------------- site settings
SETTINGS_CASES = [
    ('{"large_change_min_removed": -1}', "large_change_min_removed"),
    ('{"large_change_min_removed": "5"}', "large_change_min_removed"),
    ('{"large_change_min_removed": 1.5}', "large_change_min_removed"),
    ('{"large_change_min_removed": true}', "large_change_min_removed"),
    ('{"large_change_min_removed": 2147483648}', "large_change_min_removed"),
    ('{"large_change_min_removed": NaN}', "large_change_min_removed"),
    ('{"large_change_min_removed": 1e999}', "large_change_min_removed"),
    ('{"large_change_min_removed": ' + "9" * 400 + "}", "large_change_min_removed"),
    ('{"large_change_ratio": -0.1}', "large_change_ratio"),
    ('{"large_change_ratio": 1.0000001}', "large_change_ratio"),
    ('{"large_change_ratio": "0.5"}', "large_change_ratio"),
    ('{"large_change_ratio": false}', "large_change_ratio"),
    ('{"large_change_ratio": NaN}', "large_change_ratio"),
    ('{"large_change_ratio": Infinity}', "large_change_ratio"),
    ('{"large_change_ratio": -Infinity}', "large_change_ratio"),
    ('{"large_change_ratio": 1e999}', "large_change_ratio"),
    ('{"large_change_ratio": [0.5]}', "large_change_ratio"),
    # an integer too large for a float: math.isfinite raised OverflowError (a 500 INTERNAL)
    ('{"large_change_ratio": ' + "9" * 400 + "}", "large_change_ratio"),
    ('{"large_change_ratio": 2}', "large_change_ratio"),
]


@pytest.mark.parametrize("raw,field", SETTINGS_CASES, ids=[f"case{i}" for i in range(len(SETTINGS_CASES))])
async def test_a_bad_setting_is_400_at_its_field_and_sends_nothing(api: Any, raw: str, field: str) -> None:
    """Negative, NaN, Infinity, strings, booleans, huge numbers: 400 INVALID_FIELD at the field."""
    client, me, _ = api
    r = await client.put(f"{S}/settings", headers={**auth(), "Content-Type": "application/json"}, data=raw)
    status, body = await answer(r)
    assert (status, body.get("code"), body.get("path")) == (400, "INVALID_FIELD", f"$.{field}"), body
    assert me.sent == []


# ------------------------------------------------------------------------------- member search
async def _members(client: TestClient, q: str) -> tuple[int, dict[str, Any]]:
    return await answer(await client.get(f"{S}/segments/sales/members", params={"q": q, "limit": "500"},
                                         headers=auth()))


@pytest.mark.parametrize("q,expected", [
    ("U00", [f"u00{i}" for i in range(10)]),  # case-insensitive prefix of the user id, over both workers
    ("  first12   last ", ["u012"]),  # whitespace collapsed: the full name
    ("(.*)+$", []), ("[", []), ("\\", []), ("*", []), ("%", []), ("u0%", []),  # no pattern syntax
    ("\x00", []), ("\u202e", []), ("\U0001f600", []), ("u\nfirst", []),
])
async def test_search_terms_are_plain_prefixes(api: Any, q: str, expected: list[str]) -> None:
    """Control characters, pattern syntax and unicode are matched literally: 200 with exactly
    the members whose id, name or e-mail starts with the term (none here), never an error."""
    client, _, _ = api
    status, body = await _members(client, q)
    assert status == 200, body
    assert [m["user_id"] for m in body["members"]] == expected


@pytest.mark.parametrize("q", ["ß" * 200, "\ufb03" * 255, "\u0390" * 100])
async def test_a_term_within_the_limit_whose_case_folding_is_longer_still_searches(api: Any, q: str) -> None:
    """The limit is 255 characters of the term as sent (docs/api.md). "ß" folds to "ss" and
    "ﬃ" to "ffi": a term of 200 such characters is within it; it was refused 400 ("q is 400
    characters long") because each worker checked the limit again on the folded term."""
    client, _, _ = api
    status, body = await _members(client, q)
    assert (status, body.get("members")) == (200, []), body


@pytest.mark.parametrize("q", ["a" * 256, "ß" * 256, "x" * 8000])
async def test_a_term_over_the_limit_is_400_at_q(api: Any, q: str) -> None:
    client, _, _ = api
    status, body = await _members(client, q)
    assert (status, body.get("code"), body.get("path")) == (400, "INVALID_PARAMETER", "$query.q"), body


async def test_the_internal_member_read_takes_a_folded_term_up_to_three_times_the_limit(api: Any) -> None:
    """What a worker passes to its peers is the folded term (at most 3 x 255 characters); longer is 400."""
    client, _, _ = api
    path = f"/internal{S}/segments/sales/members"
    status, body = await answer(await client.get(path, params={"q": "s" * 765}, headers=auth()))
    assert (status, body.get("members")) == (200, []), body
    status, body = await answer(await client.get(path, params={"q": "s" * 766}, headers=auth()))
    assert (status, body.get("code"), body.get("path")) == (400, "INVALID_PARAMETER", "$query.q"), body


@pytest.mark.parametrize("query,path", [("limit=0", "$query.limit"), ("limit=501", "$query.limit"),
                                        ("limit=", "$query.limit"),  # not an integer (found by schemathesis)
                                        ("limit=-1", "$query.limit"), ("limit=1e3", "$query.limit"),
                                        ("limit=" + "9" * 40, "$query.limit"), ("cursor=!!", "$query.cursor"),
                                        ("cursor=%ff%fe", "$query.cursor"), ("cursor=gA", "$query.cursor"),
                                        ("q=a&q=b", "$query.q"), ("after=u001", "$query.after")])
async def test_bad_member_list_bounds_are_400_at_their_parameter(api: Any, query: str, path: str) -> None:
    client, _, _ = api
    status, body = await answer(await client.get(f"{S}/segments/sales/members?{query}", headers=auth()))
    assert (status, body.get("code"), body.get("path")) == (400, "INVALID_PARAMETER", path), body


# --------------------------------------------------------------------------------- members.csv
HOSTILE_NAMES = {
    "u000": ("=cmd|' /C calc'!A0", "Last", "u0@ex.org"),
    "u001": ("+1", "x", "+1@ex.org"),
    "u002": ("-2+3", "", "-@ex.org"),
    "u003": ("@SUM(A1)", "y", "@ex.org"),
    "u004": ("\t=1", "z", "\r=2@ex.org"),
    "u005": ('Quote "q" Name', "New\nLine", "a,b@ex.org"),
    "u006": ("'quoted", "", ""),
}


async def test_the_csv_export_neutralises_formulas_and_keeps_quotes_and_newlines_readable(api: Any) -> None:
    """Names and e-mails starting with =, +, -, @ (also after the tab or CR a profile may hold)
    are exported with a leading single quote (a spreadsheet shows them as text); a value with
    quotes, commas or a newline reads back as one cell (RFC 4180)."""
    client, me, peer = api
    for m in (me, peer):
        for u in m.store._users:
            if u.user_id in HOSTILE_NAMES:
                first, last, mail = HOSTILE_NAMES[u.user_id]
                u.profile.update(firstname=first, lastname=last, email=mail)
    r = await client.get(f"{S}/segments/sales/members.csv", headers=auth())
    assert r.status == 200, await r.text()
    rows = {row[0]: row for row in csv.reader(io.StringIO((await r.read()).decode("utf-8-sig")))}
    got = {u: (rows[u][1], rows[u][2]) for u in HOSTILE_NAMES}
    assert got == {
        "u000": ("'=cmd|' /C calc'!A0 Last", "u0@ex.org"),
        "u001": ("'+1 x", "'+1@ex.org"),
        "u002": ("'-2+3", "'-@ex.org"),
        "u003": ("'@SUM(A1) y", "'@ex.org"),
        "u004": ("'=1 z", "'=2@ex.org"),  # whitespace collapsed first, so the '=' leads: quoted
        "u005": ('Quote "q" Name New Line', "a,b@ex.org"),
        "u006": ("''quoted", ""),
    }
    assert len(rows) == 101  # the header and the 100 members of both workers


# ------------------------------------------------------------------------------- segments:bulk
async def test_bad_segment_rows_are_rejected_one_by_one_and_the_good_row_is_sent(api: Any) -> None:
    """Rows that are not objects, wrong types, huge or bad ids, unknown fields, a repeated
    segment: each REJECTED with its code and path; the one good row is the only operation sent."""
    client, me, _ = api
    rows = [1, None, {"segment_id": 5, "name": "Five"}, {"segment_id": "a" * 300, "name": "A"},
            {"segment_id": "a/b", "name": "A"}, {"segment_id": "ok", "name": "OK"}, {"segment_id": "ok", "name": "OK"},
            {"segment_id": "m", "name": "M", "managed": "yes"}, {"segment_id": "n", "name": "N" * 10_000},
            {"segment_id": "x", "name": "X", "extra": True}]
    status, body = await answer(await client.post(f"{S}/segments:bulk", headers=auth(), json={"segments": rows}))
    assert status == 200, body
    got = [(r["index"], r["status"], r.get("code"), r.get("path")) for r in body["results"]]
    assert got == [
        (0, "REJECTED", "INVALID_ROW", "$.segments[0]"), (1, "REJECTED", "INVALID_ROW", "$.segments[1]"),
        (2, "REJECTED", "INVALID_ID", "$.segments[2].segment_id"), (3, "REJECTED", "INVALID_ID", "$.segments[3].segment_id"),
        (4, "REJECTED", "INVALID_ID", "$.segments[4].segment_id"), (5, "QUEUED", None, None),
        (6, "REJECTED", "DUPLICATE_ROW", "$.segments[6].segment_id"),
        (7, "REJECTED", "INVALID_FIELD", "$.segments[7].managed"), (8, "REJECTED", "INVALID_FIELD", "$.segments[8].name"),
        (9, "REJECTED", "INVALID_FIELD", "$.segments[9].extra")]
    assert (body["created"], body["rejected"]) == (1, 9)
    (cmd,) = me.sent
    assert [(o["type"], o["payload"]["segment_id"]) for o in cmd.payload["operations"]] == [("UpsertSegment", "ok")]


@pytest.mark.parametrize("body", [{"segments": []}, {"segments": "x"}, {"segments": [{"segment_id": f"s{i}", "name": "S"}
                                                                                      for i in range(1001)]},
                                  {"rows": []}])
async def test_a_segments_bulk_body_without_1_to_1000_rows_is_400(api: Any, body: Any) -> None:
    client, me, _ = api
    status, answer_body = await answer(await client.post(f"{S}/segments:bulk", headers=auth(), json=body))
    assert status == 400 and answer_body["code"] == "INVALID_FIELD", answer_body
    assert me.sent == []


# ------------------------------------------------------------------------- rules:impact, impact
async def test_rules_impact_answers_each_bad_item_and_sends_nothing(api: Any) -> None:
    """Items that are not rules are listed invalid with their code and path; nothing is produced."""
    client, me, _ = api
    body = {"rules": [1, None, {"rule_id": 5}, {"rule_id": {"a": 1}}, _rule("ok")]}
    status, got = await answer(await client.post(f"{S}/rules:impact", headers=auth(), json=body))
    assert status == 200, got
    assert [(r["valid"], r.get("code"), r.get("path")) for r in got["rules"]] == [
        (False, "INVALID_BODY", "$.rules[0]"), (False, "INVALID_BODY", "$.rules[1]"),
        (False, "INVALID_FIELD", "$.rules[2].rule_id"), (False, "INVALID_FIELD", "$.rules[3].rule_id"),
        (True, None, None)]
    assert me.sent == []


@pytest.mark.parametrize("commands,path", [
    (None, "$.commands"), ("x", "$.commands"), ([1], "$.commands[0]"), ([{"type": "Batch", "payload": {}}], "$.commands[0]"),
    ([{"type": "CreateRule", "payload": {"rule_id": "x"}}], "$.commands[0].payload"),
    ([{"type": "DeleteRule", "payload": {"rule_id": 5}}], "$.commands[0].payload"),
    ([{"type": "DeleteRule", "payload": {"rule_id": "r"}}] * 1001, "$.commands"),
])
async def test_the_internal_impact_read_refuses_malformed_commands(api: Any, commands: Any, path: str) -> None:
    """A peer (or anyone with a site token) sending commands that are not valid payloads: 400 at the path."""
    client, _, _ = api
    status, body = await answer(await client.post(f"/internal{S}/impact", headers=auth(), json={"commands": commands}))
    assert (status, body.get("code"), body.get("path")) == (400, "INVALID_FIELD", path), body


async def test_a_user_whose_profile_holds_odd_values_is_found_by_the_search(api: Any) -> None:
    """A stored profile with non-string names (a number, a list) is skipped by the match, not an error."""
    client, me, _ = api
    me.store._users.append(UserState(SITE, "u999", profile={"firstname": 5, "lastname": ["x"], "email": None}))
    me.store._users[-1].facts["sales"] = me.store._users[0].facts["sales"]
    status, body = await _members(client, "u999")
    assert status == 200 and [m["user_id"] for m in body["members"]] == ["u999"], body
