"""A dead letter can no longer kill the agent (issue 17).

Before: a user event as large as Kafka's defaults let through was dead-lettered whole, the dead
letter went over the worker's producer limit, the send raised inside the handler, the agent
crashed and Faust acked the message: no dead letter, the input lost. And a dead-letter topic that
did not take the record had the same effect.

The broker's real limits, measured (tansu 0.6.0): it accepts a produce request of up to 2^28 bytes
(256 MiB; a larger one is refused with ``KafkaProtocol(Overflow)``); the worker's producers:
librdkafka's ``message.max.bytes`` and aiokafka's ``max_request_size`` both 1,000,000 by default.
"""

from __future__ import annotations

import hashlib
import re
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from processor.client import TopicReader
from processor.contract.codec import encode_dead_letter, encode_user_event, user_event_key
from tests.integration.test_user_events import setup_site
from tests.support.harness import Cluster, WorkerProcess, make_event, partition_of

TANSU_MAX_REQUEST = 2**28  # tansu 0.6.0: the largest produce request it accepts (bytes)


def big_producer(bootstrap: str, timeout_ms: int) -> Producer:
    """A producer allowed up to librdkafka's maximum message size, so the broker is the limit."""
    return Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 1_000_000_000,
                     "message.timeout.ms": timeout_ms, "retries": 0, "partitioner": "murmur2_random",
                     "linger.ms": 0, "log.connection.close": False})


def produce(p: Producer, topic: str, key: bytes, value: bytes, **kw: int) -> tuple[object, int, int]:
    """(error or None, partition, offset) of one record."""
    out: dict[str, tuple[object, int, int]] = {}
    p.produce(topic, value, key, on_delivery=lambda e, m: out.setdefault("r", (e, m.partition(), m.offset())), **kw)
    p.flush(120)
    return out["r"]


def event_of_size(site: str, user: str, size: int) -> bytes:
    """A valid USER_CREATED of exactly ``size`` encoded bytes (one long profile string)."""
    def varint_len(n: int) -> int:  # Avro's zig-zag varint of a string length n >= 0
        z, k = n << 1, 1
        while z >= 0x80:
            z, k = z >> 7, k + 1
        return k

    base = len(encode_user_event(make_event(site, user, event_id="e", first="")))  # length varint: 1 byte
    pad = size - base
    while base + pad + varint_len(pad) - 1 != size:
        pad -= base + pad + varint_len(pad) - 1 - size
    value = encode_user_event(make_event(site, user, event_id="e", first="x" * pad))
    assert len(value) == size
    return value


class NothingToRead:
    """Stands in for the cluster's dead-letter reader while the topic does not exist."""

    def poll_batch(self, timeout: float = 0.0, max_messages: int = 0) -> list[tuple[bytes, bytes]]:
        return []

    def close(self) -> None:
        pass


def metrics(worker: WorkerProcess) -> str:
    with urllib.request.urlopen(f"{worker.url}/metrics", timeout=10) as r:
        return r.read().decode()


def metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        m = re.match(rf"{name}\{{(.*)\}} (\S+)$", line)
        if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            return float(m.group(2))
    return None


def test_the_largest_event_the_broker_accepts_is_dead_lettered_bounded(cluster: Cluster, site: str) -> None:
    """A user event of the largest size tansu accepts (256 MiB, produced with confluent-kafka; one
    byte more is refused) is dead-lettered LIMIT_EXCEEDED, its value cut to fit the dead-letter
    producer's 1,000,000 bytes with the original size and SHA-256; a valid event of the same user
    behind it is processed."""
    s = cluster.settings
    setup_site(cluster, site)
    key = user_event_key(site, "alice")
    p = big_producer(s.bootstrap_servers, 20_000)
    over = event_of_size(site, "alice", TANSU_MAX_REQUEST)
    err, _, _ = produce(p, s.topics.user_events, key, over)
    assert err is not None, "tansu accepted a 256 MiB value: its limit is not the one this test assumes"
    del over
    # the request around the value (headers, topic, key, batch) takes < 1 KiB
    value = event_of_size(site, "alice", TANSU_MAX_REQUEST - 1024)
    size, sha = len(value), hashlib.sha256(value).hexdigest()
    err, partition, offset = produce(p, s.topics.user_events, key, value)
    assert err is None, err
    cluster.producer.user_event(make_event(site, "alice", department="Sales"))
    cluster.producer.flush()
    cluster.wait(lambda: [c.user_id for c in cluster.changes_for(site)] == ["alice"], 180, "the event behind it")

    cluster.wait(lambda: any(d.key == key for d in cluster.out.dead_letters), 30, "the big event's dead letter")
    dls = [d for d in cluster.out.dead_letters if d.key == key]
    assert {(d.source_partition, d.source_offset) for d in dls} == {(partition, offset)}
    dl = dls[0]
    assert dl.error_code == "LIMIT_EXCEEDED" and dl.truncated == ("value",)
    assert (dl.value_size, dl.value_sha256) == (size, sha)
    assert dl.key_size == len(key) and dl.key_sha256 == hashlib.sha256(key).hexdigest()
    assert value.startswith(dl.value)
    assert 900_000 < len(encode_dead_letter(dl)) + len(key) <= s.dead_letter_max_bytes
    assert all(w.alive for w in cluster.workers)


