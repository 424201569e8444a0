"""The commit protocol, in one place: state durable before a change leaves, a change out before
the offset that caused it is committed.

:meth:`Checkpoint.commit` is the whole order as numbered steps. Faust's offset commits (every
second, and at a rebalance or shutdown) come here (``commit-through-checkpoint`` in
processor/runtime/faust_compat.py) with the offsets they are about to commit; every message
up to those offsets has been handled, so its table writes were made and its changes queued
before the call. :meth:`Checkpoint.release` is steps 1-5 alone: the background loop runs it
whenever changes are queued (latency), and the handlers when a user's earlier changes must
leave before its state moves on (``settle``) or the outbox is full (``backpressure``).

The outbox (processor/runtime/outbox.py), the changelog flushes (the store's ``flush``), the
persisted changelog offsets and the offset commits are called from here and nowhere else.

A failed step raises and stops the commit: the batch goes back to the head of the outbox (its
records may go out twice, byte for byte: at-least-once) and no offset moves.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from processor.contract.cloudevents import Headers
from processor.runtime.exceptions import OutboxSendError
from processor.runtime.outbox import DrainTiming, Outbox

log = logging.getLogger("processor.checkpoint")

Flush = Callable[[], Awaitable[None]]
Send = Callable[[bytes, bytes, "Headers | None"], Awaitable[None]]  # key, value, headers
CommitOffsets = Callable[[], Awaitable[bool]]


class Checkpoint:
    """Releases the outbox after the state is durable, and commits offsets after the changes.

    ``flush_state``: return once every table write made before the call is acknowledged by the
    changelog (and Faust's own sends of that moment). ``persist``: record the acknowledged
    changelog offsets as each partition's recovery position. ``send`` / ``flush_output``: queue
    one output record (key, value, headers) / return once every record sent before is acknowledged or failed.
    ``failures`` / ``failure_detail``: the output client's running count of records it gave up
    on, and its last error (librdkafka reports failures through callbacks, not the flush).
    ``before_send``: a test hook (fault injection) run before a batch's first send.
    """

    def __init__(self, outbox: Outbox, *, flush_state: Flush, persist: Callable[[], None], send: Send,
                 flush_output: Flush, failures: Callable[[], int] | None = None,
                 failure_detail: Callable[[], str] | None = None,
                 on_release: Callable[[DrainTiming], None] | None = None,
                 before_send: Callable[[], None] | None = None, output_topic: str = "") -> None:
        self.outbox = outbox
        self._flush_state = flush_state
        self._persist = persist
        self._send = send
        self._flush_output = flush_output
        self._failures = failures
        self._failure_detail = failure_detail
        self.on_release = on_release
        self.before_send = before_send
        self.output_topic = output_topic
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        outbox.on_put = self._wake.set
        self.commits = 0  # offset commits let through

    async def commit(self, commit_offsets: CommitOffsets | None = None) -> bool:
        """The commit protocol. ``commit_offsets`` commits the input offsets Faust chose (None:
        steps 1-5 only, and only when changes are pending). Returns what step 6 returned."""
        async with self._lock:
            clock = self.outbox.clock
            # 1. Take the changes queued so far: those of every message up to the offsets.
            batch = self.outbox.take()
            if not batch.records and commit_offsets is None:
                return False
            t0 = clock()
            try:
                # 2. State durable: the changelog holds every table write made so far, including
                #    the writes that moved no membership.
                await self._flush_state()
                # 3. Recovery position: each partition's store records the highest changelog
                #    offset now acknowledged (Faust's recovery resumes reading after it).
                self._persist()
                t1 = clock()
                # 4. Changes out, in the order they were made, then acknowledged; a record the
                #    output client gave up on fails the batch.
                if batch.records:
                    failed_before = self._failures() if self._failures is not None else 0
                    if self.before_send is not None:
                        self.before_send()
                    for key, value, _owner, headers in batch.records:
                        await self._send(key, value, headers)
                t2 = clock()
                if batch.records:
                    await self._flush_output()
                    if self._failures is not None and self._failures() > failed_before:
                        detail = self._failure_detail() if self._failure_detail is not None else ""
                        raise OutboxSendError(f"{self._failures() - failed_before} membership change(s) of a "
                                              f"batch of {len(batch.records)} not delivered: {detail}",
                                              self.output_topic)
                t3 = clock()
            except BaseException:
                self.outbox.put_back(batch)
                raise
            # 5. The batch's owners may move on (a user's next message no longer waits for them).
            self.outbox.done(batch)
            if batch.records and self.on_release is not None:
                start = t0 if batch.first_put is None else batch.first_put
                self.on_release(DrainTiming(len(batch.records), t3 - start, t0 - start, t1 - t0, t2 - t1,
                                            t3 - t2))
        if commit_offsets is None:
            return False
        # 6. Offsets: commit the input offsets (outside the lock: releases go on meanwhile).
        self.commits += 1
        return await commit_offsets()

    async def release(self) -> int:
        """Steps 1-5: release what is queued now; returns how many records left."""
        before = self.outbox.drained
        await self.commit(None)
        return self.outbox.drained - before

    async def run(self, retry_delay: float = 0.5) -> None:
        """Background loop: release whenever something was queued; errors are logged and retried
        (the next commit retries too, and fails if the error persists)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.release()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep the loop alive
                log.exception("releasing changes failed; %d records kept, retrying", len(self.outbox))
                await asyncio.sleep(retry_delay)
                self._wake.set()
