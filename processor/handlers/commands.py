"""An automation command: decide it against the caught-up catalog, append the decision to the
catalog log, wait until it is folded, fan one backfill order out to every users partition,
publish the result.

A command is decided once: the same message again (a crash before its offset was committed) is
recognised by its source offset in the catalog's record and only finishes what it started (the
fan-out and the result); another message with a known command id gets the original result. A
command whose processing raises still gets a result (never PENDING forever): a REJECTED
INTERNAL_ERROR decision is logged like any other, then the error goes on to the guard, which
dead-letters the message.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any, Callable

from processor.catalog.commands import Decision, decide
from processor.catalog.entry import CatalogEntry
from processor.catalog.model import CommandRecord
from processor.catalog.registry import record_of
from processor.contract.codec import decode_key
from processor.contract.models import Actor, Command, CommandResult
from processor.errors import ProcessorError
import processor.handlers.control as control
from processor.handlers.ports import Bus, CatalogView, Clock, Fault, InputRecord, Stats, Wire, now_ms
from processor.wire import SCHEMALESS

log = logging.getLogger("processor")
# (site id, token) -> the verified principal (``.sub``, ``.roles``); raises ProcessorError FORBIDDEN
Verify = Callable[[str, "str | None"], Any]


class Commands:
    """``verify``: with COMMANDS_REQUIRE_TOKEN=1, how a command's token is checked (None: the
    actor the record claims is trusted, and any token is dropped)."""

    def __init__(self, catalog: CatalogView, bus: Bus, stats: Stats, partitions: int, *,
                 verify: Verify | None = None, fault: Fault | None = None, clock: Clock = now_ms,
                 settle_timeout_s: float = 30.0, wire: Wire = SCHEMALESS) -> None:
        self.catalog = catalog
        self.wire = wire
        self.bus = bus
        self.stats = stats
        self.partitions = partitions
        self.verify = verify
        self.fault = fault
        self.clock = clock
        self.settle_timeout_s = settle_timeout_s

    async def handle(self, msg: InputRecord) -> None:
        cmd = self.wire.decode_command(msg.value)  # undecodable: no id to answer to, the guard dead-letters it
        try:
            await self._process(msg, cmd)
        except asyncio.CancelledError:
            raise
        except Exception:
            await self._settle_failed(msg, cmd)
            raise  # the guard logs it and dead-letters the original bytes

    async def _process(self, msg: InputRecord, cmd: Command) -> None:
        await self.catalog.catch_up()
        registry = self.catalog.registry
        site = registry.site(cmd.site_id)
        rec = registry.command(cmd.site_id, cmd.command_id)
        if rec is not None:
            if (rec.source_partition, rec.source_offset) == (msg.partition, msg.offset):
                # The same message again (crash before commit): finish what it started.
                await self.fan_out(cmd.site_id, rec, cmd.issued_at)
            else:
                self.stats.count("commands.duplicate")
            await self.publish_result(cmd.site_id, rec)
            return
        cmd, denied = self._verified_actor(cmd)
        self._fault("decide", cmd)
        decision = denied or decide(site, cmd, decode_key(msg.key))
        entry = CatalogEntry(cmd, decision.status, decision.code, decision.message, self.clock(),
                             msg.partition, msg.offset, decision.backfill)
        offset = await self.bus.append_catalog(cmd.site_id, entry.encode())
        await self.catalog.wait_for(offset)
        # (the entry as kept, unless already out of the window: possible only under a flood)
        rec = registry.command(cmd.site_id, cmd.command_id) or record_of(entry, offset)
        self.stats.command(rec.status, rec.code)
        if rec.catalog_offset == offset:
            if rec.status == "ACCEPTED":
                self._fault("fan_out", cmd)
            await self.fan_out(cmd.site_id, rec, cmd.issued_at)
        await self.publish_result(cmd.site_id, rec)

    async def _settle_failed(self, msg: InputRecord, cmd: Command) -> None:
        """A command whose processing raised still gets a result (see the module docstring). The
        message names no server path: the exception stays in the worker's log and the dead letter."""
        try:
            rec = self.catalog.registry.command(cmd.site_id, cmd.command_id)
            if rec is None:
                message = ("the worker hit an internal error while processing this command; nothing was "
                           f"changed. The operators have it as a dead letter of commands partition "
                           f"{msg.partition}, offset {msg.offset}")
                entry = CatalogEntry(cmd, "REJECTED", "INTERNAL_ERROR", message, self.clock(), msg.partition,
                                     msg.offset, None)
                offset = await self.bus.append_catalog(cmd.site_id, entry.encode())
                await asyncio.wait_for(self.catalog.wait_for(offset), timeout=self.settle_timeout_s)
                rec = self.catalog.registry.command(cmd.site_id, cmd.command_id) or record_of(entry, offset)
                self.stats.command(rec.status, rec.code)
            await self.publish_result(cmd.site_id, rec)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the broker is failing too: logged, and the message is dead-lettered
            log.exception("no result could be published for command %s after it failed", cmd.command_id)

    def _fault(self, stage: str, cmd: Command) -> None:
        if self.fault is not None:
            self.fault(stage, cmd)

    def _verified_actor(self, cmd: Command) -> tuple[Command, Decision | None]:
        """With a ``verify``, the actor comes from the command's verified token, not from what the
        record claims; a command without a valid token is REJECTED FORBIDDEN. The token itself is
        dropped here: it never reaches the catalog log or a result."""
        if self.verify is None:
            return replace(cmd, auth_token=None), None
        try:
            p = self.verify(cmd.site_id, cmd.auth_token)
        except ProcessorError as err:
            self.stats.count("commands.token_refused")
            return replace(cmd, auth_token=None), Decision("REJECTED", err.code, err.message, err.path)
        return replace(cmd, actor=Actor(p.sub, p.roles), auth_token=None), None

    async def fan_out(self, site_id: str, rec: CommandRecord, issued_at: int) -> None:
        """One backfill order per users partition (an accepted command with a plan only)."""
        plan = rec.backfill
        if rec.status != "ACCEPTED" or plan is None:
            return
        body = control.backfill_order(site_id, rec.catalog_offset, rec.command_id,
                                      plan.cause_kind, issued_at, plan.segments)  # type: ignore[attr-defined]
        for p in range(self.partitions):
            await self.bus.control(p, site_id.encode(), body)

    async def publish_result(self, site_id: str, rec: CommandRecord) -> None:
        res = CommandResult(rec.command_id, site_id, rec.status, rec.code, rec.message, rec.processed_at)
        await self.bus.result(site_id, self.wire.encode_command_result(res))
