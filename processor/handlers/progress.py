"""A partition's backfill reports its progress, and the command's result follows it.

Each users partition running a command's backfill order appends progress entries to the catalog
log (processor/catalog/entry.py ``ProgressEntry``): while it runs, at most every few seconds,
and once when it is done (or failed). Every worker folds them (processor/catalog/progress.py).
After its done report is folded, the partition publishes the command's result as it now stands:

* ``APPLYING`` with partitions done out of total and users evaluated, added and removed so far;
* ``APPLIED`` when its report completed the command, or came after that (a re-run after a crash:
  the one that completed it may have died before publishing). A report folded before the
  completing one publishes nothing once the command is complete.

The users agent does not wait for any of it: a report is queued on Faust's producer (the
checkpoint makes it durable before the order's offset is committed, so a crash before that
re-runs the order, which reports again), and the result follows in a background task once the
partition's changes have left the outbox (the checkpoint's next release, milliseconds) and the
report is folded. So a command can read ``APPLIED`` in the fold (the API) a release before the
last changes of its backfill are on the output topic, while its ``APPLIED`` result record comes
after them. A crash after the commit but before that task published loses that result record
(the fold, and the API, still have it).

A result can therefore arrive twice, and an ``APPLYING`` after the ``APPLIED`` of the same command
(two workers publish independently): ``APPLIED`` is final (docs/contract.md).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable

from processor.catalog.entry import ProgressEntry
from processor.catalog.model import CommandRecord
from processor.catalog.progress import CommandProgress
from processor.contract.models import CommandResult
from processor.handlers.control import BackfillOrder
from processor.handlers.ports import Bus, CatalogView, Changes, Clock, Stats, Wire, now_ms
from processor.wire import SCHEMALESS

log = logging.getLogger("processor")
INTERVAL_S = 2.0  # a running partition reports at most this often (a done report is always sent)


def decision_result(site_id: str, rec: CommandRecord) -> CommandResult:
    """The result of the decision (ACCEPTED / REJECTED): the bytes it always had."""
    return CommandResult(rec.command_id, site_id, rec.status, rec.code, rec.message, rec.processed_at)


def applied_now(site_id: str, rec: CommandRecord) -> CommandResult:
    """APPLIED for an accepted command that needs no backfill: applied when it was folded."""
    return CommandResult(rec.command_id, site_id, "APPLIED", None, None, rec.processed_at, partitions_done=0,
                         partitions_total=0, users_evaluated=0, users_added=0, users_removed=0,
                         applied_at=rec.processed_at)


def progress_result(rec: CommandRecord, prog: CommandProgress) -> CommandResult:
    """APPLYING (or APPLIED) with the backfill's progress as folded now."""
    done, evaluated, added, removed = prog.totals()
    p = prog.as_dict()
    return CommandResult(rec.command_id, prog.site_id, "APPLIED" if prog.complete else "APPLYING", p.get("code"),
                         p.get("message"), rec.processed_at, partitions_done=done, partitions_total=prog.total,
                         users_evaluated=evaluated, users_added=added, users_removed=removed,
                         applied_at=prog.completed_at)


class Reporter:
    """Appends a partition's progress reports and publishes the results that follow them."""

    def __init__(self, catalog: CatalogView, bus: Bus, stats: Stats, clock: Clock = now_ms,
                 changes: Changes | None = None, wire: Wire = SCHEMALESS) -> None:
        """``changes``: the outbox, whose records a result waits for (None: it does not wait);
        ``wire``: how results are encoded (processor/wire.py)."""
        self.changes = changes
        self.wire = wire
        self.catalog = catalog
        self.bus = bus
        self.stats = stats
        self.clock = clock
        self._tasks: set[asyncio.Task[None]] = set()  # results being published in the background

    def tracked(self, order: BackfillOrder) -> bool:
        """Whether the catalog tracks this order's command (not an entry of an earlier version,
        nor one the command window already forgot): only then is a report worth its entry."""
        prog = self.catalog.registry.progress.get(order.site_id, order.command_id)
        return prog is not None and prog.catalog_offset == order.catalog_offset

    async def running(self, order: BackfillOrder, partition: int, counts: tuple[int, int, int]) -> None:
        """How far this partition got (best effort: a lost one is followed by the next)."""
        try:
            await self._append(order, partition, counts, done=False)
        except Exception:  # noqa: BLE001 - the backfill goes on; the done report is what counts
            log.warning("progress report of %s partition %d failed", order.command_id, partition, exc_info=True)

    async def done(self, order: BackfillOrder, partition: int, counts: tuple[int, int, int],
                   settle: bytes | None = None) -> None:
        """This partition finished: queue the report; the fold and the command's result follow in
        the background, after the changes of ``settle`` (the partition's last changed user, and so
        every change queued before it) have left. Raises if the report cannot be queued (the order
        is then dead-lettered)."""
        acked = await self._append(order, partition, counts, done=True)
        task = asyncio.ensure_future(self._publish_when_folded(order, partition, acked, settle))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def failed(self, order: BackfillOrder, partition: int, counts: tuple[int, int, int], why: str) -> None:
        """This partition's run raised (its order goes to the dead letters): say so (best effort)."""
        try:
            acked = await self._append(order, partition, counts, done=False, failed=why[:300])
            await self._publish_when_folded(order, partition, acked)
        except Exception:  # noqa: BLE001 - the dead letter and the log still tell
            log.warning("failure report of %s partition %d failed", order.command_id, partition, exc_info=True)

    async def drain(self) -> None:
        """Return once the results queued so far are published (tests; a clean stop)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _publish_when_folded(self, order: BackfillOrder, partition: int, acked: Awaitable[int],
                                   settle: bytes | None = None) -> None:
        try:
            offset = await acked
            own = getattr(self.catalog, "own_report", None)
            if own is not None:
                own(offset)  # the commands agent's catch-up need not wait for it
            if settle is not None and self.changes is not None and self.changes.pending_for(settle):
                await self.changes.settle(settle)
            await self.catalog.wait_for(offset)
            await self._publish(order, offset)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the fold (and the API) still has the report
            log.warning("result after the report of %s partition %d not published", order.command_id, partition,
                        exc_info=True)

    async def _append(self, order: BackfillOrder, partition: int, counts: tuple[int, int, int], done: bool,
                      failed: str | None = None) -> Awaitable[int]:
        evaluated, added, removed = counts
        entry = ProgressEntry(order.site_id, order.command_id, order.catalog_offset, partition, evaluated, added,
                              removed, done, self.clock(), failed)
        acked = await self.bus.append_catalog_later(order.site_id, entry.encode())
        self.stats.count("backfill.progress_reports")
        return acked

    async def _publish(self, order: BackfillOrder, offset: int) -> None:
        registry = self.catalog.registry
        prog = registry.progress.get(order.site_id, order.command_id)
        rec = registry.command(order.site_id, order.command_id)
        if prog is None or rec is None:
            return
        if prog.complete and offset < prog.completed_offset:
            return  # an earlier report: the one that completed the command publishes APPLIED
        res = progress_result(rec, prog)
        await self.bus.result(order.site_id, self.wire.encode_command_result(res))
