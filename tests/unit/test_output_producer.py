"""The librdkafka output client reports undelivered records through its failure count, and the
checkpoint keeps a batch the broker did not acknowledge (real client, no broker reachable)."""

from __future__ import annotations

import socket

import pytest

from processor.runtime.checkpoint import Checkpoint
from processor.runtime.exceptions import OutboxSendError
from processor.runtime.outbox import Outbox
from processor.runtime.clients import output_config as producer_config
from processor.runtime.output_producer import OutputProducer


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_config_partitions_like_the_workers_and_keeps_order() -> None:
    """murmur2 like aiokafka (a user's changes on the user's partition), acks=all, one request in
    flight (a retried batch cannot overtake a later one)."""
    cfg = producer_config("b:9092", "w-changes", 5)
    assert cfg["partitioner"] == "murmur2_random"
    assert cfg["acks"] == "all"
    assert cfg["max.in.flight.requests.per.connection"] == 1
    assert cfg["linger.ms"] == 5


async def test_flush_without_a_send_does_nothing() -> None:
    """No client is created before the first record."""
    out = OutputProducer(f"127.0.0.1:{closed_port()}", "t")
    await out.flush()
    assert out._producer is None and out.failed == 0


async def test_an_undelivered_record_counts_as_failed_and_the_outbox_keeps_its_batch() -> None:
    """With no broker, librdkafka gives up after message.timeout.ms: the flush returns, ``failed``
    grows, and a drain of the outbox raises with the client's error and keeps every record."""
    out = OutputProducer(f"127.0.0.1:{closed_port()}", "t", config={"message.timeout.ms": 300, "log_level": 0})
    box = Outbox()

    async def nothing() -> None:
        pass

    checkpoint = Checkpoint(box, flush_state=nothing, persist=lambda: None,
                            send=lambda k, v, h: out.send("changes", k, v, h), flush_output=out.flush,
                            failures=lambda: out.failed, failure_detail=out.last_error)
    box.put(b"s:u1", b"ADDED", owner=b"u1")
    box.put(b"s:u1", b"REMOVED", owner=b"u1")
    with pytest.raises(OutboxSendError, match="2 membership change"):
        await checkpoint.release()
    assert out.failed == 2 and out.sent == 2
    assert "changes" in out.last_error()
    assert len(box) == 2 and box.pending_for(b"u1")


async def test_warm_without_a_broker_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """Warming up before the broker answers returns False and logs; the client exists."""
    out = OutputProducer(f"127.0.0.1:{closed_port()}", "t", config={"log_level": 0})
    with caplog.at_level("INFO", logger="processor.output_producer"):
        assert await out.warm("changes", timeout=0.3) is False
    assert out._producer is not None
    assert "not warmed up" in caplog.text


async def test_librdkafka_log_lines_go_through_python_logging(caplog: pytest.LogCaptureFixture,
                                                               capfd: pytest.CaptureFixture[str]) -> None:
    """The client's own log lines (here: the connection to a closed port failing) reach the
    ``processor.kafka`` logger, so the worker's JSON log stream carries them, and nothing is
    written to stderr behind logging's back."""
    out = OutputProducer(f"127.0.0.1:{closed_port()}", "t", config={"message.timeout.ms": 300})
    with caplog.at_level("WARNING", logger="processor.kafka"):
        await out.send("changes", b"s:u1", b"ADDED")
        await out.flush()
    assert out.failed == 1
    assert any(r.name == "processor.kafka" and "Connect" in r.getMessage() for r in caplog.records)
    assert "|FAIL|" not in capfd.readouterr().err
