"""The one place that creates Kafka clients: librdkafka (confluent-kafka), aiokafka and Faust.

Every client is built by one of the constructors here (:func:`new_producer`, :func:`new_consumer`,
:func:`new_admin`, :func:`new_aiokafka_consumer`, :func:`faust_app`), each of which applies the
connection security of the settings (``KafkaSecurity``: TLS, SASL) through processor/kafka_security.py's
mappings, so no client can be built without it. The job-specific settings start from
:func:`base_config` (where the cluster is, and how librdkafka logs).
``tests/unit/test_clients.py`` fails on a client built anywhere else under ``processor/`` (the
embedded broker's launcher aside); ``tests/unit/test_kafka_client_security.py`` fails on a
construction here without a security mapping.

The job-specific settings keep a partition's records in order (one request in flight, or the
idempotent producer), use the Java client's partitioner (``murmur2_random``, as aiokafka and
Faust do, so a user's records land on the partition whose worker holds its state) and
``acks=all``. Why each client exists is in docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from concurrent.futures import Executor
from typing import IO, TYPE_CHECKING, Any

from processor.config import KafkaSecurity
from processor.kafka_security import aiokafka_config, faust_config, librdkafka_config

if TYPE_CHECKING:
    from processor.config import Settings
    from processor.runtime.broker_profile import BrokerProfile

# librdkafka's own log lines (connection failures, broker errors) go through Python logging as
# logger ``processor.kafka``: raw "%3|...|FAIL|" lines on stderr broke the worker's JSON logs.
# librdkafka hands them over on poll and flush.
KAFKA_LOG = logging.getLogger("processor.kafka")
JAVA_PARTITIONER = "murmur2_random"
PLAINTEXT = KafkaSecurity()


def base_config(bootstrap_servers: str) -> dict[str, Any]:
    """What every librdkafka client of the project starts from (the constructors add security)."""
    return {"bootstrap.servers": bootstrap_servers, "log.connection.close": False, "logger": KAFKA_LOG}


def aiokafka_base(bootstrap_servers: str) -> dict[str, Any]:
    """:func:`base_config` for aiokafka's keyword arguments."""
    return {"bootstrap_servers": base_config(bootstrap_servers)["bootstrap.servers"]}


# ----------------------------------------------------------------- constructors
def new_producer(config: dict[str, Any], security: KafkaSecurity | None) -> Any:
    """A librdkafka producer with ``config`` and ``security``'s TLS/SASL keys."""
    from confluent_kafka import Producer

    return Producer({**config, **librdkafka_config(security or PLAINTEXT)})


def new_consumer(config: dict[str, Any], security: KafkaSecurity | None) -> Any:
    """A librdkafka consumer with ``config`` and ``security``'s TLS/SASL keys."""
    from confluent_kafka import Consumer

    return Consumer({**config, **librdkafka_config(security or PLAINTEXT)})


def new_admin(bootstrap_servers: str, security: KafkaSecurity | None, extra: dict[str, Any] | None = None) -> Any:
    """A librdkafka admin client (``extra``: more config keys, e.g. the preflight's ``error_cb``)."""
    from confluent_kafka.admin import AdminClient

    return AdminClient({**base_config(bootstrap_servers), "socket.timeout.ms": 10000, **(extra or {}),
                        **librdkafka_config(security or PLAINTEXT)})


def new_aiokafka_consumer(bootstrap_servers: str, security: KafkaSecurity | None, **kwargs: Any) -> Any:
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(**aiokafka_base(bootstrap_servers), **kwargs,
                            **aiokafka_config(security or PLAINTEXT))


def preflight(bootstrap_servers: str, security: KafkaSecurity | None, timeout: float = 10.0) -> int:
    """processor/kafka_security.py's preflight (a metadata request that fails fast, naming the
    setting, on a refused TLS/SASL login) with an admin client built here; the number of brokers."""
    from processor.kafka_security import preflight as _preflight

    return _preflight(bootstrap_servers, security or PLAINTEXT, timeout,
                      new_admin=lambda extra: new_admin(bootstrap_servers, security, extra))


def faust_app(settings: "Settings", profile: "BrokerProfile", **app_settings: Any) -> Any:
    """The worker's Faust app: its broker, client and security settings here, the rest from the caller."""
    import faust

    st = settings.session_timeout_s
    kafka: dict[str, Any] = dict(
        broker=[f"kafka://{b.strip()}" for b in aiokafka_base(settings.bootstrap_servers)["bootstrap_servers"]
                .split(",")],
        broker_session_timeout=st,
        broker_heartbeat_interval=max(1.0, st / 6),
        broker_request_timeout=max(30.0, st + 5),
        broker_rebalance_timeout=max(60.0, st * 2),
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger=settings.faust_producer_linger_ms / 1000,
    )
    if profile.records_per_batch is not None:
        kafka["producer_max_batch_size"] = profile.records_per_batch
    return faust.App(settings.app_id, **kafka, **app_settings, **faust_config(settings.kafka_security))


# ------------------------------------------------------------ the worker's clients
def changelog_config(bootstrap_servers: str, client_id: str, records_per_batch: int | None,
                     linger_ms: int = 5) -> dict[str, Any]:
    """The users table's changelog (processor/runtime/changelog.py): idempotent, so a partition's
    records keep their order with up to 5 requests in flight; at most 20,000 records wait in the
    client (a put beyond waits, so a long backfill's memory stays bounded). Records linger up to
    ``linger_ms`` to share requests (fewer wake-ups of the client's threads per record); the
    checkpoint's flush sends what lingers at once."""
    cfg: dict[str, Any] = {
        **base_config(bootstrap_servers),
        "client.id": client_id,
        "acks": "all",
        "linger.ms": linger_ms,
        "enable.idempotence": True,
        "max.in.flight.requests.per.connection": 5,
        "queue.buffering.max.messages": 20_000,
    }
    if records_per_batch is not None:
        cfg["batch.num.messages"] = records_per_batch
    return cfg


