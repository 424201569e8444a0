"""The worker's HTTP layer, installed on Faust's aiohttp app with one call on a read model.

(rt-runtime's interim version: the admin API of processor/web.py, /metrics, /openapi.json, the
console, /healthz and /readyz, moved out of the old processor/app.py as they were. The rt-http
branch replaces this package.)
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from aiohttp import web as aioweb


def _loopback_host(host: str | None) -> bool:
    """Whether a Host header names this machine's loopback: 127.0.0.1, localhost or [::1], with
    an optional port (anything else, or no Host, is not)."""
    m = re.fullmatch(r"(127\.0\.0\.1|localhost|\[::1\])(?::\d{1,5})?", (host or "").strip().lower())
    return m is not None


def install(aio: aioweb.Application, model: Any, settings: Any) -> None:
    """Every route a worker serves (processor/api/routes.py), on ``aio``, reading ``model``."""
    from processor.api.auth import AuthConfig
    from processor.api.routes import only_declared_routes
    from processor.web import Api

    aio.middlewares.append(only_declared_routes)
    api = Api(model, AuthConfig.from_settings(settings))
    api.install(aio)

    async def metrics(request: aioweb.Request) -> aioweb.Response:
        model.update_gauges()
        return aioweb.Response(body=model.metrics.render(), content_type="text/plain")

    async def openapi(request: aioweb.Request) -> aioweb.Response:
        from processor.api.openapi import spec

        return aioweb.json_response(spec())

    async def healthz(request: aioweb.Request) -> aioweb.Response:
        return aioweb.json_response({"status": "ok"})

    async def readyz(request: aioweb.Request) -> aioweb.Response:
        catalog, tables = model.readiness()
        ready = catalog and tables
        return aioweb.json_response(
            {"ready": ready, "catalog_loaded": catalog, "tables_recovered": tables,
             "catalog_offset": model.registry.applied_offset, "counters": dict(model.counters())},
            status=200 if ready else 503)

    aio.router.add_get("/metrics", metrics)
    aio.router.add_get("/openapi.json", openapi)
    aio.router.add_get("/healthz", healthz)
    aio.router.add_get("/readyz", readyz)
    _install_console(aio, settings)


def _install_console(aio: aioweb.Application, settings: Any) -> None:
    """The admin console: static files from the package (only the HTTP API behind them), plus
    a dev-only token endpoint that exists only when CONSOLE_DEV_LOGIN=1 (set by ``make run``)."""
    from processor.api.auth import make_token
    from processor.contract.ids import NAME, id_problem

    static = Path(__file__).resolve().parent.parent / "console" / "static"
    dev_login = (os.environ.get("CONSOLE_DEV_LOGIN", "").strip() == "1"
                 and bool(settings.admin_jwt_secret) and not settings.admin_jwt_public_key)
    headers = {
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                                   "connect-src 'self'; img-src 'self' data:; form-action 'self'; "
                                   "base-uri 'none'; frame-ancestors 'none'",
    }

    async def index(request: aioweb.Request) -> aioweb.Response:
        html = (static / "index.html").read_text(encoding="utf-8")
        html = html.replace('data-dev-login="0"', f'data-dev-login="{1 if dev_login else 0}"', 1)
        return aioweb.Response(text=html, content_type="text/html", charset="utf-8", headers=headers)

    def asset(name: str, ctype: str) -> Any:
        async def serve(request: aioweb.Request) -> aioweb.Response:
            return aioweb.Response(body=(static / name).read_bytes(), content_type=ctype, charset="utf-8",
                                   headers=headers)
        return serve

    async def to_index(request: aioweb.Request) -> aioweb.Response:
        raise aioweb.HTTPFound("/console/")

    async def dev_token(request: aioweb.Request) -> aioweb.Response:
        not_found = aioweb.json_response({"code": "NOT_FOUND", "message": "dev login is not enabled"},
                                         status=404, headers={"Cache-Control": "no-store"})
        # A loopback peer is not enough: a page on a foreign name that resolves to 127.0.0.1
        # (DNS rebinding) reaches us from loopback with its own Host. Both must be loopback.
        loopback = request.remote in ("127.0.0.1", "::1") and _loopback_host(request.headers.get("Host"))
        if not dev_login or not loopback:
            return not_found
        site = request.query.get("site", "demo")
        if id_problem(site, NAME) is not None:  # the contract's site ids (processor/contract/ids.py)
            return aioweb.json_response({"code": "INVALID_PARAMETER", "message": "site is not a valid id",
                                         "path": "$query.site"}, status=400)
        token = make_token(settings.admin_jwt_secret or "", "dev-console", site, ["site_admin"], ttl_s=8 * 3600)
        return aioweb.json_response({"token": token, "site_id": site, "dev": True},
                                    headers={"Cache-Control": "no-store"})

    aio.router.add_get("/console", to_index)
    aio.router.add_get("/console/", index)
    aio.router.add_get("/console/app.js", asset("app.js", "text/javascript"))
    aio.router.add_get("/console/app.css", asset("app.css", "text/css"))
    aio.router.add_get("/console/dev-token", dev_token)
