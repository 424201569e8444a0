"""Edge: rebuild all membership state from the input topics (``python -m processor rebuild``).

With the workers stopped: fold the catalog log and every user event (same
engine as streaming), compare with what the output topic already says, emit
the difference (or a snapshot), append the rebuilt user states to the table
changelog (recovery replays it, so workers pick the states up whether or not
their local RocksDB is wiped), and move the consumer group to the end of the
inputs. Re-running the same rebuild yields the same change ids.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from processor.catalog.entry import CatalogEntry
from processor.catalog.registry import CatalogRegistry
from processor.client import ContractProducer
from processor.config import Settings
from processor.contract.codec import (
    decode_membership_change,
    decode_user_event,
    encode_membership_change,
)
from processor.contract.exceptions import ContractError
from processor.contract.models import MembershipChange
from processor.membership.engine import apply_user_event
from processor.membership.rebuild import rebuild_user
from processor.state.keys import timer_key, user_key
from processor.state.user_state import UserState, decode_state, encode_state
from processor.topics import admin_client


class RebuildError(RuntimeError):
    pass


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

    def lap(self, phase: str, since: float) -> float:
        """Record the seconds ``phase`` took since ``since`` (monotonic); returns now."""
        now = time.monotonic()
        self.phases[phase] = round(now - since, 3)
        return now

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__ | {"events_per_second": round(self.events / self.seconds) if self.seconds else None}


def _consumer(bootstrap: str, group: str | None = None) -> Consumer:
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group or f"rebuild-reader-{uuid.uuid4().hex}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
        "fetch.max.bytes": 64 << 20,
        # Kafka answers a waiting fetch as soon as data arrives, tansu only when the wait ends:
        # with the 500 ms default every catch-up / end-of-partition round cost half a second there
        "fetch.wait.max.ms": 50,
        "log.connection.close": False,
    })


def read_topic(bootstrap: str, topic: str, parts: list[int] | None = None,
               on_batch: Callable[[int], None] | None = None,
               ends: dict[int, int] | None = None) -> Iterator[tuple[int, int, bytes | None, bytes | None]]:
    """(partition, offset, key, value) of a topic from the start to the end seen while reading.

    One consumer for all partitions; each partition is read in order. Reads until every
    partition's EOF event rather than to ListOffsets ends: the test broker reports the base
    offset of the last batch + 1 as its high watermark. ``ends`` receives, per partition,
    the offset after the last record read.
    """
    c = _consumer(bootstrap)
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
            for m in msgs:
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        pending.discard(m.partition())
                    continue
                nxt[m.partition()] = m.offset() + 1
                yield m.partition(), m.offset(), m.key(), m.value()
            if on_batch:
                on_batch(len(msgs))
    finally:
        if ends is not None and parts is not None:
            ends.update(nxt)
        c.close()


def partitions(bootstrap: str, topic: str) -> list[int]:
    c = _consumer(bootstrap)
    try:
        return sorted(c.list_topics(topic, timeout=10).topics[topic].partitions)
    finally:
        c.close()


def read_ends(bootstrap: str, topic: str) -> dict[int, int]:
    """Offset after the last record of each partition, by reading it (see read_topic)."""
    ends: dict[int, int] = {}
    for _ in read_topic(bootstrap, topic, ends=ends):
        pass
    return ends


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """ListOffsets(latest) per partition: only an estimate on the test broker (progress bars)."""
    c = _consumer(bootstrap)
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions(bootstrap, topic)}
    finally:
        c.close()


def ensure_group_idle(s: Settings) -> None:
    """Refuse to run while workers are in the consumer group (they would race the rebuild)."""
    admin = admin_client(s.bootstrap_servers)
    try:
        desc = admin.describe_consumer_groups([s.app_id])[s.app_id].result(timeout=10)
    except KafkaException:
        return  # group unknown (never ran) or the broker cannot describe groups
    # Kafka lists the members of a live group. (tansu, the test broker, reports none and a
    # STABLE state even after every member left, so there the operator's word is all we have.)
    if desc.members:
        raise RebuildError(
            f"consumer group {s.app_id!r} has {len(desc.members)} active member(s): stop every worker first"
        )


def load_registry(s: Settings) -> CatalogRegistry:
    reg = CatalogRegistry()
    for _, off, _, value in read_topic(s.bootstrap_servers, s.topics.catalog, [0]):
        if value is not None:
            try:
                reg.apply_entry(off, CatalogEntry.decode(value))
            except (ValueError, KeyError):
                continue
    return reg


def read_published(s: Settings) -> dict[tuple[str, str], dict[str, MembershipChange]]:
    """Last published change per (site, user) and segment, from the output topic."""
    out: dict[tuple[str, str], dict[str, MembershipChange]] = {}
    for _, _, _, value in read_topic(s.bootstrap_servers, s.topics.membership_changes):
        if value is None:
            continue
        try:
            ch = decode_membership_change(value)
        except ContractError:
            continue
        out.setdefault((ch.site_id, ch.user_id), {})[ch.segment_id] = ch
    return out


def run_rebuild(s: Settings, mode: str, run_id: str | None = None, progress: Any = None,
                now_ms: int | None = None) -> RebuildReport:
    started = time.monotonic()
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    report = RebuildReport(run_id or "")
    ensure_group_idle(s)
    t = report.lap("group_check", started)
    registry = load_registry(s)
    t = report.lap("catalog", t)
    control_ends = read_ends(s.bootstrap_servers, s.topics.control)
    hint = end_offsets(s.bootstrap_servers, s.topics.user_events)  # for the progress bar only
    t = report.lap("offsets", t)
    task = progress.add_task("reading user events", total=sum(hint.values())) if progress else None
    states: dict[bytes, tuple[int, UserState]] = {}
    ends: dict[int, int] = {}
    for p, off, key, value in read_topic(
        s.bootstrap_servers, s.topics.user_events, sorted(hint),
        on_batch=(lambda n: progress.advance(task, n)) if progress else None, ends=ends,
    ):
        report.events += 1
        try:
            ev = decode_user_event(key, value)
        except ContractError:
            report.skipped_invalid += 1  # already dead-lettered by the live workers
            continue
        k = user_key(ev.site_id, ev.user_id)
        prev = states.get(k)
        out = apply_user_event(prev[1] if prev else None, ev, off, {}, now_ms)
        states[k] = (p, out.state)
    if run_id is None:
        basis = json.dumps([sorted(ends.items()), registry.applied_offset])
        report.run_id = run_id = hashlib.blake2b(basis.encode(), digest_size=6).hexdigest()
    t = report.lap("read_events", t)
    published = read_published(s)
    t = report.lap("read_output", t)
    prod = ContractProducer(s.bootstrap_servers, s.topics)
    task2 = progress.add_task("rebuilding users", total=len(states)) if progress else None
    for k, (p, st) in sorted(states.items()):
        site = registry.site(st.site_id)
        changes = rebuild_user(st, site.active, published.get((st.site_id, st.user_id), {}), mode, run_id, now_ms,
                               site.index)
        for ch in changes:
            prod.raw(s.topics.membership_changes, f"{ch.site_id}:{ch.user_id}".encode(), encode_membership_change(ch))
            report.by_change[ch.change] = report.by_change.get(ch.change, 0) + 1
        report.changes += len(changes)
        prod.raw(s.changelog_topic, k, encode_state(st), partition=p)
        # members-tab entries are not changelogged: workers derive them when they restore states
        if st.next_check_at:
            prod.raw(s.changelog_topic, timer_key(st.next_check_at, k), b"", partition=p)
        report.users += 1
        if progress:
            progress.advance(task2, 1)
    t = report.lap("rebuild_users", t)
    prod.flush(120)
    t = report.lap("flush", t)
    commit_group_offsets(s, {s.topics.user_events: ends, s.topics.control: control_ends})
    report.lap("commit_offsets", t)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def commit_group_offsets(s: Settings, offsets: dict[str, dict[int, int]], timeout: float = 60.0) -> None:
    """Point the processor's consumer group at the given offsets (group must be idle).

    Joins the group briefly (some brokers reject commits from non-members), commits, leaves.
    The member advertises the assignor name Faust uses ("faust"): a broker that remembers
    an empty group's protocol (tansu does) would otherwise refuse the join.
    """
    import asyncio

    asyncio.run(_commit_async(s, offsets, timeout))


async def _commit_async(s: Settings, offsets: dict[str, dict[int, int]], timeout: float) -> None:
    import asyncio

    from aiokafka import AIOKafkaConsumer
    from aiokafka import TopicPartition as ATP
    from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

    class FaustNamedAssignor(RoundRobinPartitionAssignor):
        name = "faust"

    c = AIOKafkaConsumer(
        bootstrap_servers=s.bootstrap_servers, group_id=s.app_id, enable_auto_commit=False,
        session_timeout_ms=6000, heartbeat_interval_ms=1000,
        partition_assignment_strategy=(FaustNamedAssignor,),
    )
    await c.start()
    try:
        c.subscribe(sorted(offsets))
        deadline = time.monotonic() + timeout
        while not c.assignment() and time.monotonic() < deadline:
            await c.getmany(timeout_ms=200)
        if not c.assignment():
            raise RebuildError(f"could not join consumer group {s.app_id!r} to commit offsets")
        await c.commit({ATP(t, p): off for t, parts in offsets.items() for p, off in parts.items()})
    finally:
        await asyncio.wait_for(c.stop(), 30)


def export_state(s: Settings) -> list[str]:
    """Sorted JSON lines of every stored user (from the table changelog): profile and memberships."""
    latest: dict[bytes, bytes | None] = {}
    for _, _, key, value in read_topic(s.bootstrap_servers, s.changelog_topic):
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
