"""What the worker does with each consumed message, without Faust or Kafka.

Each handler takes the users table (``ports.Table``), the outbox (``ports.Changes``) and the
catalog view (``ports.CatalogView``); the worker (processor/runtime/app.py) wires the Kafka-backed
ones, the unit tests (tests/unit/handlers) in-memory ones:

* :mod:`user_events` - a user event folded into the user's state;
* :mod:`backfill` - a command's re-evaluation of one site's stored users on one partition;
* :mod:`timers` - time-relative re-evaluations (ticks);
* :mod:`commands` - an automation command decided, logged and fanned out;
* :mod:`guard` - the dead-lettering policy around all of them;
* :mod:`replay` - the re-emission rules after a crash (shared by the first three).
"""

from __future__ import annotations

from processor.handlers import control
from processor.handlers.backfill import Backfill
from processor.handlers.ports import InputRecord
from processor.handlers.timers import Timers
from processor.handlers.user_events import UserEvents


class UsersPartition:
    """The users agent's messages: user events, and control messages on the same partition."""

    def __init__(self, control_topic: str, user_events: UserEvents, backfill: Backfill, timers: Timers) -> None:
        self.control_topic = control_topic
        self.user_events = user_events
        self.backfill = backfill
        self.timers = timers

    async def handle(self, msg: InputRecord) -> None:
        if msg.topic != self.control_topic:
            await self.user_events.handle(msg)
            return
        order = control.parse(msg.value)
        if isinstance(order, control.Tick):
            await self.timers.handle(msg, order)
        else:
            await self.backfill.handle(msg, order)
