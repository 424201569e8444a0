"""The dead-lettering policy: one bad message never stops the worker, and is never lost.

Every consumed message goes through :meth:`Guard.run`. Input that breaks the contract (a
``ContractError``) is dead-lettered with its code; any other error is logged with its traceback
and dead-lettered as PROCESSING_ERROR, so a bug hits one message, not every other user's changes.
A message whose partition waits for an unsent dead letter is held back (processor/runtime/
dead_letters.py pauses that partition until the dead letter is sent). A message that cannot be
read *yet* (``ready`` says why: the Schema Registry does not answer) is neither processed nor
dead-lettered: its partition is held the same way and read again from it once it can be.

The guard also records, per input partition, the last message a handler finished (processed or
dead-lettered) in the current assignment: :meth:`Guard.commit_limit` is the highest offset the
worker may commit there. An offset commit never passes a message nobody handled, whatever the
consumer's own bookkeeping says (docs/architecture.md, "The commit protocol").
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Mapping

from processor.contract.exceptions import ContractError
from processor.errors import ProcessorError
from processor.contract.models import DeadLetter
from processor.handlers.ports import Clock, DeadLetterSink, InputRecord, Readiness, Stats, now_ms
from processor.handlers.replay import Replay

log = logging.getLogger("processor")
Handler = Callable[[InputRecord], Awaitable[None]]


class Guard:
    def __init__(self, dead_letters: DeadLetterSink, replay: Replay, stats: Stats, clock: Clock = now_ms,
                 ready: Readiness | None = None) -> None:
        self.dead_letters = dead_letters
        self.ready = ready
        self.replay = replay
        self.stats = stats
        self.clock = clock
        self._handled: dict[tuple[str, int], int] = {}  # (topic, partition) -> last offset handled

    def commit_limit(self, topic: str, partition: int) -> int | None:
        """The highest offset that may be committed for ``topic[partition]``: the one after the last
        message handled in this assignment (None: nothing handled yet, commit nothing)."""
        done = self._handled.get((topic, partition))
        return None if done is None else done + 1

    def new_assignment(self) -> None:
        """Partitions were revoked or assigned: what was handled before no longer limits commits."""
        self._handled.clear()

    async def run(self, msg: InputRecord, handler: Handler) -> None:
        if self.dead_letters.holds(msg):
            return  # its partition waits for an unsent dead letter
        if self.ready is not None:
            reason = await self.ready(msg)
            if reason is not None:
                self.stats.count("input.held")
                ready = self.ready
                self.dead_letters.hold(msg, lambda: ready(msg), reason)
                return
        try:
            try:
                await handler(msg)
            finally:
                self.replay.processed(msg)
            handled = True
        except asyncio.CancelledError:
            raise
        except ContractError as err:
            handled = await self.dead_letter(msg, err.code, f"{err.path}: {err.message}")
        except Exception as exc:  # noqa: BLE001 - a bug must not stop every other user's changes
            log.exception("processing failed for %s[%d]@%d", msg.topic, msg.partition, msg.offset)
            handled = await self.dead_letter(msg, "PROCESSING_ERROR", f"{type(exc).__name__}: {exc}"[:1000])
        if handled:  # a message parked behind an unsent dead letter is handled when it is read again
            self._handled[(msg.topic, msg.partition)] = msg.offset

    async def dead_letter(self, msg: InputRecord, code: str, error: str) -> bool:
        """Send ``msg``'s dead letter: True when sent, False when its partition is paused behind it."""
        self.stats.dead_letter(code)
        log.warning("dead-letter %s[%d]@%d %s: %s", msg.topic, msg.partition, msg.offset, code, error,
                    extra={"topic": msg.topic, "partition": msg.partition, "offset": msg.offset,
                           "error_code": code})
        dl = DeadLetter(msg.topic, msg.partition, msg.offset, msg.key, msg.value, code, error, self.clock())
        return await self.dead_letters.send(msg, dl)  # bounded; a failed send pauses msg's partition


class WireReadiness:
    """The guard's ``ready`` for a Schema Registry-framed wire format (processor/wire.py): a
    message is readable once our schemas' ids are known (every output is encoded with them) and,
    for an input topic of ours (``inputs``: topic -> our schema name), once the writer schema of
    its framed value is cached. Registry calls run off the event loop (they may wait for a
    timeout); the answer for a message that needs none is a dict lookup."""

    def __init__(self, wire: Any, inputs: Mapping[str, str], stats: Stats) -> None:
        self.wire = wire
        self.inputs = dict(inputs)
        self.stats = stats
        self._ours = False

    async def __call__(self, msg: InputRecord) -> str | None:
        try:
            if not self._ours:
                await asyncio.to_thread(self.wire.check)
                self._ours = True
            name = self.inputs.get(msg.topic)
            if name is not None and not self.wire.resolved(name, msg.value):
                await asyncio.to_thread(self.wire.resolve, name, msg.value)
        except ProcessorError as err:  # the registry does not answer, or our schemas are not registered
            self.stats.count("schema_registry.unavailable")
            return str(err)
        return None
