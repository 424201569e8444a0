"""What every librdkafka (confluent-kafka) client of the processor shares: the worker's (users
changelog, membership changes, dead letters, ingest) and the tools' (CLI, dev runner, rebuild,
topics, the Moodle connector).

``KAFKA_LOG``: librdkafka's own log lines (connection failures, broker errors) go through Python
logging as logger ``processor.kafka`` instead of raw "%3|...|FAIL|" lines on stderr, which broke
the worker's JSON log stream (LOG_FORMAT=json) and buried the dev runner's output (hundreds of
lines once the broker was gone). librdkafka hands them over on poll and flush. Every client is
built with :func:`kafka_config`, which sets it; a command-line tool shows them through
:func:`cli_kafka_log` (one short line per distinct problem) instead of the worker's JSON logging.

``warm``: the clients connect lazily; fetching a topic's metadata when the worker starts makes the
connection (and lets the idempotent changelog client acquire its producer id, which its first
record otherwise waited ~500 ms for on tansu) before the first event needs it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from concurrent.futures import Executor
from typing import IO, Any

KAFKA_LOG = logging.getLogger("processor.kafka")


def kafka_config(conf: dict[str, Any]) -> dict[str, Any]:
    """``conf`` with librdkafka's log lines routed to :data:`KAFKA_LOG` (and connection closes,
    which brokers do to idle clients, not logged as errors)."""
    return {"log.connection.close": False, **conf, "logger": KAFKA_LOG}


# "FAIL [rdkafka#consumer-2] [thrd:127.0.0.1:9092/bootstrap]: 127.0.0.1:9092/bootstrap: Connect to
# ipv4#127.0.0.1:9092 failed: Connection refused (after 0ms in state CONNECT)" -> the part after the
# thread name, without the counters that make every repetition unique
_PREFIX = re.compile(r"^\S+ \[[^\]]*\] \[thrd:[^\]]*\]: ")
_COUNTERS = re.compile(r"\s*\((?:after \d+ms.*|\d+ identical error\(s\) suppressed\))$")


class _OncePerProblem(logging.Handler):
    """Writes ``kafka: <problem>`` once per distinct problem: librdkafka repeats a connection
    failure on every reconnect attempt (several per second)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__(logging.WARNING)
        self.stream = stream
        self.seen: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        text = _COUNTERS.sub("", _PREFIX.sub("", record.getMessage())).strip()
        if text in self.seen:
            return
        self.seen.add(text)
        stream = self.stream or sys.stderr
        stream.write(f"kafka: {text}\n")
        stream.flush()


def cli_kafka_log(stream: IO[str] | None = None) -> logging.Handler:
    """Show librdkafka's warnings and errors on a command-line tool's stderr, each distinct one
    once, as ``kafka: ...`` (not the worker's JSON lines, not librdkafka's raw ones). Idempotent."""
    for h in KAFKA_LOG.handlers:
        if isinstance(h, _OncePerProblem):
            return h
    handler = _OncePerProblem(stream)
    KAFKA_LOG.addHandler(handler)
    KAFKA_LOG.propagate = False
    return handler


async def warm(client: Any, executor: Executor | None, topic: str, timeout: float, log: logging.Logger,
               what: str) -> bool:
    """Fetch ``topic``'s metadata through ``client`` on ``executor``. True when the broker
    answered; a broker that does not answer yet is only logged on ``log`` (the client keeps
    trying on its own)."""
    try:
        await asyncio.get_running_loop().run_in_executor(executor, client.list_topics, topic, timeout)
    except Exception as exc:  # noqa: BLE001 - KafkaException; a cold start is not an error
        log.info("%s not warmed up (%s); its first record will wait for the broker", what, exc)
        return False
    return True
