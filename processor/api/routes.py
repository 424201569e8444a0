"""The only HTTP routes a worker serves: one public list, one authenticated list.

Faust ships web views of its own (``/table/<name>/<key>/`` reads any table key, ``/router/``
shows the cluster, ``/`` sensor stats); a worker serves none of them (the runtime
removes Faust's blueprints). :func:`only_declared_routes` is the second line: whatever gets
into the aiohttp router, a request that does not match a route on these lists is answered
``404 NOT_FOUND``. ``tests/unit/test_routes.py`` fails on any route of the real worker's
route table that is on neither list, so a new Faust version or a new view cannot open a
route silently. ``HEAD`` is allowed wherever ``GET`` is (aiohttp adds it to every GET route).

Every route on :data:`AUTHENTICATED` answers 401 without a valid bearer token (its handler
authenticates first). Routes on :data:`PUBLIC` carry no user or site data.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Awaitable, Callable

from aiohttp import web as aioweb

Route = tuple[str, str]  # (method, aiohttp path pattern)

PUBLIC: tuple[Route, ...] = (
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/console"),  # redirect to /console/
    ("GET", "/console/"),
    ("GET", "/console/app.js"),
    ("GET", "/console/app.css"),
    ("GET", "/console/manage.js"),  # catalog screens and the large-change dialog
    ("GET", "/console/people.js"),  # member search and CSV export
    ("GET", "/console/progress.js"),
    ("GET", "/console/history.js"),  # the History and Audit views
    # 404 unless CONSOLE_DEV_LOGIN=1 with an HS256 secret, a loopback peer and a loopback Host
    ("GET", "/console/dev-token"),
)

_S = "/sites/{site}"
AUTHENTICATED: tuple[Route, ...] = (
    ("GET", f"{_S}/fields"),
    ("GET", f"{_S}/segments"),
    ("POST", f"{_S}/segments/{{segment}}/automation"),
    ("GET", f"{_S}/segments/{{segment}}/members"),
    ("GET", f"{_S}/segments/{{segment}}/members.csv"),  # the whole list, streamed (processor/http/people.py)
    ("GET", f"{_S}/rules"),
    ("POST", f"{_S}/rules"),
    ("POST", f"{_S}/rules/preview"),
    ("PUT", f"{_S}/rules/{{rule}}"),
    ("DELETE", f"{_S}/rules/{{rule}}"),
    ("POST", f"{_S}/rules:bulk"),  # many rules as one Batch command (processor/http/progress.py)
    ("GET", f"{_S}/commands/{{command}}"),
    ("GET", f"{_S}/users/{{user}}/segments"),
    ("GET", f"{_S}/users/{{user}}/segments/{{segment}}/explain"),
    # history and audit (processor/http/history.py)
    ("GET", f"{_S}/users/{{user}}/history"),
    ("GET", f"{_S}/segments/{{segment}}/history"),
    ("GET", f"{_S}/audit"),
    # catalog writes and bridges (docs/api.md "Bridges"; processor/http/bridges.py)
    ("PUT", f"{_S}/segments/{{segment}}"),
    ("DELETE", f"{_S}/segments/{{segment}}"),
    ("PUT", f"{_S}/fields/{{shortname}}"),
    ("DELETE", f"{_S}/fields/{{shortname}}"),
    ("POST", f"{_S}/ingest/users"),
    ("GET", f"{_S}/users"),
    # catalog management and guarded changes (processor/http/catalog_admin.py, guard.py)
    ("GET", f"{_S}/settings"),
    ("PUT", f"{_S}/settings"),
    ("POST", f"{_S}/segments:bulk"),
    ("POST", f"{_S}/rules:impact"),
    # worker-to-worker reads (the caller's token is forwarded)
    ("GET", f"/internal{_S}/profiles"),
    ("GET", f"/internal{_S}/segments/{{segment}}/members"),
    ("GET", f"/internal{_S}/counts"),
    ("GET", f"/internal{_S}/users/{{user}}"),
    ("POST", f"/internal{_S}/preview"),
    ("POST", f"/internal{_S}/impact"),
)

DECLARED: frozenset[Route] = frozenset(PUBLIC) | frozenset(AUTHENTICATED)


def declared(method: str, pattern: str) -> bool:
    """Whether ``method pattern`` (an aiohttp route: canonical path pattern) is on a list."""
    method = method.upper()
    return (method, pattern) in DECLARED or (method == "HEAD" and ("GET", pattern) in DECLARED)


def _pattern_regex(pattern: str) -> str:
    parts = re.split(r"(\{[^}/]+\})", pattern)
    return "^" + "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + "$"


@lru_cache(maxsize=None)
def _matchers() -> tuple[tuple[str, "re.Pattern[str]"], ...]:
    return tuple((method, re.compile(_pattern_regex(pattern))) for method, pattern in sorted(DECLARED))


def methods_for(raw_path: str) -> set[str]:
    """The declared methods (with HEAD for GET) whose pattern matches ``raw_path``."""
    out = {m for m, rx in _matchers() if rx.match(raw_path)}
    if "GET" in out:
        out.add("HEAD")
    return out


def _not_found() -> aioweb.Response:
    return aioweb.json_response({"code": "NOT_FOUND", "message": "no such endpoint; see /openapi.json"},
                                status=404, headers={"Cache-Control": "no-store"})


Handler = Callable[[aioweb.Request], Awaitable[aioweb.StreamResponse]]


@aioweb.middleware
async def only_declared_routes(request: aioweb.Request, handler: Handler) -> Any:
    """Serve only routes on :data:`PUBLIC` / :data:`AUTHENTICATED`; anything else is a JSON 404.

    A path that is declared for other methods answers ``405 METHOD_NOT_ALLOWED`` with the
    declared methods in ``Allow``; aiohttp's own 404/405 pages become JSON as well.
    """
    match = request.match_info
    exc = getattr(match, "http_exception", None)
    if exc is not None:  # no route matched (aiohttp would answer 404 or 405)
        allowed = methods_for(request.rel_url.raw_path) & set(getattr(exc, "allowed_methods", ()) or ())
        if exc.status == 405 and allowed:
            return aioweb.json_response(
                {"code": "METHOD_NOT_ALLOWED", "message": f"use {', '.join(sorted(allowed))}"},
                status=405, headers={"Allow": ", ".join(sorted(allowed)), "Cache-Control": "no-store"})
        return _not_found()
    resource = match.route.resource
    pattern = resource.canonical if resource is not None else ""
    if not declared(request.method, pattern):
        return _not_found()
    return await handler(request)
