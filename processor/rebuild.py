"""Edge: rebuild all membership state from the input topics (``python -m processor rebuild``).

With the workers stopped: fold the catalog log and every user event (same
engine as streaming), compare with what the output topic already says, emit
the difference (or a snapshot), append the rebuilt user states to the table
changelog (recovery replays it, so workers pick the states up whether or not
their local RocksDB is wiped), and move the consumer group to the end of the
inputs. Re-running the same rebuild yields the same change ids.

Bulk path (issue 6): events are read with confluent-kafka in batches and folded without
evaluating any rule (``fold_user_event``); each user is evaluated once, on its final profile,
with the site's rule index. Users are partitioned by key, so the work splits by partition:
``jobs`` spawned processes (default: one per core) each fold and rebuild a share of the
partitions, and exchange only their end offsets (for the run id) with the parent, which
commits. The parent joins the consumer group at the start, so the broker's join delay
overlaps the work.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import multiprocessing
import os
import threading
import time
import traceback
import uuid
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as mp_wait
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from processor.catalog.entry import CatalogEntry
from processor.catalog.registry import CatalogRegistry
from processor.client import ContractProducer
from processor.config import KafkaSecurity, Settings
from processor.contract import cloudevents
from processor.contract.exceptions import ContractError
from processor.contract.models import MembershipChange
from processor.membership.engine import fold_user_event
from processor.errors import ProcessorError
from processor.membership.rebuild import rebuild_user
from processor.state.keys import timer_key, user_key
from processor.state.user_state import UserState, decode_state, encode_state
from processor.runtime import clients
from processor.runtime.broker_profile import profile_for
from processor.topics import admin_client
from processor.wire import WireFormat


class RebuildError(ProcessorError):
    """The rebuild stopped; nothing it would have committed was committed (run it again)."""

    def __init__(self, message: str) -> None:
        super().__init__("REBUILD_FAILED", message)


@dataclass
class RebuildReport:
    run_id: str
    events: int = 0
    skipped_invalid: int = 0
    users: int = 0
    changes: int = 0
    by_change: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # seconds per step, in order
    jobs: int = 1  # processes that shared the partitions
    queue_full_waits: int = 0  # produces that waited 10 ms for room in the client's queue
    started: float = field(default=0.0, repr=False)  # monotonic start, for the phase laps

    def lap(self, phase: str, since: float) -> float:
        """Record the seconds ``phase`` took since ``since`` (monotonic); returns now."""
        now = time.monotonic()
        self.phases[phase] = round(now - since, 3)
        return now

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "started"} | {"events_per_second": round(self.events / self.seconds) if self.seconds else None}


def _consumer(bootstrap: str, group: str | None = None, security: KafkaSecurity | None = None) -> Consumer:
    return clients.new_consumer(clients.rebuild_reader_config(bootstrap,
                                                              group or f"rebuild-reader-{uuid.uuid4().hex}"),
                                security)


def read_batches(bootstrap: str, topic: str, parts: list[int] | None = None,
                 on_batch: Callable[[int], None] | None = None,
                 ends: dict[int, int] | None = None, security: KafkaSecurity | None = None) -> Iterator[list[Message]]:
    """Batches of records (no error events) of a topic, from the start to the end seen while reading.

    One consumer for all partitions; each partition is read in order. Reads until every
    partition's EOF event rather than to ListOffsets ends: the test broker reports the base
    offset of the last batch + 1 as its high watermark. ``ends`` receives, per partition,
    the offset after the last record read.
    """
    c = _consumer(bootstrap, security=security)
    try:
        if parts is None:
            parts = sorted(c.list_topics(topic, timeout=10).topics[topic].partitions)
        pending = set(parts)
        nxt = {p: 0 for p in parts}
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        idle = 0
        while pending:
            msgs = c.consume(5000, 0.5)
            if not msgs:
                idle += 1
                if idle >= 10:  # no EOF event within ~5 s: treat silent partitions as done
                    break
                continue
            idle = 0
            records = []
            for m in msgs:
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        pending.discard(m.partition())
                    continue
                records.append(m)
                nxt[m.partition()] = m.offset() + 1
            if records:
                yield records
            if on_batch:
                on_batch(len(msgs))
    finally:
        if ends is not None and parts is not None:
            ends.update(nxt)
        c.close()


def read_topic(bootstrap: str, topic: str, parts: list[int] | None = None,
               on_batch: Callable[[int], None] | None = None,
               ends: dict[int, int] | None = None, security: KafkaSecurity | None = None
               ) -> Iterator[tuple[int, int, bytes | None, bytes | None]]:
    """(partition, offset, key, value) of every record (see :func:`read_batches`)."""
    for batch in read_batches(bootstrap, topic, parts, on_batch, ends, security):
        for m in batch:
            yield m.partition(), m.offset(), m.key(), m.value()


def partitions(bootstrap: str, topic: str, security: KafkaSecurity | None = None) -> list[int]:
    c = _consumer(bootstrap, security=security)
    try:
        return sorted(c.list_topics(topic, timeout=10).topics[topic].partitions)
    finally:
        c.close()


def read_ends(bootstrap: str, topic: str, security: KafkaSecurity | None = None) -> dict[int, int]:
    """Offset after the last record of each partition, by reading it (see read_topic)."""
    ends: dict[int, int] = {}
    for _ in read_topic(bootstrap, topic, ends=ends, security=security):
        pass
    return ends


def end_offsets(bootstrap: str, topic: str, parts: list[int] | None = None,
                security: KafkaSecurity | None = None) -> dict[int, int]:
    """ListOffsets(latest) per partition: only an estimate on the test broker (progress bars)."""
    c = _consumer(bootstrap, security=security)
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in (parts if parts is not None else partitions(bootstrap, topic, security))}
    finally:
        c.close()


def ensure_group_idle(s: Settings) -> None:
    """Refuse to run while workers are in the consumer group (they would race the rebuild)."""
    admin = admin_client(s.bootstrap_servers, s.kafka_security)
    try:
        desc = admin.describe_consumer_groups([s.app_id])[s.app_id].result(timeout=10)
    except KafkaException:
        return  # group unknown (never ran) or the broker cannot describe groups
    # Kafka lists the members of a live group. (The embedded test broker reports none and a
    # STABLE state even after every member left, so there the operator's word is all we have.)
    if desc.members:
        raise RebuildError(
            f"consumer group {s.app_id!r} has {len(desc.members)} active member(s): stop every worker first"
        )


def load_registry(s: Settings) -> CatalogRegistry:
    reg = CatalogRegistry()
    for _, off, _, value in read_topic(s.bootstrap_servers, s.topics.catalog, [0], security=s.kafka_security):
        if value is not None:
            try:
                reg.apply_entry(off, CatalogEntry.decode(value))
            except (ValueError, KeyError):
                continue
    return reg


def read_published(s: Settings, keys: set[bytes] | None = None, wire: WireFormat | None = None
                   ) -> dict[tuple[str, str], dict[str, MembershipChange]]:
    """Last published change per (site, user) and segment, from the output topic.

    ``keys``: only the users with these message keys (``site_id:user_id``); the others are
    skipped before their value is decoded.
    """
    wire = wire or WireFormat.from_settings(s)
    out: dict[tuple[str, str], dict[str, MembershipChange]] = {}
    for _, _, key, value in read_topic(s.bootstrap_servers, s.topics.membership_changes, security=s.kafka_security):
        if value is None or (keys is not None and key not in keys):
            continue
        try:
            ch = wire.decode_membership_change(value)
        except ContractError:
            continue
        out.setdefault((ch.site_id, ch.user_id), {})[ch.segment_id] = ch
    return out


def default_jobs(partition_count: int) -> int:
    """One process per core, at most one per partition."""
    return max(1, min(os.cpu_count() or 1, partition_count))


class _Slice:
    """The rebuild of some partitions of the user events: what one process does.

    Users are partitioned by key, so the users of one partition are rebuilt from that
    partition alone, and every record a slice writes for a user (changes by key, states in
    the user's partition) comes from that slice only: slices run in parallel without sharing
    anything but the run id, which needs every slice's end offsets.
    """

    def __init__(self, s: Settings, parts: list[int], mode: str, now_ms: int,
                 registry: CatalogRegistry | None = None) -> None:
        self.s, self.parts, self.mode, self.now_ms = s, parts, mode, now_ms
        self.registry = registry if registry is not None else load_registry(s)
        self.wire = WireFormat.from_settings(s)  # a registry that does not answer stops the rebuild
        # by (partition, key): a user is folded per partition, as a worker holds it, so a user whose
        # events a producer spread over partitions comes out the same whatever the process split
        self.states: dict[tuple[int, bytes], UserState] = {}

    def fold(self, on_progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Fold every event of the slice's partitions into per-user states (no rule evaluated)."""
        ends: dict[int, int] = {}
        events = skipped = 0
        states = self.states
        for batch in read_batches(self.s.bootstrap_servers, self.s.topics.user_events, self.parts,
                                  on_batch=on_progress, ends=ends, security=self.s.kafka_security):
            events += len(batch)
            for m in batch:
                try:
                    ev = self.wire.decode_user_event(m.key(), m.value())
                except ContractError:
                    skipped += 1  # already dead-lettered by the live workers
                    continue
                # the key is site_id:user_id (checked): a user's state per partition, as a worker holds it
                pk = (m.partition(), m.key())
                st = states.get(pk)
                if st is None:
                    st = states[pk] = UserState(ev.site_id, ev.user_id)
                fold_user_event(st, ev, m.offset())
        return {"ends": ends, "events": events, "skipped_invalid": skipped, "users": len(states),
                "catalog_offset": self.registry.applied_offset}

    def rebuild(self, run_id: str, on_progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Evaluate every folded user, write the changes and the states; returns the counts."""
        s, t = self.s, time.monotonic()
        phases: dict[str, float] = {}
        published = read_published(s, {key for _, key in self.states}, self.wire)
        phases["read_output"] = round(time.monotonic() - t, 3)
        t = time.monotonic()
        prod = ContractProducer.from_settings(s, linger_ms=100)  # big batches: less broker CPU
        # the users changelog is read back by offset: the broker profile's batch size (one record
        # per batch where a multi-record batch would end a worker's recovery early)
        rpb = changelog_records_per_batch(s)
        state_prod = prod if rpb is None else ContractProducer.from_settings(s, linger_ms=100, records_per_batch=rpb)
        users = changes = 0
        by_change: dict[str, int] = {}
        # the CloudEvents headers a worker attaches (CLOUDEVENTS=0: none)
        ce_headers = cloudevents.header_builder(self.wire.framed) if s.cloudevents else lambda ch: None
        for (p, _), st in sorted(self.states.items()):
            k = user_key(st.site_id, st.user_id)
            site = self.registry.site(st.site_id)
            out = rebuild_user(st, site.active, published.get((st.site_id, st.user_id), {}), self.mode, run_id,
                               self.now_ms)
            for ch in out:
                prod.raw(s.topics.membership_changes, f"{ch.site_id}:{ch.user_id}".encode(),
                         self.wire.encode_membership_change(ch), headers=ce_headers(ch))
                by_change[ch.change] = by_change.get(ch.change, 0) + 1
            changes += len(out)
            state_prod.raw(s.changelog_topic, k, encode_state(st), partition=p)
            # members-tab entries are not changelogged: workers derive them when they restore states
            if st.next_check_at:
                state_prod.raw(s.changelog_topic, timer_key(st.next_check_at, k), b"", partition=p)
            users += 1
            if on_progress and users % 1000 == 0:
                on_progress(1000)
        if on_progress and users % 1000:
            on_progress(users % 1000)
        phases["rebuild_users"] = round(time.monotonic() - t, 3)
        t = time.monotonic()
        prod.flush(120)
        if state_prod is not prod:
            state_prod.flush(120)
        phases["flush"] = round(time.monotonic() - t, 3)
        waits = prod.queue_full_waits + (state_prod.queue_full_waits if state_prod is not prod else 0)
        return {"users": users, "changes": changes, "by_change": by_change, "phases": phases,
                "queue_full_waits": waits}


def changelog_records_per_batch(s: Settings) -> int | None:
    """Records per batch for the rebuild's users changelog writes: the broker profile's."""
    return profile_for(s).records_per_batch


def _slice_main(conn: Connection, s: Settings, parts: list[int], mode: str, now_ms: int) -> None:
    """A rebuild process: fold, report, wait for the run id, rebuild, report (see _Slice)."""
    try:
        sl = _Slice(s, parts, mode, now_ms)
        conn.send(("folded", sl.fold(lambda n: conn.send(("progress", ("read", n))))))
        run_id = conn.recv()
        conn.send(("done", sl.rebuild(run_id, lambda n: conn.send(("progress", ("rebuild", n))))))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises RebuildError
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


class _Slices:
    """The parent's side of a parallel rebuild: one spawned process per group of partitions."""

    def __init__(self, s: Settings, groups: list[list[int]], mode: str, now_ms: int,
                 on_progress: Callable[[str, int], None], target: Callable[..., None] | None = None) -> None:
        """``target``: the process's function (default :func:`_slice_main`; tests pass failing
        ones from :mod:`tests.support.rebuild_doubles`)."""
        ctx = multiprocessing.get_context("spawn")  # no fork: librdkafka and rich run threads
        self.groups, self.on_progress = groups, on_progress
        self.procs: list[Any] = []
        self.conns: list[Connection] = []
        for g in groups:
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=target or _slice_main, args=(theirs, s, g, mode, now_ms), daemon=True,
                               name=f"rebuild-partitions-{','.join(map(str, g))}")
            proc.start()
            theirs.close()
            self.procs.append(proc)
            self.conns.append(mine)

    def gather(self, kind: str) -> list[dict[str, Any]]:
        """Wait for every process's ``kind`` message, passing progress on; raise on any failure."""
        got: dict[int, dict[str, Any]] = {}
        while len(got) < len(self.conns):
            waiting = [c for i, c in enumerate(self.conns) if i not in got]
            for conn in mp_wait(waiting, timeout=5):
                i = self.conns.index(conn)  # type: ignore[arg-type]
                try:
                    tag, body = conn.recv()  # type: ignore[union-attr]
                except EOFError:
                    raise RebuildError(self._died(i)) from None
                if tag == "progress":
                    self.on_progress(*body)
                elif tag == "error":
                    raise RebuildError(f"rebuild of partitions {self.groups[i]} failed:\n{body}")
                elif tag == kind:
                    got[i] = body
            for i, proc in enumerate(self.procs):
                if i not in got and not proc.is_alive() and not self.conns[i].poll():
                    raise RebuildError(self._died(i))
        return [got[i] for i in range(len(self.conns))]

    def _died(self, i: int) -> str:
        self.procs[i].join(5)
        return (f"the rebuild process for partitions {self.groups[i]} died (exit code "
                f"{self.procs[i].exitcode}); nothing was committed: run the rebuild again")

    def send(self, value: Any) -> None:
        for conn in self.conns:
            conn.send(value)

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()


def run_rebuild(s: Settings, mode: str, run_id: str | None = None, progress: Any = None,
                now_ms: int | None = None, jobs: int | None = None) -> RebuildReport:
    """Rebuild every user from the input topics (see the module docstring); ``jobs`` processes
    (default: one per core) each take a share of the partitions."""
    started = time.monotonic()
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    report = RebuildReport(run_id or "", started=started)
    ensure_group_idle(s)
    member = GroupMember(s, [s.topics.user_events, s.topics.control])  # joins while the rebuild works
    try:
        _rebuild(s, mode, run_id, progress, now_ms, jobs, report, member)
    finally:
        member.close()
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _rebuild(s: Settings, mode: str, run_id: str | None, progress: Any, now_ms: int, jobs: int | None,
             report: RebuildReport, member: GroupMember) -> None:
    t = report.lap("group_check", report.started)
    parts = partitions(s.bootstrap_servers, s.topics.user_events, s.kafka_security)
    jobs = max(1, min(jobs or default_jobs(len(parts)), len(parts)))
    groups = [parts[i::jobs] for i in range(jobs)]
    tasks: dict[str, Any] = {}

    def advance(phase: str, n: int) -> None:
        if progress and phase in tasks:
            progress.advance(tasks[phase], n)

    runner: _Slices | None = None
    try:
        # the processes start first: what the parent reads next overlaps their start-up
        runner = _Slices(s, groups, mode, now_ms, advance) if jobs > 1 else None
        control_ends = read_ends(s.bootstrap_servers, s.topics.control, s.kafka_security)
        if progress:
            hint = end_offsets(s.bootstrap_servers, s.topics.user_events, parts, s.kafka_security)  # the bar only
            tasks["read"] = progress.add_task("reading user events", total=sum(hint.values()))
        t = report.lap("offsets", t)
        if runner is None:  # in this process (also what a profiler sees)
            local = _Slice(s, parts, mode, now_ms)
            folded = [local.fold(lambda n: advance("read", n))]
        else:
            folded = runner.gather("folded")
        t = report.lap("read_events", t)
        ends = {p: off for f in folded for p, off in f["ends"].items()}
        catalog_offsets = {f["catalog_offset"] for f in folded}
        if len(catalog_offsets) != 1:
            raise RebuildError("the catalog changed while the rebuild read it: stop every worker and run it again")
        report.events = sum(f["events"] for f in folded)
        report.skipped_invalid = sum(f["skipped_invalid"] for f in folded)
        if run_id is None:
            basis = json.dumps([sorted(ends.items()), catalog_offsets.pop()])
            report.run_id = run_id = hashlib.blake2b(basis.encode(), digest_size=6).hexdigest()
        if progress:
            tasks["rebuild"] = progress.add_task("rebuilding users", total=sum(f["users"] for f in folded))
        if runner is None:
            done = [local.rebuild(run_id, lambda n: advance("rebuild", n))]
        else:
            runner.send(run_id)
            done = runner.gather("done")
    finally:
        if runner is not None:
            runner.close()
    for d in done:
        report.users += d["users"]
        report.changes += d["changes"]
        for change, n in d["by_change"].items():
            report.by_change[change] = report.by_change.get(change, 0) + n
    t = report.lap("rebuild_users", t)
    for phase in ("read_output", "rebuild_users", "flush"):  # the slowest process's time per step
        report.phases[f"slowest_{phase}"] = max(d["phases"][phase] for d in done)
    report.jobs = jobs
    report.queue_full_waits = sum(d["queue_full_waits"] for d in done)
    member.commit({s.topics.user_events: ends, s.topics.control: control_ends})
    report.lap("commit_offsets", t)


class GroupMember:
    """A member of the processor's consumer group, joined in a background thread, that commits
    the rebuild's offsets and leaves.

    Joining waits for the broker's rebalance delay (about 3 s on the embedded test broker; Kafka's
    ``group.initial.rebalance.delay.ms``), so the rebuild joins when it starts and the wait
    overlaps its work. A commit from a member is what every broker accepts (the embedded test broker refuses a
    group-less commit once the group has had members). The member advertises the assignor name
    Faust uses ("faust"): a broker that remembers an empty group's protocol (the embedded test broker does) would
    otherwise refuse the join. When someone else joins meanwhile (a worker started too early),
    the group rebalances and the rebuild refuses to commit instead of racing that worker.
    """

    def __init__(self, s: Settings, topics: list[str], timeout: float = 60.0) -> None:
        self.s, self.topics, self.timeout = s, sorted(topics), timeout
        self._consumer: Any = None
        self.assignments = 0  # more than one: the group rebalanced (someone else joined)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="rebuild-group-member", daemon=True)
        self._thread.start()
        self._joined = asyncio.run_coroutine_threadsafe(self._join(), self._loop)

    async def _join(self) -> None:
        from aiokafka import ConsumerRebalanceListener
        from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

        class FaustNamedAssignor(RoundRobinPartitionAssignor):
            name = "faust"

        c = self._consumer = clients.rebuild_group_member(self.s.bootstrap_servers, self.s.kafka_security,
                                                          self.s.app_id, FaustNamedAssignor)
        await c.start()
        member = self

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: Any) -> None:
                pass

            async def on_partitions_assigned(self, assigned: Any) -> None:
                member.assignments += 1

        c.subscribe(self.topics, listener=Listener())
        deadline = time.monotonic() + self.timeout
        while not c.assignment() and time.monotonic() < deadline:
            await c.getmany(timeout_ms=200)
        if not c.assignment():
            raise RebuildError(f"could not join consumer group {self.s.app_id!r} to commit offsets")
        c.pause(*c.assignment())  # a member only to commit: fetch nothing

    def wait_joined(self) -> None:
        """Return once the member has its assignment (raises RebuildError if it could not join)."""
        self._joined.result(self.timeout)

    def commit(self, offsets: dict[str, dict[int, int]]) -> None:
        """Point the group at ``offsets`` (topic -> partition -> next offset)."""
        from aiokafka import TopicPartition as ATP
        from aiokafka.errors import KafkaError as AIOKafkaError

        self.wait_joined()
        if self.assignments > 1:
            raise RebuildError(f"another member joined consumer group {self.s.app_id!r} during the rebuild: "
                               "stop every worker and run the rebuild again")
        done = asyncio.run_coroutine_threadsafe(
            self._consumer.commit({ATP(t, p): off for t, parts in offsets.items() for p, off in parts.items()}),
            self._loop)
        try:
            done.result(self.timeout)
        except AIOKafkaError as err:
            raise RebuildError(f"could not commit the rebuild's offsets ({type(err).__name__}: {err}); did a worker "
                               "start during the rebuild? Stop every worker and run the rebuild again") from None

    def close(self) -> None:
        """Leave the group and stop the thread."""
        async def stop() -> None:
            if self._consumer is not None:
                await asyncio.wait_for(self._consumer.stop(), 30)

        try:
            if not self._joined.done():
                self._joined.cancel()
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(40)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


def export_state(s: Settings) -> list[str]:
    """Sorted JSON lines of every stored user (from the table changelog): profile and memberships."""
    latest: dict[bytes, bytes | None] = {}
    for _, _, key, value in read_topic(s.bootstrap_servers, s.changelog_topic, security=s.kafka_security):
        if key is not None and key.startswith(b"U"):
            latest[key] = value
    lines = []
    for key, value in latest.items():
        if not value:
            continue
        st = decode_state(value)
        lines.append(json.dumps({
            "site_id": st.site_id,
            "user_id": st.user_id,
            "deleted": st.deleted,
            "profile": st.profile,
            "segments": sorted(seg for seg, f in st.facts.items() if f.member),
        }, sort_keys=True))
    return sorted(lines)
