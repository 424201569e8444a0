"""The dead-lettering policy: one bad message never stops the worker, and is never lost.

Every consumed message goes through :meth:`Guard.run`. Input that breaks the contract (a
``ContractError``) is dead-lettered with its code; any other error is logged with its traceback
and dead-lettered as PROCESSING_ERROR, so a bug hits one message, not every other user's changes.
A message whose partition waits for an unsent dead letter is held back (processor/runtime/
dead_letters.py pauses that partition until the dead letter is sent).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from processor.contract.exceptions import ContractError
from processor.contract.models import DeadLetter
from processor.handlers.ports import Clock, DeadLetterSink, InputRecord, Stats, now_ms
from processor.handlers.replay import Replay

log = logging.getLogger("processor")
Handler = Callable[[InputRecord], Awaitable[None]]


class Guard:
    def __init__(self, dead_letters: DeadLetterSink, replay: Replay, stats: Stats, clock: Clock = now_ms) -> None:
        self.dead_letters = dead_letters
        self.replay = replay
        self.stats = stats
        self.clock = clock

    async def run(self, msg: InputRecord, handler: Handler) -> None:
        if self.dead_letters.holds(msg):
            return  # its partition waits for an unsent dead letter
        try:
            try:
                await handler(msg)
            finally:
                self.replay.processed(msg)
        except asyncio.CancelledError:
            raise
        except ContractError as err:
            await self.dead_letter(msg, err.code, f"{err.path}: {err.message}")
        except Exception as exc:  # noqa: BLE001 - a bug must not stop every other user's changes
            log.exception("processing failed for %s[%d]@%d", msg.topic, msg.partition, msg.offset)
            await self.dead_letter(msg, "PROCESSING_ERROR", f"{type(exc).__name__}: {exc}"[:1000])

    async def dead_letter(self, msg: InputRecord, code: str, error: str) -> None:
        self.stats.dead_letter(code)
        log.warning("dead-letter %s[%d]@%d %s: %s", msg.topic, msg.partition, msg.offset, code, error,
                    extra={"topic": msg.topic, "partition": msg.partition, "offset": msg.offset,
                           "error_code": code})
        dl = DeadLetter(msg.topic, msg.partition, msg.offset, msg.key, msg.value, code, error, self.clock())
        await self.dead_letters.send(msg, dl)  # bounded; a failed send pauses msg's partition, never raises
