"""Hypothesis fuzz of the new JSON bodies over HTTP (rules:bulk, rules:impact, segments:bulk,
settings, the internal impact read) and of the member search term, on one served worker of
processor/http over the in-memory store of tests/unit/api/test_guard_http.py.

Whatever the body: never a 500, every 4xx carries a machine code, and a refused write produces
no command. Bodies are built from the fields each endpoint knows, with values of every JSON
type (huge integers, NaN, deep lists, control characters), so most examples get past the
top-level checks. Short run by default; ``-m fuzz`` runs 10x.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor import http
from processor.api.auth import make_token
from processor.config import Settings
from tests.unit.api.test_guard_http import SECRET, SITE, Model, _seed, _user

S = f"/sites/{SITE}"
AUTH = {"Authorization": f"Bearer {make_token(SECRET, 'alice', SITE, ['site_admin'], ttl_s=86400)}",
        "Content-Type": "application/json"}

huge = st.integers(min_value=2**1024, max_value=10**400)  # beyond any float (json reads them as int)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), huge,
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
                    st.sampled_from(["sales", "dept", "senior", "", "a/b", "x" * 300, "\x00", "=cmd"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)
conditions = st.one_of(values, st.sampled_from([
    'department == "Sales"', "department ==", {"field": "department", "op": "equals", "value": "HR"},
    {"all": []}, {"field": "lastlogin", "op": "on", "value": "9999-12-31"}, {"not": {"not": {}}}]))


def _obj(fields: dict[str, Any], extra: bool = True) -> Any:
    """Objects holding some of ``fields`` (each with its own strategy or any value), sometimes an unknown key."""
    known = st.fixed_dictionaries({}, optional={k: st.one_of(v, values) for k, v in fields.items()})
    if not extra:
        return known
    return st.one_of(known, st.tuples(known, st.text(min_size=1, max_size=5), values).map(
        lambda t: {**t[0], t[1]: t[2]}))


rule = _obj({"rule_id": st.sampled_from(["new", "dept", "senior", "x" * 256]), "segment_id": st.sampled_from(
    ["sales", "nope"]), "name": st.text(max_size=10), "condition": conditions, "enabled": st.booleans()})
confirm = st.one_of(values, st.fixed_dictionaries({"removed": values}))
BODIES: dict[str, tuple[str, str, Any]] = {
    "rules:bulk": ("POST", f"{S}/rules:bulk", _obj({"rules": st.lists(st.one_of(rule, values), max_size=5),
                                                    "confirm": confirm})),
    "rules:bulk dry": ("POST", f"{S}/rules:bulk?dry_run=true", _obj({"rules": st.lists(rule, max_size=5)})),
    "rules:impact": ("POST", f"{S}/rules:impact", _obj({"rules": st.lists(st.one_of(rule, values), max_size=5)})),
    "segments:bulk": ("POST", f"{S}/segments:bulk", _obj({"segments": st.lists(st.one_of(_obj(
        {"segment_id": st.sampled_from(["sales", "new", "a/b"]), "name": st.text(max_size=10),
         "managed": st.one_of(st.booleans(), st.none())}), values), max_size=5)})),
    "settings": ("PUT", f"{S}/settings", _obj({"large_change_min_removed": st.one_of(st.integers(-5, 10**12), huge),
                                               "large_change_ratio": st.one_of(st.floats(), st.integers(), huge)})),
    "internal impact": ("POST", f"/internal{S}/impact", _obj({"commands": st.lists(st.one_of(_obj(
        {"type": st.sampled_from(["CreateRule", "DeleteRule", "Batch", "SetSiteSettings", "Nope"]),
         "payload": values}), values), max_size=3)})),
    "create rule": ("POST", f"{S}/rules", st.one_of(rule, _obj({"confirm": confirm}))),
}


class Served:
    """One worker of processor/http on an event loop of its own, for hypothesis' synchronous examples."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.model = Model([_user(i) for i in range(130)])
        app = web.Application()
        http.install(app, self.model, Settings(bootstrap_servers="127.0.0.1:9", admin_jwt_secret=SECRET,
                                               api_write_rate_per_minute=10**9))
        self.client = TestClient(TestServer(app, host="127.0.0.1"), loop=self.loop)
        self.loop.run_until_complete(self.client.start_server())
        self.model.url = str(self.client.make_url("")).rstrip("/")
        self.model.peers = [self.model.url]
        _seed(self.model.registry)

    def call(self, method: str, path: str, data: str | None = None, params: Any = None) -> tuple[int, Any]:
        async def go() -> tuple[int, Any]:
            r = await self.client.request(method, path, data=data, params=params, headers=AUTH)
            text = await r.text()
            try:
                return r.status, json.loads(text)
            except ValueError:
                return r.status, text

        return self.loop.run_until_complete(go())

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


@pytest.fixture(scope="module")
def served() -> Any:
    s = Served()
    yield s
    s.close()


def _never_500(served: Served, examples: int) -> Callable[[str], None]:
    def run(name: str) -> None:
        method, path, strategy = BODIES[name]

        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
        @given(body=strategy)
        def check(body: Any) -> None:
            sent = len(served.model.sent)
            status, answer = served.call(method, path, json.dumps(body))
            assert status < 500, (name, body, answer)
            assert isinstance(answer, dict), (name, body, answer)
            if status >= 400:
                assert answer.get("code") and answer.get("message"), (name, body, answer)
                assert len(served.model.sent) == sent, (name, body, answer)

        check()

    return run


@pytest.mark.parametrize("name", sorted(BODIES))
def test_no_body_gets_a_500_or_an_error_without_a_code(served: Served, name: str) -> None:
    """Short default run (60 bodies per endpoint)."""
    _never_500(served, 60)(name)


@pytest.mark.fuzz
@pytest.mark.parametrize("name", sorted(BODIES))
def test_no_body_gets_a_500_long_run(served: Served, name: str) -> None:
    _never_500(served, 600)(name)


def test_no_search_term_gets_a_500(served: Served) -> None:
    """Any term up to 300 characters, any code point: 200, or 400 INVALID_PARAMETER over 255."""

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(q=st.text(max_size=300))
    def check(q: str) -> None:
        status, answer = served.call("GET", f"{S}/segments/sales/members", params={"q": q})
        if len(q) > 255:
            assert (status, answer["code"]) == (400, "INVALID_PARAMETER"), (q, answer)
        else:
            assert status == 200 and isinstance(answer["members"], list), (q, answer)

    check()
