"""The worker's whole HTTP route table is the declared one (processor/api/routes.py).

The app is the real one: ``Processor`` builds the Faust app exactly as ``python -m processor
worker`` does, and Faust then installs its views the way its worker does on start
(``worker_init``, ``worker_init_post_autodiscover``, ``Web.on_start``). No broker is needed:
nothing here connects to Kafka. Requests go through aiohttp's test server to the same
``web_app`` Faust would serve.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest
from aiohttp import web as aioweb
from aiohttp.test_utils import TestClient, TestServer

from processor.api.auth import AuthConfig, make_token, verify_token
from processor.api.routes import AUTHENTICATED, PUBLIC, declared
from processor.config import Settings

ROOT = Path(__file__).resolve().parents[2]
SECRET = "unit-test-secret-0123456789-abcdefghijkl"


@pytest.fixture
def proc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from processor.runtime.app import Runtime

    monkeypatch.setenv("CONSOLE_DEV_LOGIN", "1")
    p = Runtime(Settings(bootstrap_servers="127.0.0.1:9", state_dir=tmp_path / "state",
                           admin_jwt_secret=SECRET))
    yield p


async def _faust_started(p: Any) -> aioweb.Application:
    """Let Faust install its views as its worker does when it starts."""
    p.app.worker_init()
    p.app.worker_init_post_autodiscover()
    await p.app.web.on_start()  # init_server again (idempotent) and CORS set-up
    return p.app.web.web_app


@pytest.fixture
async def client(proc: Any) -> AsyncIterator[TestClient]:
    aio = await _faust_started(proc)
    async with TestClient(TestServer(aio)) as c:
        yield c


def _route_table(aio: aioweb.Application) -> set[tuple[str, str]]:
    out = set()
    for r in aio.router.routes():
        res = r.resource
        out.add((r.method, res.canonical if res is not None else repr(r)))
    return out


def _fill(pattern: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", pattern)


async def test_route_table_is_exactly_the_declared_lists(proc: Any) -> None:
    """Every route of the worker's aiohttp router (after Faust installed its views) is on the
    public or the authenticated list, and every listed route is served: a new Faust version or
    a new view cannot add a route silently."""
    table = _route_table(await _faust_started(proc))
    undeclared = sorted(r for r in table if not declared(*r))
    assert not undeclared, f"routes on neither list in processor/api/routes.py: {undeclared}"
    missing = sorted((set(PUBLIC) | set(AUTHENTICATED)) - table)
    assert not missing, f"declared but not served: {missing}"


async def test_faust_table_router_and_index_views_are_not_served(client: TestClient) -> None:
    """/table/users/<key>/ (a stored profile), /table/, /router/, / and Faust's other pages: 404 JSON."""
    for path in ("/table/", "/table/users/", "/table/users/u%3Asite%3Aalice/", "/router/", "/router/topics",
                 "/router/users/", "/", "/graph/", "/stats/", "/assignment/", "/performance/"):
        r = await client.get(path)
        assert r.status == 404, path
        assert (await r.json())["code"] == "NOT_FOUND", path


async def test_authenticated_routes_answer_401_without_a_valid_token(client: TestClient) -> None:
    """Each listed authenticated route refuses a request with no token, and one with a forged token."""
    forged = make_token("another-secret-with-at-least-32-bytes!!", "eve", "x1", ["site_admin"])
    for method, pattern in AUTHENTICATED:
        body = {} if method in ("POST", "PUT") else None
        r = await client.request(method, _fill(pattern), json=body)
        assert r.status == 401, (method, pattern, r.status)
        assert (await r.json())["code"] == "UNAUTHENTICATED", (method, pattern)
        r = await client.request(method, _fill(pattern), json=body, headers={"Authorization": f"Bearer {forged}"})
        assert r.status == 401, (method, pattern, r.status)
        assert (await r.json())["code"] == "INVALID_TOKEN", (method, pattern)


async def test_public_routes_answer_without_a_token(client: TestClient) -> None:
    """The public list really is public (no 401), and wrong methods on it are a JSON 405."""
    for method, pattern in PUBLIC:
        r = await client.request(method, pattern, allow_redirects=False)
        assert r.status in (200, 302, 404, 503), (pattern, r.status)  # dev-token: 404 unless loopback Host
        assert r.status != 401
    r = await client.post("/healthz")
    assert r.status == 405 and r.headers["Allow"] == "GET, HEAD"
    assert (await r.json())["code"] == "METHOD_NOT_ALLOWED"


async def test_an_undeclared_route_registered_later_is_still_404(proc: Any) -> None:
    """Defence in depth: a route that gets into the router without being declared (a future Faust
    view, a plugin) is answered 404 by the middleware, and its handler never runs."""
    aio = await _faust_started(proc)
    ran: list[str] = []

    async def leak(request: aioweb.Request) -> aioweb.Response:
        ran.append(request.path)
        return aioweb.json_response({"email": "alice@example.com"})

    aio.router.add_get("/table/{name}/{key}/", leak)
    aio.router.add_post("/sites/{site}/backdoor", leak)
    async with TestClient(TestServer(aio)) as c:
        for method, path in (("GET", "/table/users/k/"), ("POST", "/sites/x1/backdoor"), ("GET", "/nope")):
            r = await c.request(method, path)
            assert r.status == 404, path
            body = await r.text()
            assert "alice" not in body and '"NOT_FOUND"' in body, path
    assert ran == []


def test_docs_list_every_route() -> None:
    """docs/api.md names every declared route, and no other (it is the published list)."""
    doc = (ROOT / "docs" / "api.md").read_text()
    norm = lambda p: re.sub(r"\{[^}]+\}", "{}", p)  # noqa: E731 - parameter names may differ
    documented = {(m, norm(p)) for m, p in re.findall(r"`(GET|POST|PUT|DELETE) (/[^`?\s]*)", doc)}
    listed = {(m, norm(p)) for m, p in (*PUBLIC, *AUTHENTICATED)}
    assert sorted(listed - documented) == []
    assert sorted(documented - listed) == []


async def test_dev_token_needs_a_loopback_host_header(client: TestClient) -> None:
    """With dev login on, a loopback caller gets a token only when Host names loopback too: a
    page on a rebinding name (evil.example resolving to 127.0.0.1) is answered 404."""
    for host in ("evil.example", "evil.example:6066", "127.0.0.1.evil.example", "localhost.evil.example",
                 "10.0.0.1:6066", ""):
        r = await client.get("/console/dev-token?site=demo", headers={"Host": host})
        assert r.status == 404, host
        assert "token" not in await r.json(), host
    for host in ("127.0.0.1", "localhost:6066", "LOCALHOST", "[::1]:6066", "127.0.0.1:1234"):
        r = await client.get("/console/dev-token?site=demo", headers={"Host": host})
        assert r.status == 200, host
        body = await r.json()
        assert verify_token(body["token"], AuthConfig(secret=SECRET)).site_id == "demo"
