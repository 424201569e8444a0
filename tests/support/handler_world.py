"""The handlers (processor/handlers) wired to in-memory stand-ins instead of Faust and Kafka.

What is real: the handlers, the engine, the catalog registry and its command decisions, the
contract codec, the store's key spaces and durability policy (``MemoryTableStore``, whose
changelog is a list). What stands in for Kafka: the catalog log folds an appended entry at
once at the next offset (a worker's ``CatalogLog`` folds the same entries in the same order),
the control and result topics are lists, and the outbox records what it would release.

A message goes in as an :class:`Msg` with the topic, partition and offset it would have; a
control message a handler queues (a command's backfill orders, a timer tick) is delivered with
:meth:`World.deliver_control`, at the next offset of its partition, as the users agent would
read it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from processor.catalog.registry import CatalogRegistry
from processor.catalog.entry import decode_entry
from processor.contract.codec import decode_command_result, encode_command, encode_user_event, user_event_key
from processor.contract.models import BATCH, Actor, Command, CommandResult, DeadLetter, MembershipChange, UserEvent
from processor.handlers.users import UsersPartition
from processor.handlers.backfill import Backfill
from processor.handlers.commands import Commands
from processor.handlers.guard import Guard
from processor.handlers.ports import Stats
from processor.handlers.progress import Reporter
from processor.handlers.replay import Replay
from processor.handlers.timers import Timers
from processor.handlers.user_events import UserEvents
from processor.publish import build_payload
from processor.runtime.store import MemoryTableStore
from processor.state.user_state import UserState, decode_state

EVENTS, CONTROL, COMMANDS = "user-events", "control", "commands"
T0 = 1_700_000_000_000  # the handlers' clock starts here (epoch ms)


@dataclass
class Msg:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    acked: bool = False


@dataclass
class Released:
    kind: str  # "new" (emit) or "again" (a re-emission: queue)
    change: MembershipChange
    owner: bytes


class RecordingChanges:
    """The outbox: records every change in order; ``settle`` releases everything (as a release
    of the real outbox does) and is logged, so a test sees that a handler waited."""

    def __init__(self) -> None:
        self.log: list[Released] = []
        self.pending: set[bytes] = set()
        self.settled: list[bytes] = []
        self.backpressure_calls = 0

    def emit(self, change: MembershipChange, owner: bytes) -> None:
        self.log.append(Released("new", change, owner))
        self.pending.add(owner)

    def queue(self, change: MembershipChange, owner: bytes) -> None:
        self.log.append(Released("again", change, owner))
        self.pending.add(owner)

    def pending_for(self, owner: bytes) -> bool:
        return owner in self.pending

    async def settle(self, owner: bytes) -> None:
        self.settled.append(owner)
        self.pending.clear()

    async def backpressure(self) -> None:
        self.backpressure_calls += 1

    def released(self) -> None:
        """Everything queued so far was acknowledged (a checkpoint ran)."""
        self.pending.clear()


class Catalog:
    """The catalog log: a real registry; an appended entry is folded at once."""

    def __init__(self) -> None:
        self.registry = CatalogRegistry()
        self.next_offset = 0
        self.waited_for: list[int] = []

    def append(self, entry: bytes) -> int:
        offset = self.next_offset
        self.next_offset += 1
        self.registry.apply_entry(offset, decode_entry(entry))
        return offset

    async def wait_for(self, offset: int) -> None:
        assert self.registry.applied_offset >= offset, "a handler waited for an entry never appended"
        self.waited_for.append(offset)

    async def catch_up(self) -> None:
        pass


class Bus:
    def __init__(self, catalog: Catalog, decode_result: Any = decode_command_result) -> None:
        self.catalog = catalog
        self.control_sent: list[tuple[int, bytes, bytes]] = []
        self.results: list[CommandResult] = []
        self.result_values: list[bytes] = []  # as they would be written to the results topic
        self.decode_result = decode_result
        self.fail_append = False

    async def append_catalog(self, site_id: str, entry: bytes) -> int:
        if self.fail_append:
            raise ConnectionError("catalog topic unavailable")
        return self.catalog.append(entry)

    async def append_catalog_later(self, site_id: str, entry: bytes) -> Any:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        fut.set_result(await self.append_catalog(site_id, entry))
        return fut

    async def control(self, partition: int, key: bytes, body: bytes) -> None:
        self.control_sent.append((partition, key, body))

    async def result(self, site_id: str, value: bytes) -> None:
        self.result_values.append(value)
        self.results.append(self.decode_result(value))


class DeadLetters:
    def __init__(self) -> None:
        self.sent: list[DeadLetter] = []
        self.held: set[tuple[str, int]] = set()
        self.holds_of: list[tuple[Any, Any, str]] = []  # (message, ready, reason) of each hold
        self.failing = False  # the dead-letter topic refuses: a send pauses the partition

    def holds(self, msg: Any) -> bool:
        return (msg.topic, msg.partition) in self.held

    async def send(self, msg: Any, dl: DeadLetter) -> bool:
        """Sent (True), unless ``failing``: then the partition is paused behind it (False)."""
        if self.failing:
            self.held.add((msg.topic, msg.partition))
            return False
        self.sent.append(dl)
        return True

    def hold(self, msg: Any, ready: Any, reason: str) -> None:
        """The partition pauses (the runtime seeks back to ``msg`` once ``ready()`` answers None)."""
        self.holds_of.append((msg, ready, reason))
        self.held.add((msg.topic, msg.partition))


@dataclass
class World:
    partitions: int = 2
    chunk: int = 3  # small, so a backfill or tick crosses chunk boundaries in a test
    now: int = T0
    verify: Any = None
    fault: Any = None
    wire_format: Any = None  # processor/wire.py's format of the contract topics (None: schemaless)
    ready: Any = None  # the guard's readiness check (None: every message is readable at once)
    store: MemoryTableStore = field(init=False)
    changes: RecordingChanges = field(default_factory=RecordingChanges)
    catalog: Catalog = field(default_factory=Catalog)
    dead_letters: DeadLetters = field(default_factory=DeadLetters)

    def __post_init__(self) -> None:
        self.store = MemoryTableStore(range(self.partitions))
        self.bus = Bus(self.catalog, *([self.wire_format.decode_command_result] if self.wire_format is not None else []))
        self.stats = Stats()
        self.committed: dict[tuple[str, int], int] = {}
        self.offsets: dict[tuple[str, int], int] = {}
        self.wire()

    def wire(self) -> None:
        """(Re)build the handlers; a new Replay is a new assignment (a restarted worker)."""
        clock = lambda: self.now  # noqa: E731
        self.replay = Replay(EVENTS, CONTROL, self.changes, self.stats,
                             committed=lambda t, p: self.committed.get((t, p)))
        self.timers = Timers(self.store, self.changes, self.catalog, self.replay, self.stats, self.bus, clock,
                             chunk=self.chunk)
        self.reporter = Reporter(self.catalog, self.bus, self.stats, clock, changes=self.changes,
                                 **({"wire": self.wire_format} if self.wire_format is not None else {}))
        self.users = UsersPartition(
            CONTROL,
            UserEvents(self.store, self.changes, self.catalog, self.replay, self.stats, clock,
                       **({"wire": self.wire_format} if self.wire_format is not None else {})),
            Backfill(self.store, self.changes, self.catalog, self.replay, self.stats, clock, chunk=self.chunk,
                     reporter=self.reporter),
            self.timers)
        self.commands = Commands(self.catalog, self.bus, self.stats, self.partitions, verify=self.verify,
                                 fault=self.fault, clock=clock,
                                 **({"wire": self.wire_format} if self.wire_format is not None else {}))
        self.guard = Guard(self.dead_letters, self.replay, self.stats, clock, ready=self.ready)

    # ------------------------------------------------------------ input
    def _next(self, topic: str, partition: int) -> int:
        n = self.offsets.get((topic, partition), 0)
        self.offsets[(topic, partition)] = n + 1
        return n

    def message(self, topic: str, partition: int, key: bytes | None, value: bytes | None,
                offset: int | None = None) -> Msg:
        return Msg(topic, partition, self._next(topic, partition) if offset is None else offset, key, value)

    async def event(self, ev: UserEvent, partition: int = 0, offset: int | None = None) -> Msg:
        msg = self.message(EVENTS, partition, user_event_key(ev.site_id, ev.user_id), encode_user_event(ev), offset)
        await self.guard.run(msg, self.users.handle)
        return msg

    async def raw(self, topic: str, value: bytes | None, key: bytes | None = None, partition: int = 0) -> Msg:
        msg = self.message(topic, partition, key, value)
        handler = self.commands.handle if topic == COMMANDS else self.users.handle
        await self.guard.run(msg, handler)
        return msg

    async def command(self, cmd: Command, key: str | None = None, partition: int = 0, deliver: bool = True,
                      offset: int | None = None) -> CommandResult:
        """Decide ``cmd``; with ``deliver``, run the backfill orders it fanned out on every partition.
        Returns the decision (the first result published for it: ACCEPTED or REJECTED)."""
        msg = self.message(COMMANDS, partition, (key if key is not None else cmd.site_id).encode(),
                           encode_command(cmd), offset)
        sent = len(self.bus.control_sent)
        published = len(self.bus.results)
        await self.guard.run(msg, self.commands.handle)
        if deliver:
            await self.deliver_control(sent)
        return self.bus.results[published]

    def results_for(self, command_id: str) -> list[CommandResult]:
        """Every result published for ``command_id``, in order."""
        return [r for r in self.bus.results if r.command_id == command_id]

    async def deliver_control(self, since: int = 0) -> list[Msg]:
        """Deliver the control messages queued since index ``since`` (each at its partition's next offset)."""
        out = []
        for partition, key, body in self.bus.control_sent[since:]:
            msg = self.message(CONTROL, partition, key, body)
            await self.guard.run(msg, self.users.handle)
            out.append(msg)
        await self.reporter.drain()  # the results the done reports publish in the background
        return out

    async def tick(self, at_s: int) -> list[Msg]:
        """A worker's tick timer at ``at_s`` (epoch seconds): the ticks it queues, delivered."""
        sent = len(self.bus.control_sent)
        await self.timers.send_ticks(at_s)
        return await self.deliver_control(sent)

    # ----------------------------------------------------------- output
    def new_changes(self) -> list[MembershipChange]:
        return [r.change for r in self.changes.log if r.kind == "new"]

    def all_changes(self) -> list[MembershipChange]:
        return [r.change for r in self.changes.log]

    def members(self, site: str, segment: str) -> set[str]:
        """The segment as a consumer folds the changes (by change_id, in order)."""
        seen: set[str] = set()
        out: set[str] = set()
        for c in self.all_changes():
            if c.site_id != site or c.segment_id != segment or c.change_id in seen:
                continue
            seen.add(c.change_id)
            (out.add if c.change == "ADDED" else out.discard)(c.user_id)
        return out

    def state(self, site: str, user: str) -> UserState | None:
        return self.store.user(site, user)

    def raw_state(self, partition: int, key: bytes) -> UserState | None:
        raw = self.store.partition(partition).get(key)
        return decode_state(raw) if raw else None


# ------------------------------------------------------------- records
def event(site: str, user: str, etype: str = "USER_CREATED", event_id: str | None = None, occurred_at: int = T0,
          **profile: object) -> UserEvent:
    return UserEvent(event_id or f"ev-{uuid.uuid4().hex[:12]}", etype, site, user, occurred_at,
                     dict(profile))  # type: ignore[arg-type]


def command(site: str, ptype: str, roles: tuple[str, ...] = ("site_admin",), command_id: str | None = None,
            issued_at: int = T0, auth_token: str | None = None, **payload: object) -> Command:
    if "condition" in payload and not isinstance(payload["condition"], str):
        payload["condition_json"] = json.dumps(payload.pop("condition"))
    body = dict(payload) if ptype == BATCH else build_payload(ptype, dict(payload), "$")
    return Command(command_id or f"cmd-{uuid.uuid4().hex[:12]}", site, issued_at, Actor("tester", roles), ptype,
                   body, auth_token=auth_token)


async def managed_segment(w: World, site: str, segment: str = "sales", rules: dict[str, dict] | None = None) -> None:
    """A managed segment with rules (rule id -> condition), every command ACCEPTED."""
    cmds = [command(site, "UpsertSegment", roles=("system",), segment_id=segment, name=segment),
            command(site, "EnableSegmentAutomation", segment_id=segment)]
    for rid, cond in (rules or {}).items():
        cmds.append(command(site, "CreateRule", rule_id=rid, segment_id=segment, name=rid, condition=cond))
    for c in cmds:
        res = await w.command(c)
        assert res.status == "ACCEPTED", res
