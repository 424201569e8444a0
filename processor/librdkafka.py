"""What the worker's two librdkafka clients share (processor/changelog.py: the users table's
changelog; processor/output_producer.py: the membership changes).

``KAFKA_LOG``: librdkafka's own log lines (connection failures, broker errors) go through Python
logging as logger ``processor.kafka`` instead of raw "%3|...|FAIL|" lines on stderr, which broke
the worker's JSON log stream (LOG_FORMAT=json). librdkafka hands them over on poll and flush.

``warm``: the clients connect lazily; fetching a topic's metadata when the worker starts makes the
connection (and lets the idempotent changelog client acquire its producer id, which its first
record otherwise waited ~500 ms for on tansu) before the first event needs it.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from typing import Any

KAFKA_LOG = logging.getLogger("processor.kafka")


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
