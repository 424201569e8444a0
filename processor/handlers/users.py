"""The users agent's messages: user events, and control messages on the same partition (a
backfill order or a timer tick, processor/handlers/control.py)."""

from __future__ import annotations

import processor.handlers.control as control
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