def output_config(bootstrap_servers: str, client_id: str, linger_ms: int) -> dict[str, Any]:
    """The membership changes (processor/runtime/output_producer.py): batches of many records, one
    request in flight (a retried batch cannot overtake a later one), a delivery report only for
    a failed record (the outbox counts failures, not ~5 callbacks per event)."""
    return {
        **base_config(bootstrap_servers),
        "client.id": client_id,
        "acks": "all",
        "linger.ms": linger_ms,
        "partitioner": JAVA_PARTITIONER,
        "max.in.flight.requests.per.connection": 1,
        "delivery.report.only.error": True,
    }


def dead_letter_config(bootstrap_servers: str, client_id: str, max_bytes: int, timeout_ms: int) -> dict[str, Any]:
    """Dead letters (processor/runtime/dead_letters.py): sent one at a time, never creating the
    topic (a missing topic is a failed send), given up after ``timeout_ms``."""
    return {
        **base_config(bootstrap_servers),
        "client.id": client_id,
        "acks": "all",
        "linger.ms": 0,
        "message.max.bytes": max_bytes,
        "message.timeout.ms": timeout_ms,
        "allow.auto.create.topics": False,
        "partitioner": JAVA_PARTITIONER,
    }


def ingest_config(settings: "Settings", delivery_timeout_s: float) -> dict[str, Any]:
    """The HTTP ingest endpoint's producer of user events: a user's records stay in request order."""
    return {
        **base_config(settings.bootstrap_servers),
        "client.id": f"{settings.app_id}-ingest",
        "acks": "all",
        "linger.ms": 5,
        "partitioner": JAVA_PARTITIONER,
        "max.in.flight.requests.per.connection": 1,
        "message.timeout.ms": int(delivery_timeout_s * 1000),
    }


def ingest_producer(settings: "Settings", delivery_timeout_s: float) -> Any:
    return new_producer(ingest_config(settings, delivery_timeout_s), settings.kafka_security)


def catalog_consumer(bootstrap_servers: str, security: KafkaSecurity | None) -> Any:
    """The catalog log's group-less reader (processor/runtime/catalog_log.py); 50 ms fetch wait:
    a command waits for the catalog to catch up, and some brokers answer only when the wait ends."""
    return new_aiokafka_consumer(bootstrap_servers, security, enable_auto_commit=False, group_id=None,
                                 auto_offset_reset="earliest", fetch_max_wait_ms=50)


# ------------------------------------------------------------- tools' clients
def contract_producer_config(bootstrap_servers: str, linger_ms: int,
                             records_per_batch: int | None = None) -> dict[str, Any]:
    """Tools producing contract messages (processor/client.py). ``records_per_batch``: the broker
    profile's, for a producer writing a topic that workers read back by offset (the rebuild's
    users changelog)."""
    cfg = {**base_config(bootstrap_servers), "linger.ms": linger_ms, "partitioner": JAVA_PARTITIONER}
    if records_per_batch is not None:
        cfg["batch.num.messages"] = records_per_batch
    return cfg


def reader_config(bootstrap_servers: str, group_id: str) -> dict[str, Any]:
    """A reader of whole topics that commits nothing (tools, tests)."""
    return {**base_config(bootstrap_servers), "group.id": group_id, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "session.timeout.ms": 6000}


def rebuild_reader_config(bootstrap_servers: str, group_id: str) -> dict[str, Any]:
    """The rebuild's reader: large fetches, EOF events, and a 50 ms fetch wait (with the 500 ms
    default every catch-up round on a broker that answers only when the wait ends cost half a
    second)."""
    return {**base_config(bootstrap_servers), "group.id": group_id, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "enable.partition.eof": True, "fetch.max.bytes": 64 << 20,
            "fetch.wait.max.ms": 50}


def rebuild_group_member(bootstrap_servers: str, security: KafkaSecurity | None, group_id: str,
                         assignor: Any) -> Any:
    """The rebuild's member of the workers' group, which commits the rebuilt offsets."""
    return new_aiokafka_consumer(bootstrap_servers, security, group_id=group_id, enable_auto_commit=False,
                                 session_timeout_ms=6000, heartbeat_interval_ms=1000,
                                 partition_assignment_strategy=(assignor,))


def moodle_sync_consumer_config(bootstrap_servers: str, group_id: str, session_timeout_s: float) -> dict[str, Any]:
    """``moodle sync``'s consumer of membership changes (commits after Moodle applied a batch)."""
    return {**base_config(bootstrap_servers), "group.id": group_id, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "session.timeout.ms": int(session_timeout_s * 1000),
            "heartbeat.interval.ms": max(1000, int(session_timeout_s * 1000 / 6)),
            "max.poll.interval.ms": 900_000}


def moodle_sync_producer_config(bootstrap_servers: str) -> dict[str, Any]:
    """``moodle sync``'s dead letters."""
    return {**base_config(bootstrap_servers), "acks": "all", "linger.ms": 5, "partitioner": JAVA_PARTITIONER}


# ------------------------------------------------------------------- helpers
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
    """Fetch ``topic``'s metadata through a librdkafka ``client`` on ``executor``, so the client
    connects (and an idempotent producer gets its producer id) before the first record needs it.
    True when the broker answered; a broker that does not answer yet is only logged."""
    try:
        await asyncio.get_running_loop().run_in_executor(executor, client.list_topics, topic, timeout)
    except Exception as exc:  # noqa: BLE001 - KafkaException; a cold start is not an error
        log.info("%s not warmed up (%s); its first record will wait for the broker", what, exc)
        return False
    return True