@pytest.fixture
def own_cluster(cluster: Cluster, tmp_path: Path):
    """Topics and one worker of its own on the session's broker (this test deletes its dead-letter
    topic, which must not disturb the other tests), warmed up without a dead letter: the worker's
    dead-letter client has not met the topic yet. (tansu keeps taking records for a deleted topic
    from a client that still has it in its metadata; Kafka would refuse them.)"""
    tag = uuid.uuid4().hex[:8]
    c = Cluster(tmp_path, bootstrap=cluster.settings.bootstrap_servers, app_id=f"sa-dlq-{tag}",
                topic_suffix=f".dlq-{tag}")
    c.settings = c.settings.with_(broker_quirks=frozenset({"tansu"}))
    w = WorkerProcess(c.settings, "w0", tmp_path, extra_env={
        "DEAD_LETTER_TIMEOUT_MS": "1500", "DEAD_LETTER_RETRY_MAX_S": "2"}).start()
    c.workers.append(w)
    try:
        yield c
    finally:
        c.close()


def test_a_dead_letter_that_cannot_be_sent_pauses_its_partition_until_it_can(own_cluster: Cluster) -> None:
    """The dead-letter topic does not exist (deleted; the client never creates topics): a garbage
    message cannot be dead-lettered. The worker stays up, pauses that partition only (error log,
    gauge 1, failure count), commits nothing past the garbage, holds the 40 valid events and the
    second garbage message behind it, and goes on with other partitions, for twice the session
    timeout without a rebalance. Once the topic exists again both dead letters arrive (at least
    once), each held event is processed once, the gauge is 0."""
    c = own_cluster
    s, t = c.settings, c.settings.topics
    worker = c.workers[0]
    site = f"site-{uuid.uuid4().hex[:8]}"
    setup_site(c, site)
    blocked = 0
    users: list[str] = []  # enough users for every partition to have a first one and 40 more on `blocked`
    on: dict[str, int] = {}
    while len(set(on.values())) < s.partitions or sum(p == blocked for p in on.values()) < 41:
        u = f"u{len(users)}"
        users.append(u)
        on[u] = partition_of(user_event_key(site, u), s.partitions)
    first = {p: next(u for u in users if on[u] == p) for p in range(s.partitions)}
    for u in first.values():  # warm-up: every partition consumed
        c.producer.user_event(make_event(site, u, department="Sales"))
    c.producer.flush()
    c.wait(lambda: {ch.user_id for ch in c.changes_for(site)} >= set(first.values()), 90, "warm-up")
    held = [u for u in users if on[u] == blocked and u != first[blocked]][:40]
    assert len(held) == 40
    other, late = [u for u in users if on[u] != blocked and u not in first.values()][:2]
    joins = worker.log_path.read_text(errors="replace").count("(Re-)joining group")

    admin = AdminClient({"bootstrap.servers": s.bootstrap_servers})
    c._readers.pop("dlq").close()  # it would fail on the deleted topic: read nothing until it exists again
    c._readers["dlq"] = NothingToRead()
    admin.delete_topics([t.dead_letters])[t.dead_letters].result(30)
    c.wait(lambda: t.dead_letters not in admin.list_topics(timeout=10).topics, 30, "dead-letter topic deleted")

    p = big_producer(s.bootstrap_servers, 10_000)
    garbage_key, garbage2_key = (f"garbage-{uuid.uuid4().hex[:6]}".encode() for _ in range(2))
    err, _, garbage_offset = produce(p, t.user_events, garbage_key, b"\x00not avro", partition=blocked)
    assert err is None
    for u in held[:20]:
        c.producer.user_event(make_event(site, u, department="Sales"))
    c.producer.flush()
    err, _, garbage2_offset = produce(p, t.user_events, garbage2_key, b"\x00not avro", partition=blocked)
    assert err is None
    for u in held[20:]:
        c.producer.user_event(make_event(site, u, department="Sales"))
    c.producer.user_event(make_event(site, other, department="Sales"))
    c.producer.flush()
    assert garbage2_offset == garbage_offset + 21

    c.wait(lambda: other in {ch.user_id for ch in c.changes_for(site)}, 60, "the other partition's event")
    c.wait(lambda: metric(metrics(worker), "segment_dead_letter_blocked", topic=t.user_events,
                          partition=str(blocked)) == 1, 30, "blocked gauge")
    blocked_at = time.monotonic()
    text = metrics(worker)
    assert (metric(text, "segment_dead_letter_send_failures_total", topic=t.user_events) or 0) >= 1
    assert not set(held) & {ch.user_id for ch in c.changes_for(site)}
    committed = Consumer({"bootstrap.servers": s.bootstrap_servers, "group.id": s.app_id})
    try:
        # marker: a commit that covers the other partition's event, made after the garbage was held
        other_tp = TopicPartition(t.user_events, on[other])
        other_end = committed.get_watermark_offsets(other_tp, timeout=10)[1]
        c.wait(lambda: committed.committed([other_tp], timeout=10)[0].offset >= other_end, 30,
               "a commit past the other partition's event")
        (tp,) = committed.committed([TopicPartition(t.user_events, blocked)], timeout=10)
        assert tp.offset == garbage_offset, (tp.offset, garbage_offset)
    finally:
        committed.close()
    # Blocked for twice the session timeout: the worker still heartbeats and polls (no rebalance),
    # and other partitions still flow.
    time.sleep(max(0.0, 2 * s.session_timeout_s - (time.monotonic() - blocked_at)))
    c.producer.user_event(make_event(site, late, department="Sales"))
    c.producer.flush()
    c.wait(lambda: late in {ch.user_id for ch in c.changes_for(site)}, 60, "an event sent late in the block")
    assert not set(held) & {ch.user_id for ch in c.changes_for(site)}
    assert worker.alive
    log_text = worker.log_path.read_text(errors="replace")
    assert "DEAD_LETTER_BLOCKED" in log_text
    assert log_text.count("(Re-)joining group") == joins, "the block caused a rebalance"
    assert t.dead_letters not in admin.list_topics(timeout=10).topics

    admin.create_topics([NewTopic(t.dead_letters, s.partitions, 1)])[t.dead_letters].result(30)
    c._readers["dlq"] = TopicReader(s.bootstrap_servers, t.dead_letters)
    c.wait(lambda: set(held) <= {ch.user_id for ch in c.changes_for(site)}, 90, "the held events, after recovery")
    c.wait(lambda: {garbage_key, garbage2_key} <= {d.key for d in c.out.dead_letters}, 30, "both dead letters")
    mine = [d for d in c.out.dead_letters if d.key in (garbage_key, garbage2_key)]
    assert {(d.key, d.source_partition, d.source_offset, d.error_code) for d in mine} == {
        (garbage_key, blocked, garbage_offset, "DECODE_ERROR"), (garbage2_key, blocked, garbage2_offset, "DECODE_ERROR")}
    c.wait(lambda: metric(metrics(worker), "segment_dead_letter_blocked", topic=t.user_events,
                          partition=str(blocked)) == 0, 30, "gauge back to 0")
    added = [ch.user_id for ch in c.changes_for(site)]
    assert all(added.count(u) == 1 for u in held), "a held event was processed twice"
    print(f"\n[dead letters] blocked partition: {len(mine)} dead letters for 2 messages, 40 held events once each")
    assert worker.alive
