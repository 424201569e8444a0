"""The admin console: its static files, and the dev-only login.

The console is a static page that talks to the HTTP API only. ``/console/dev-token`` mints an
admin token for local development; it exists only with ``CONSOLE_DEV_LOGIN=1`` (set by
``make run``) and an HS256 secret, and answers only a loopback caller that also names loopback
in ``Host`` (a rebinding page on a foreign name reaches us from loopback too).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Awaitable, Callable

from aiohttp import web as aioweb

from processor.api.auth import make_token
from processor.config import Settings
from processor.contract.ids import NAME, id_problem

Handler = Callable[[aioweb.Request], Awaitable[aioweb.Response]]
STATIC = Path(__file__).resolve().parent.parent / "console" / "static"
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "connect-src 'self'; img-src 'self' data:; form-action 'self'; "
                               "base-uri 'none'; frame-ancestors 'none'",
}


def loopback_host(host: str | None) -> bool:
    """Whether a Host header names this machine's loopback: 127.0.0.1, localhost or [::1], with
    an optional port (anything else, or no Host, is not)."""
    m = re.fullmatch(r"(127\.0\.0\.1|localhost|\[::1\])(?::\d{1,5})?", (host or "").strip().lower())
    return m is not None


def dev_login_enabled(settings: Settings) -> bool:
    return (os.environ.get("CONSOLE_DEV_LOGIN", "").strip() == "1"
            and bool(settings.admin_jwt_secret) and not settings.admin_jwt_public_key)


def install(aio_app: aioweb.Application, settings: Settings) -> None:
    dev_login = dev_login_enabled(settings)

    async def index(request: aioweb.Request) -> aioweb.Response:
        html = (STATIC / "index.html").read_text(encoding="utf-8")
        html = html.replace('data-dev-login="0"', f'data-dev-login="{1 if dev_login else 0}"', 1)
        return aioweb.Response(text=html, content_type="text/html", charset="utf-8", headers=HEADERS)

    def asset(name: str, ctype: str) -> Handler:
        async def serve(request: aioweb.Request) -> aioweb.Response:
            return aioweb.Response(body=(STATIC / name).read_bytes(), content_type=ctype, charset="utf-8",
                                   headers=HEADERS)
        return serve

    async def to_index(request: aioweb.Request) -> aioweb.Response:
        raise aioweb.HTTPFound("/console/")

    async def dev_token(request: aioweb.Request) -> aioweb.Response:
        not_found = aioweb.json_response({"code": "NOT_FOUND", "message": "dev login is not enabled"},
                                         status=404, headers={"Cache-Control": "no-store"})
        loopback = request.remote in ("127.0.0.1", "::1") and loopback_host(request.headers.get("Host"))
        if not dev_login or not loopback:
            return not_found
        site = request.query.get("site", "demo")
        if id_problem(site, NAME) is not None:  # the contract's site ids (processor/contract/ids.py)
            return aioweb.json_response({"code": "INVALID_PARAMETER", "message": "site is not a valid id",
                                         "path": "$query.site"}, status=400)
        token = make_token(settings.admin_jwt_secret or "", "dev-console", site, ["site_admin"], ttl_s=8 * 3600)
        return aioweb.json_response({"token": token, "site_id": site, "dev": True},
                                    headers={"Cache-Control": "no-store"})

    aio_app.router.add_get("/console", to_index)
    aio_app.router.add_get("/console/", index)
    aio_app.router.add_get("/console/app.js", asset("app.js", "text/javascript"))
    aio_app.router.add_get("/console/app.css", asset("app.css", "text/css"))
    aio_app.router.add_get("/console/manage.js", asset("manage.js", "text/javascript"))
    aio_app.router.add_get("/console/people.js", asset("people.js", "text/javascript"))
    aio_app.router.add_get("/console/progress.js", asset("progress.js", "text/javascript"))
    aio_app.router.add_get("/console/history.js", asset("history.js", "text/javascript"))  # History, Audit
    aio_app.router.add_get("/console/dev-token", dev_token)
