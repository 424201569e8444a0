"""The worker's HTTP server: the admin/query API, the gathering of reads from peer workers, the
admin console and the operations endpoints, on the aiohttp app Faust serves.

``install`` wires all of it with one call. The layer depends only on the narrow read model of
processor/http/model.py (catalog view, this worker's stored state, readiness, metrics, a sink
for writes), never on the Faust app. Only the routes declared in processor/api/routes.py are
served; every answer is ``Cache-Control: no-store``.

    api          routes and handlers (bridges, ingest, catalog_writes, user_profiles: LMS bridges)
    peers        typed internal reads: this worker answers directly, peers over bounded HTTP
    scans        time-sliced full-site scans (previews, member counts)
    console      static console files and the dev-only login
    ops          /healthz, /readyz, /metrics
"""

from __future__ import annotations

from aiohttp import web as aioweb

from processor.config import Settings
from processor.http.model import ReadModel


def install(aio_app: aioweb.Application, model: ReadModel, settings: Settings) -> None:
    """Serve the API, the internal reads, the console and the ops endpoints on ``aio_app``, and
    nothing else: a route not declared in processor/api/routes.py answers 404 whoever adds it.
    The caller removes Faust's own views first (they read any table key without a token)."""
    from processor.api.auth import AuthConfig
    from processor.api.routes import only_declared_routes
    from processor.http import console, ops
    from processor.http.api import Api

    aio_app.middlewares.append(only_declared_routes)
    Api(model, settings, AuthConfig.from_settings(settings)).install(aio_app)
    ops.install(aio_app, model)
    console.install(aio_app, settings)
