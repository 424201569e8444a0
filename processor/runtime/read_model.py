"""What the HTTP layer may read and do: the narrow interface it gets instead of the worker.

The catalog view, this worker's partitions of the users table (processor/runtime/store.py's
``TableReads``: members, a user, a page of users, full-site scans), readiness, metrics, the
workers to gather from, and two writes: a command, and the ingest endpoint's producer.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Mapping

from processor.runtime import clients

if TYPE_CHECKING:
    from processor.runtime.app import Runtime


class WorkerReadModel:
    def __init__(self, runtime: "Runtime") -> None:
        self._rt = runtime
        self.settings = runtime.settings
        self.registry = runtime.registry
        self.store = runtime.store
        self.metrics = runtime.metrics
        self.log = logging.getLogger("processor")
        self.history = runtime.history.reads if runtime.history else None  # processor/history (None: disabled)

    def counters(self) -> Mapping[str, int]:
        return self._rt.stats.counters

    def readiness(self) -> tuple[bool, bool]:
        return self._rt.readiness()

    def update_gauges(self) -> None:
        self._rt.update_gauges()

    def self_url(self) -> str:
        return str(self._rt.app.conf.canonical_url).rstrip("/")

    def peer_urls(self) -> list[str]:
        """Base URLs of every worker owning users-table partitions (this one included)."""
        try:
            meta = self._rt.app.router.table_metadata(self._rt.table.name)
            urls = sorted({str(u).rstrip("/") for u in meta})
        except Exception:  # noqa: BLE001 - not assigned yet
            urls = []
        return urls or [self.self_url()]

    async def send_command(self, site_id: str, value: bytes) -> None:
        await self._rt.commands_out.send(key=site_id.encode(), value=value)

    def ingest_producer(self, delivery_timeout_s: float) -> Any:
        return clients.ingest_producer(self.settings, delivery_timeout_s)
