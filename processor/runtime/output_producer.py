"""The client that produces membership changes: a librdkafka producer that batches records.

``send`` is one C call that queues the record (no future per record: a worker emits ~5 changes
per user event); librdkafka's threads batch and send them. The outbox only needs to know that
*every* record of a batch was acknowledged: :meth:`OutputProducer.flush` waits for the records
sent before it, and :attr:`OutputProducer.failed` counts the records the broker did not take
(the checkpoint compares it around a batch). Settings (partitioner, ordering, acks):
:func:`processor.runtime.clients.output_config`. Not stopped explicitly: the worker's final
commit flushes it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from processor.runtime import clients
from processor.runtime.exceptions import OutputDeliveryError

log = logging.getLogger("processor.output_producer")


class OutputProducer:
    """``send`` (queue one record, no await on the broker), ``flush`` (every record sent before has
    its delivery report) and ``failed`` (how many records the broker did not acknowledge).

    The client is created on first use. ``flush`` runs librdkafka's blocking flush on one
    dedicated thread, which also runs the delivery callbacks; they count failures."""

    def __init__(self, bootstrap_servers: str, client_id: str, linger_ms: int = 5,
                 config: dict[str, Any] | None = None, security: Any = None) -> None:
        """``config``: extra librdkafka settings (tests use it for short delivery timeouts);
        ``security``: the settings' KafkaSecurity (TLS/SASL; None: plaintext)."""
        self._security = security
        self._config = {**clients.output_config(bootstrap_servers, client_id, linger_ms), **(config or {}),
                        "on_delivery": self._on_delivery}
        self._producer: Any = None
        self._errors: list[str] = []
        self._errors_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self.sent = 0  # records queued so far
        self.failed = 0  # records the broker did not acknowledge so far

    def _client(self) -> Any:
        if self._producer is None:
            self._producer = clients.new_producer(self._config, self._security)
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="output-flush")
        return self._producer

    async def warm(self, topic: str, timeout: float = 10.0) -> bool:
        """Create the client and fetch ``topic``'s metadata before the first change is sent (the
        worker calls it at start). True when the broker answered; otherwise only logged."""
        client = self._client()
        return await clients.warm(client, self._executor, topic, timeout, log, "output client")

    def _on_delivery(self, err: Any, msg: Any) -> None:
        """Runs on the flushing thread, for failed records only (``delivery.report.only.error``)."""
        if err is not None:
            with self._errors_lock:
                self.failed += 1
                self._errors.append(f"{msg.topic()}[{msg.partition()}]: {err}")
                del self._errors[:-10]

    async def send(self, topic: str, key: bytes, value: bytes,
                   headers: list[tuple[str, bytes]] | None = None) -> None:
        """Queue one record (``headers``: its record headers, e.g. the CloudEvents attributes).
        Returns at once; a full local queue waits for the client to drain it."""
        client = self._client()
        while True:
            try:
                client.produce(topic, value, key, headers=headers)
                break
            except BufferError:  # librdkafka's local queue is full: wait until it has sent some
                await asyncio.get_running_loop().run_in_executor(self._executor, client.poll, 0.05)
        self.sent += 1

    def last_error(self) -> str:
        """The most recent delivery failure, for the error an operator reads ("" if none)."""
        with self._errors_lock:
            return self._errors[-1] if self._errors else ""

    async def flush(self) -> None:
        """Return once every record sent before this call is acknowledged or failed (failures are
        counted in :attr:`failed`: the outbox compares that count around its batch, so a failure
        is charged to the batch that sent the record, whichever flush observed it)."""
        if self._producer is None:
            return
        loop = asyncio.get_running_loop()
        left = await loop.run_in_executor(self._executor, self._producer.flush, 60.0)
        if left:
            raise OutputDeliveryError(f"{left} membership changes still unacknowledged after 60 s")
