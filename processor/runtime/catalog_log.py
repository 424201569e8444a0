"""Read the internal catalog topic into the in-memory registry.

Every worker reads the whole (single-partition) catalog log from the start
with its own group-less consumer, so all workers fold the same entries in
the same order. Agents wait on :meth:`wait_for` / :meth:`catch_up` so that a
command is always validated against, and a backfill always runs with, a
catalog at least as new as the entry that caused it.
"""

from __future__ import annotations

import asyncio
import logging

from typing import Any

from aiokafka import TopicPartition

from processor.catalog.entry import CatalogEntry
from processor.catalog.registry import CatalogRegistry

log = logging.getLogger(__name__)


class CatalogLog:
    def __init__(self, bootstrap: str, topic: str, registry: CatalogRegistry, security: Any = None) -> None:
        self.bootstrap = bootstrap
        self.security = security  # the settings' KafkaSecurity (TLS/SASL; None: plaintext)
        self.topic = topic
        self.registry = registry
        self.tp = TopicPartition(topic, 0)
        self.ready = asyncio.Event()
        self._advanced = asyncio.Condition()
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None
        self.corrupt_entries = 0

    async def start(self) -> None:
        from processor.runtime import clients

        self._consumer = clients.catalog_consumer(self.bootstrap, self.security)
        await self._consumer.start()
        self._consumer.assign([self.tp])
        await self._consumer.seek_to_beginning(self.tp)
        self._task = asyncio.create_task(self._run(), name="catalog-log")
        await self.catch_up()
        self.ready.set()
        log.info("catalog loaded: %d sites, %d commands remembered (%d forgotten), offset %d",
                 len(self.registry.sites), len(self.registry.commands), self.registry.commands.forgotten,
                 self.registry.applied_offset)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        if self._consumer:
            await self._consumer.stop()

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batches = await self._consumer.getmany(self.tp, timeout_ms=200)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - transient broker trouble; keep reading
                log.exception("catalog log read failed; retrying")
                await asyncio.sleep(1)
                continue
            for records in batches.values():
                for rec in records:
                    try:
                        entry = CatalogEntry.decode(rec.value)
                    except Exception:  # noqa: BLE001 - only we write this topic; count, log, go on
                        self.corrupt_entries += 1
                        log.exception("corrupt catalog entry at offset %d skipped", rec.offset)
                        self.registry.applied_offset = rec.offset
                        continue
                    self.registry.apply_entry(rec.offset, entry)
            if batches:
                async with self._advanced:
                    self._advanced.notify_all()

    async def wait_for(self, offset: int) -> None:
        """Return once the entry at ``offset`` (and all before it) has been folded."""
        async with self._advanced:
            await self._advanced.wait_for(lambda: self.registry.applied_offset >= offset)

    async def end_offset(self) -> int:
        """The log end: the larger of ListOffsets and the last fetch's high watermark (a broker's
        ListOffsets may under-report the end of a multi-record batch: processor/runtime/broker_profile.py)."""
        assert self._consumer is not None
        listed = (await self._consumer.end_offsets([self.tp]))[self.tp]
        fetched = self._consumer.highwater(self.tp) or 0
        return max(listed, fetched)

    async def catch_up(self) -> None:
        """Fold everything written to the log before this call."""
        await self.wait_for(await self.end_offset() - 1)
