"""The users changelog producer (processor/runtime/changelog.py): librdkafka settings, a failed record is
fatal, a flush waits only for what was put before it. Real client; no broker reachable here (the
integration tests in tests/integration/test_client.py use the real broker)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from processor.runtime.changelog import ChangelogProducer
from processor.runtime.clients import changelog_config
from processor.runtime.exceptions import ChangelogError


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_config_keeps_write_order_and_single_record_batches_for_tansu() -> None:
    """acks=all, idempotent with at most 5 requests in flight (a retried batch never overtakes a
    later write of the same key); with the tansu quirk every record is a batch of its own."""
    cfg = changelog_config("b:9092", "w-changelog", records_per_batch=1)
    assert cfg["acks"] == "all" and cfg["enable.idempotence"] is True
    assert cfg["max.in.flight.requests.per.connection"] <= 5  # the idempotent producer's ordering bound
    assert cfg["batch.num.messages"] == 1
    assert "batch.num.messages" not in changelog_config("b:9092", "w", records_per_batch=None)


async def test_flush_before_any_record_creates_no_client() -> None:
    """Nothing put, nothing to wait for."""
    out = ChangelogProducer("t", changelog_config(f"127.0.0.1:{closed_port()}", "t", 1))
    await out.flush()
    assert out._producer is None and out.acked == {}


async def test_an_unacknowledged_record_is_fatal() -> None:
    """With no broker the records time out: flush raises, ``on_error`` runs once on the event loop
    with the error, nothing counts as acknowledged, and every later put and flush raises too."""
    cfg = {**changelog_config(f"127.0.0.1:{closed_port()}", "t", 1), "message.timeout.ms": 300, "log_level": 0}
    out = ChangelogProducer("users-changelog", cfg)
    seen: list[tuple[BaseException, bool]] = []
    loop_thread = asyncio.get_running_loop()
    out.on_error = lambda exc: seen.append((exc, asyncio.get_running_loop() is loop_thread))
    await out.put(3, b"U:s:u1", b"state")
    await out.put(3, b"U:s:u1", None)
    with pytest.raises(ChangelogError, match="partition 3"):
        await out.flush()
    await asyncio.sleep(0)  # on_error is scheduled onto the loop
    assert len(seen) == 1 and seen[0][1] and isinstance(seen[0][0], ChangelogError)
    assert out.acked == {} and out.delivered == 2
    with pytest.raises(ChangelogError):
        await out.put(3, b"U:s:u2", b"state")
    with pytest.raises(ChangelogError):
        await out.flush()


async def test_warm_without_a_broker_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """A worker may start before the broker answers: warming up then returns False and logs, and
    the client exists (it keeps connecting in the background)."""
    out = ChangelogProducer("t", {**changelog_config(f"127.0.0.1:{closed_port()}", "t", 1), "log_level": 0})
    with caplog.at_level("INFO", logger="processor.changelog"):
        assert await out.warm(timeout=0.3) is False
    assert out._producer is not None
    assert "not warmed up" in caplog.text


def test_config_logs_through_python_logging() -> None:
    """librdkafka's log lines of the changelog client go to the ``processor.kafka`` logger, like
    the output client's (tests/unit/test_output_producer.py shows them arriving there)."""
    cfg = changelog_config("b:9092", "w-changelog", records_per_batch=1)
    assert cfg["logger"].name == "processor.kafka"


class _Librdkafka:
    """The confluent_kafka ``Producer`` calls the changelog client makes (``produce``, ``poll``,
    ``flush``), with the broker's answers scripted: ``answer(p)`` acknowledges partition ``p``'s
    records produced so far. Faithful to librdkafka's contract: a partition's delivery reports come
    in produce order (idempotent producer); across partitions there is no order (with one record
    per batch, a partition with a backlog takes one request per record while a partition written
    later goes out in the next request)."""

    def __init__(self, config: dict) -> None:
        import threading

        self._on_delivery = config["on_delivery"]
        self._lock = threading.Lock()
        self._queued: dict[int, list[bytes]] = {}  # produced, not answered
        self._answered: list[tuple[int, int]] = []  # (partition, offset) reports to serve
        self._end: dict[int, int] = {}

    def produce(self, topic: str, value: bytes | None, key: bytes, partition: int) -> None:
        with self._lock:
            self._queued.setdefault(partition, []).append(key)

    def answer(self, partition: int) -> None:
        with self._lock:
            for _ in self._queued.pop(partition, []):
                offset = self._end.get(partition, 0)
                self._end[partition] = offset + 1
                self._answered.append((partition, offset))

    def poll(self, timeout: float = 0) -> int:
        import time
        from types import SimpleNamespace

        with self._lock:
            reports, self._answered = self._answered, []
        for partition, offset in reports:
            self._on_delivery(None, SimpleNamespace(partition=lambda p=partition: p, offset=lambda o=offset: o))
        if not reports and timeout:
            time.sleep(min(timeout, 0.01))
        return len(reports)

    def flush(self, timeout: float = 0) -> int:
        self.poll(0)
        with self._lock:
            return sum(len(q) for q in self._queued.values())


async def test_flush_waits_for_its_own_records_not_for_as_many_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flush returns once every record put before it is acknowledged. Records put while it
    waits, on another partition, may be acknowledged first (librdkafka orders reports per
    partition only): counting any reports up to the snapshot's size let the flush return with the
    earlier records still unacknowledged, so the checkpoint sent changes whose state a kill -9 then
    lost (two-worker takeover: the same change_id emitted again with another emitted_at)."""
    from processor.runtime import changelog as changelog_mod

    clients: list[_Librdkafka] = []
    monkeypatch.setattr(changelog_mod.clients, "new_producer",
                        lambda config, security=None: clients.append(_Librdkafka(config)) or clients[-1])
    out = ChangelogProducer("users-changelog", {})
    for i in range(3):  # a backfill chunk's last users on partition 4
        await out.put(4, b"U:s:u%d" % i, b"state")
    flush = asyncio.create_task(out.flush())
    await asyncio.sleep(0)  # the flush took its snapshot and waits
    for i in range(3):  # the next message, on partition 3, while the flush waits
        await out.put(3, b"U:s:v%d" % i, b"state")
    broker = clients[0]
    broker.answer(3)  # partition 3's records are acknowledged first
    await asyncio.sleep(0.3)
    assert not flush.done(), f"the flush returned with partition 4 unacknowledged (acked={out.acked})"
    broker.answer(4)
    await asyncio.wait_for(flush, 5)
    assert out.acked == {3: 2, 4: 2}
