"""The one place that creates Kafka clients: librdkafka (confluent-kafka), aiokafka and Faust.

Every client starts from :func:`base_config` (where the cluster is, and how librdkafka logs), then
adds what its job needs. Connection security (TLS, SASL) is to be added to :func:`base_config`
and its two translations (:func:`aiokafka_base` for aiokafka, :func:`faust_app` for Faust's
broker settings), and reaches every client from there. ``tests/unit/test_clients.py`` fails on a
client built anywhere else under ``processor/`` (the embedded broker's launcher aside).

The job-specific settings keep a partition's records in order (one request in flight, or the
idempotent producer), use the Java client's partitioner (``murmur2_random``, as aiokafka and
Faust do, so a user's records land on the partition whose worker holds its state) and
``acks=all``. Why each client exists is in docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from processor.config import Settings
    from processor.runtime.broker_profile import BrokerProfile

# librdkafka's own log lines (connection failures, broker errors) go through Python logging as
# logger ``processor.kafka``: raw "%3|...|FAIL|" lines on stderr broke the worker's JSON logs.
# librdkafka hands them over on poll and flush.
KAFKA_LOG = logging.getLogger("processor.kafka")
JAVA_PARTITIONER = "murmur2_random"


def base_config(bootstrap_servers: str) -> dict[str, Any]:
    """What every librdkafka client of the project starts from (security settings go here)."""
    return {"bootstrap.servers": bootstrap_servers, "log.connection.close": False, "logger": KAFKA_LOG}


def aiokafka_base(bootstrap_servers: str) -> dict[str, Any]:
    """:func:`base_config` for aiokafka's keyword arguments."""
    return {"bootstrap_servers": base_config(bootstrap_servers)["bootstrap.servers"]}


# ----------------------------------------------------------------- constructors
def new_producer(config: dict[str, Any]) -> Any:
    from confluent_kafka import Producer

    return Producer(config)


def new_consumer(config: dict[str, Any]) -> Any:
    from confluent_kafka import Consumer

    return Consumer(config)


def new_admin(bootstrap_servers: str) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({**base_config(bootstrap_servers), "socket.timeout.ms": 10000})


def new_aiokafka_consumer(bootstrap_servers: str, **kwargs: Any) -> Any:
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(**aiokafka_base(bootstrap_servers), **kwargs)


def faust_app(settings: "Settings", profile: "BrokerProfile", **app_settings: Any) -> Any:
    """The worker's Faust app: its broker and client settings here, the rest from the caller."""
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
    return faust.App(settings.app_id, **kafka, **app_settings)


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
    return new_producer(ingest_config(settings, delivery_timeout_s))


def catalog_consumer(bootstrap_servers: str) -> Any:
    """The catalog log's group-less reader (processor/runtime/catalog_log.py); 50 ms fetch wait:
    a command waits for the catalog to catch up, and some brokers answer only when the wait ends."""
    return new_aiokafka_consumer(bootstrap_servers, enable_auto_commit=False, group_id=None,
                                 auto_offset_reset="earliest", fetch_max_wait_ms=50)


# ------------------------------------------------------------- tools' clients
def contract_producer_config(bootstrap_servers: str, linger_ms: int) -> dict[str, Any]:
    """Tools producing contract messages (processor/client.py)."""
    return {**base_config(bootstrap_servers), "linger.ms": linger_ms, "partitioner": JAVA_PARTITIONER}


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


def rebuild_group_member(bootstrap_servers: str, group_id: str, assignor: Any) -> Any:
    """The rebuild's member of the workers' group, which commits the rebuilt offsets."""
    return new_aiokafka_consumer(bootstrap_servers, group_id=group_id, enable_auto_commit=False,
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
