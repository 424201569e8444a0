"""Operations endpoints: ``/healthz`` (the process serves), ``/readyz`` (catalog loaded and table
recovery complete: 503 until then) and ``/metrics`` (Prometheus text). Public, by design: they
carry no user or site data (processor/api/routes.py lists them)."""

from __future__ import annotations

from aiohttp import web as aioweb

from processor.http.model import ReadModel


def install(aio_app: aioweb.Application, model: ReadModel) -> None:
    async def healthz(request: aioweb.Request) -> aioweb.Response:
        return aioweb.json_response({"status": "ok"})

    async def readyz(request: aioweb.Request) -> aioweb.Response:
        catalog, tables = model.readiness()
        ready = catalog and tables
        return aioweb.json_response(
            {"ready": ready, "catalog_loaded": catalog, "tables_recovered": tables,
             "catalog_offset": model.registry.applied_offset, "counters": dict(model.counters())},
            status=200 if ready else 503)

    async def metrics(request: aioweb.Request) -> aioweb.Response:
        model.update_gauges()
        return aioweb.Response(body=model.metrics.render(), content_type="text/plain")

    aio_app.router.add_get("/healthz", healthz)
    aio_app.router.add_get("/readyz", readyz)
    aio_app.router.add_get("/metrics", metrics)
