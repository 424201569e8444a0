"""Edge: send dead letters so that a failed send neither kills the worker nor loses the input.

A dead letter is bounded first (processor/contract/dead_letter_bounds.py), then written by its own
librdkafka client (:class:`DeadLetterProducer`) and awaited until the broker acknowledges it. The
client never creates the topic (``allow.auto.create.topics=false``): a missing dead-letter topic is
a failed send, not a topic with the broker's default layout.

When a send fails, :class:`DeadLetters` blocks the input's partition instead of raising in the
agent (which crashed it; Faust then acked the message, so it was lost):

1. The message is *parked*: marked acked without Faust's offset bookkeeping, so the stream's own
   ack does nothing and no commit of that partition can pass it. Every later message of the same
   partition that still reaches the agent is parked the same way, unprocessed. Nothing is held in
   memory, so Faust's wait for unacked messages at a rebalance or shutdown is not blocked.
2. That partition alone is paused, in the aiokafka consumer (``pause``: its fetcher returns
   nothing more of it). Not with Faust's ``pause_partitions``: Faust's buffer flow control can
   re-activate the partition, and records of it left in a batch being delivered are dropped and
   later counted as a gap, i.e. committed. The agent goes on with every other partition. Gauge
   ``segment_dead_letter_blocked{topic,partition}`` is 1 and an error is logged.
3. A background task retries the send (tenacity, exponential backoff with jitter up to
   ``DEAD_LETTER_RETRY_MAX_S``), counting failures in ``segment_dead_letter_send_failures_total``.
4. Once sent: when every record Faust fetched for the partition before the pause has reached the
   agent, the partition is sought back to the parked message and resumed. The re-read message is
   acked without a second dead letter; the messages after it are processed as usual.

The same pause holds a message that cannot be read *yet* (:meth:`DeadLetters.hold`: the Schema
Registry does not answer): its partition is paused, a background task asks ``ready()`` again with
the same backoff until it answers, and the partition is sought back to the message, which is then
processed as usual (no dead letter, nothing lost). Gauge ``segment_input_held{topic,partition}``.

A rebalance drops the blocks (the next owner re-reads from the committed offset, at or before the
parked message, and dead-letters it again: at-least-once). The worker keeps heartbeating and
polling throughout: no handler waits on the retries, so neither ``broker_max_poll_interval`` nor
the session timeout can be exceeded, and no rebalance is caused.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter

from processor.contract.dead_letter_bounds import MIN_MAX_BYTES, bound_dead_letter
from processor.contract.models import DeadLetter
from processor.runtime import clients
from processor.runtime.exceptions import DeadLetterSendError, InvalidSetting

log = logging.getLogger("processor.dead_letters")
BOUND_IN_THREAD_BYTES = 1 << 20  # hash inputs above this off the event loop (256 MiB: ~0.5 s of SHA-256)


class DeadLetterProducer:
    """One librdkafka client; :meth:`send` returns once the broker acknowledged the record and
    raises :class:`DeadLetterSendError` if it did not (after at most ``timeout_ms``)."""

    def __init__(self, bootstrap_servers: str, client_id: str, max_bytes: int, timeout_ms: int,
                 security: Any = None) -> None:
        self._security = security  # the settings' KafkaSecurity (TLS/SASL; None: plaintext)
        self._config = clients.dead_letter_config(bootstrap_servers, client_id, max_bytes, timeout_ms)
        self._producer: Any = None
        self._executor: ThreadPoolExecutor | None = None

    def _client(self) -> Any:
        if self._producer is None:
            self._producer = clients.new_producer(self._config, self._security)
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dead-letters")
        return self._producer

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        from confluent_kafka import KafkaException

        client = self._client()
        loop = asyncio.get_running_loop()
        report: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def on_delivery(err: Any, msg: Any) -> None:  # on the executor's thread, inside poll()
            report.set_result(err)

        while True:
            try:
                client.produce(topic, value, key, on_delivery=on_delivery)
                break
            except BufferError:  # the local queue is full: serve the client, then retry
                await loop.run_in_executor(self._executor, client.poll, 0.1)
            except KafkaException as exc:  # refused locally (e.g. too large): the broker never sees it
                raise DeadLetterSendError(f"{topic}: {exc}", topic) from None
        while not report.done():
            await loop.run_in_executor(self._executor, client.poll, 0.05)
        err = report.result()
        if err is not None:
            raise DeadLetterSendError(f"{topic}: {err}", topic)


class Partitions(Protocol):
    """What :class:`DeadLetters` needs from the consumer (the worker's:
    :class:`processor.runtime.faust_compat.ConsumerPartitions`)."""

    def generation(self) -> int: ...
    async def pause(self, tp: Any) -> float: ...
    def fetched_since(self, paused_at: float) -> bool: ...
    def read_offset(self, tp: Any) -> int | None: ...
    async def seek(self, tp: Any, offset: int) -> None: ...
    async def resume(self, tp: Any) -> None: ...


@dataclass
class _Block:
    """A partition waiting for the dead letter of its message at ``offset``."""

    offset: int
    records: list[tuple[bytes | None, bytes]]  # (key, dead letter) not sent yet, in order
    generation: int
    seen: int  # highest offset of the partition the agent parked since
    sealed: bool = False  # all sent, about to seek: a later dead letter needs a block of its own
    replay: bool = False  # sought back: the next message of the partition is the re-read one
    task: asyncio.Task[None] | None = None
    ready: Callable[[], Awaitable[str | None]] | None = None  # a held message (hold): None once readable


class DeadLetters:
    """See the module docstring. ``holds`` and ``send`` are called by the agents' guard."""

    def __init__(self, topic: str, producer: DeadLetterProducer, partitions: Partitions, metrics: Any,
                 max_bytes: int, retry_max_s: float = 30.0,
                 encode: Callable[[DeadLetter], bytes] | None = None) -> None:
        """``encode``: the dead-letter topic's wire format (processor/wire.py; default schemaless)."""
        if max_bytes < MIN_MAX_BYTES:  # refuse at start, not at the first dead letter
            raise InvalidSetting("DEAD_LETTER_MAX_BYTES",
                                 f"DEAD_LETTER_MAX_BYTES is {max_bytes}; it must be at least {MIN_MAX_BYTES}")
        self.topic = topic
        self.producer = producer
        self.partitions = partitions
        self.metrics = metrics
        self.max_bytes = max_bytes
        self.retry_max_s = retry_max_s
        self._blocks: dict[Any, _Block] = {}
        self._failing = False  # the last send failed: later dead letters block without a first try
        if encode is None:
            from processor.wire import SCHEMALESS

            encode = SCHEMALESS.encode_dead_letter
        self.encode = encode

    def holds(self, msg: Any) -> bool:
        """True when ``msg`` must not be processed: its partition waits for a dead letter (``msg``
        is parked), or ``msg`` is the re-read message whose dead letter was sent (it is acked)."""
        b = self._blocks.get(msg.tp)
        if b is None:
            return False
        if b.replay:
            del self._blocks[msg.tp]
            # the re-read message: its dead letter was sent (ack it), or it was held (process it now);
            # another offset: the message is gone (retention), go on
            return bool(msg.offset == b.offset and b.ready is None)
        msg.acked = True  # Faust's ack becomes a no-op: the offset is never marked committable
        b.seen = max(b.seen, msg.offset)
        return True

    async def send(self, msg: Any, dl: DeadLetter) -> bool:
        """Bound and send ``dl`` (the dead letter of ``msg``); on failure block ``msg``'s partition.
        True when it was sent, False when ``msg`` is parked behind it. Never raises (but for
        cancellation)."""
        size = len(dl.value or b"") + len(dl.key or b"")
        if size > BOUND_IN_THREAD_BYTES:
            dl = await asyncio.to_thread(bound_dead_letter, dl, self.max_bytes)
        else:
            dl = bound_dead_letter(dl, self.max_bytes)
        record = self.encode(dl)
        if msg.tp in self._blocks:  # a second dead letter of the same message: after the first
            reason = "the message's first dead letter is not sent yet"
        elif self._failing:
            reason = "the dead-letter topic did not take the previous dead letter either"
        else:
            try:
                await self.producer.send(self.topic, dl.key, record)
                return True
            except DeadLetterSendError as exc:
                self.metrics.dead_letter_failures.labels(msg.topic).inc()
                reason = str(exc)
        self._block(msg, dl.key, record, reason)
        return False

    def _block(self, msg: Any, key: bytes | None, record: bytes, reason: str) -> None:
        self._failing = True
        msg.acked = True
        b = self._blocks.get(msg.tp)
        if b is not None and not b.sealed:
            b.records.append((key, record))  # its task sends it after the first
            return
        self._pause(msg, _Block(msg.offset, [(key, record)], self.partitions.generation(), msg.offset),
                    self.metrics.dead_letter_blocked, "DEAD_LETTER_BLOCKED", reason,
                    "dead letter of %s[%d]@%d not sent (%s); consumption of %s[%d] paused until it is")

    def hold(self, msg: Any, ready: Callable[[], Awaitable[str | None]], reason: str) -> None:
        """``msg`` cannot be read yet (``reason``): park it, pause its partition until ``ready()``
        answers None, then seek back to it so it is read again (see the module docstring)."""
        msg.acked = True
        self._pause(msg, _Block(msg.offset, [], self.partitions.generation(), msg.offset, ready=ready),
                    self.metrics.input_held, "INPUT_HELD", reason,
                    "%s[%d]@%d cannot be read now (%s); consumption of %s[%d] paused until it can")

    def _pause(self, msg: Any, b: _Block, gauge: Any, code: str, reason: str, fmt: str) -> None:
        """Park ``msg``'s partition behind ``b``: its gauge set to 1, an error logged (``fmt`` takes
        topic, partition, offset, reason, topic, partition) and the task that lifts it started."""
        self._blocks[msg.tp] = b
        gauge.labels(msg.topic, str(msg.partition)).set(1)
        log.error(fmt, msg.topic, msg.partition, msg.offset, reason, msg.topic, msg.partition,
                  extra={"topic": msg.topic, "partition": msg.partition, "offset": msg.offset, "error_code": code})
        b.task = asyncio.ensure_future(self._unblock(msg.tp, b))

    async def _wait_ready(self, tp: Any, b: _Block) -> int:
        """Ask ``b.ready()`` with exponential backoff (up to ``retry_max_s``) until it answers None."""
        assert b.ready is not None
        attempts, delay = 1, min(1.0, self.retry_max_s)
        while (reason := await b.ready()) is not None:
            log.warning("%s[%d]@%d still cannot be read (attempt %d: %s); asking again in %.1f s", tp.topic,
                        tp.partition, b.offset, attempts, reason, delay,
                        extra={"topic": tp.topic, "partition": tp.partition})
            await asyncio.sleep(delay)
            attempts, delay = attempts + 1, min(self.retry_max_s, delay * 2)
        return attempts

    async def _unblock(self, tp: Any, b: _Block) -> None:
        try:
            paused_at = await self.partitions.pause(tp)
            attempts = 0
            if b.ready is not None:
                attempts = await self._wait_ready(tp, b)
                while not self._drained(tp, b, paused_at):
                    await asyncio.sleep(0.05)
            while b.records:  # more can come while waiting (a handler dead-lettering twice)
                attempts += await self._retry(tp, b)
                self._failing = False
                while not self._drained(tp, b, paused_at):
                    await asyncio.sleep(0.05)
            b.sealed = True
            if self._blocks.get(tp) is not b or self.partitions.generation() != b.generation:
                return  # revoked meanwhile: the next owner re-reads from the committed offset
            await self.partitions.seek(tp, b.offset)
            b.replay = True
            await self.partitions.resume(tp)
            if b.ready is not None:
                self.metrics.input_held.labels(tp.topic, str(tp.partition)).set(0)
                log.warning("%s[%d]@%d can be read (%d attempts); %s[%d] resumed from it", tp.topic, tp.partition,
                            b.offset, attempts, tp.topic, tp.partition,
                            extra={"topic": tp.topic, "partition": tp.partition, "offset": b.offset})
                return
            self.metrics.dead_letter_blocked.labels(tp.topic, str(tp.partition)).set(0)
            log.warning("dead letter of %s[%d]@%d sent (%d attempts in the background); %s[%d] resumed",
                        tp.topic, tp.partition, b.offset, attempts, tp.topic, tp.partition,
                        extra={"topic": tp.topic, "partition": tp.partition, "offset": b.offset})
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - e.g. the partition was revoked under us; nothing is committed past it
            log.exception("unblocking %s[%d] failed; it stays paused until the next rebalance", tp.topic,
                          tp.partition)

    def _drained(self, tp: Any, b: _Block, paused_at: float) -> bool:
        """Every record of ``tp`` fetched before the pause reached the agent (which parked it):
        after a seek now, the agent sees nothing of ``tp`` but the re-read records."""
        if not self.partitions.fetched_since(paused_at):
            return False
        last = self.partitions.read_offset(tp)
        return last is None or b.seen >= last

    async def _retry(self, tp: Any, b: _Block) -> int:
        """Send the block's dead letters until the broker took them all; returns the number of attempts."""

        def failed(state: RetryCallState) -> None:
            self.metrics.dead_letter_failures.labels(tp.topic).inc()
            exc = state.outcome.exception() if state.outcome else None
            log.warning("dead letter of %s[%d]@%d still not sent (attempt %d: %s); retrying in %.1f s",
                        tp.topic, tp.partition, b.offset, state.attempt_number, exc,
                        state.upcoming_sleep, extra={"topic": tp.topic, "partition": tp.partition})

        retrying = AsyncRetrying(retry=retry_if_exception_type(DeadLetterSendError),
                                 wait=wait_exponential_jitter(initial=1.0, max=self.retry_max_s),
                                 before_sleep=failed, reraise=True)
        async for attempt in retrying:
            with attempt:
                while b.records:
                    await self.producer.send(self.topic, *b.records[0])
                    del b.records[0]
        return int(retrying.statistics.get("attempt_number", 1))

    def on_revoke(self) -> None:
        """A rebalance: forget every block (the partitions' next owners re-read them)."""
        for tp, b in self._blocks.items():
            if b.task is not None:
                b.task.cancel()
            gauge = self.metrics.input_held if b.ready is not None else self.metrics.dead_letter_blocked
            gauge.labels(tp.topic, str(tp.partition)).set(0)
        self._blocks.clear()
        self._failing = False

    stop = on_revoke
