"""``moodle sync``: apply membership changes to Moodle cohorts, as a long-running consumer.

Reads ``segment-automation.membership-changes.v1`` in a consumer group (one group per site;
several instances share the partitions). Per batch of messages:

1. decode; keep only this site's changes; drop change ids already applied (an LRU of recent
   ids: the processor re-delivers byte-identical changes after a crash or rebalance);
2. fold per (segment, user): only the last change of the batch is applied (changes of one user
   are in one partition, in order, so the last one is the current state);
3. apply them through :class:`~processor.connectors.moodle.cohorts.CohortWriter` (batched calls,
   split-and-retry); records Moodle cannot apply (no such cohort, deleted user) go to the
   dead-letter topic with the reason;
4. only then commit the batch's offsets.

A crash (even ``kill -9``) before the commit re-delivers the batch: adds are idempotent in
Moodle (warning "record already exists"), removing a non-member is not an error, and a fold
re-applies the same final state, so nothing is lost and nothing is refused twice. Fatal Moodle
errors (token, service, capability) stop the process with the reason (exit 2); Moodle
unreachable beyond the retry budget exits 3 (the orchestrator restarts it; nothing was committed).

Metrics and probes on ``--port``: ``/metrics``, ``/readyz`` (partitions assigned and the last
Moodle call succeeded), ``/healthz``.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from processor.connectors.moodle.cohorts import Assertion, CohortWriter, Failure
from processor.connectors.moodle.ws import MoodleFatal, MoodleUnavailable
from processor.config import KafkaSecurity
from processor.contract.exceptions import ContractError
from processor.contract.models import DeadLetter
from processor.kafka_security import PLAINTEXT
from processor.wire import SCHEMALESS, WireFormat

log = logging.getLogger("processor.connectors.moodle.sync")

EXIT_OK, EXIT_FATAL, EXIT_UNAVAILABLE, EXIT_KAFKA = 0, 2, 3, 4


class SyncMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.applied = Counter("moodle_sync_applied_total", "Changes applied to Moodle cohorts", ["change"],
                               registry=r)
        self.skipped = Counter("moodle_sync_skipped_total", "Changes not applied, by reason (duplicate, "
                               "superseded, already_member, other_site)", ["reason"], registry=r)
        self.retried = Counter("moodle_sync_retried_total", "Moodle calls retried (network, timeout, http_5xx, "
                               "maintenance) and batches split after a whole-call failure (split)", ["reason"],
                               registry=r)
        self.dead_lettered = Counter("moodle_sync_dead_lettered_total", "Changes Moodle could not apply, sent to "
                                     "the dead-letter topic", ["code"], registry=r)
        self.lag = Gauge("moodle_sync_lag", "Membership changes not yet applied (high watermark - committed)",
                         ["partition"], registry=r)
        self.calls = Counter("moodle_sync_moodle_calls_total", "Moodle web-service calls", ["function", "outcome"],
                             registry=r)
        self.call_seconds = Histogram("moodle_sync_moodle_call_seconds", "Moodle web-service call time",
                                      ["function"], registry=r,
                                      buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.batch_seconds = Histogram("moodle_sync_batch_seconds", "Time to apply and commit one batch",
                                       registry=r, buckets=(.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60))
        self.ready = Gauge("moodle_sync_ready", "1 when partitions are assigned and Moodle answered", registry=r)

    def on_call(self, function: str, seconds: float, outcome: str) -> None:
        self.calls.labels(function, outcome).inc()
        self.call_seconds.labels(function).observe(seconds)

    def on_retry(self, function: str, reason: str) -> None:
        self.retried.labels(reason).inc()


@dataclass
class SyncConfig:
    site_id: str
    bootstrap: str
    topic: str
    dlq_topic: str
    group_id: str
    poll_max: int = 500  # messages per batch
    poll_timeout_s: float = 0.5
    session_timeout_s: float = 30.0
    dedupe_ids: int = 200_000
    exit_when_idle_s: float | None = None  # tests and benchmarks: stop after this long without messages
    security: KafkaSecurity = PLAINTEXT  # TLS/SASL (processor/kafka_security.py)
    # schemaless or Schema Registry-framed (processor/wire.py); a registry that does not answer
    # stops the sync before it commits, so the batch is read again after a restart
    wire: WireFormat = SCHEMALESS


class _Probes(ThreadingHTTPServer):
    daemon_threads = True


class MoodleSync:
    def __init__(self, cfg: SyncConfig, writer: CohortWriter, metrics: SyncMetrics) -> None:
        self.cfg = cfg
        self.writer = writer
        self.metrics = metrics
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._assigned = False
        self._moodle_ok = False
        self._beat = time.monotonic()
        self._stop = threading.Event()
        self._consumer: Any = None
        self._producer: Any = None
        self._dlq_errors: list[str] = []
        self._lag_at = 0.0
        self.batches = 0

    # ------------------------------------------------------------------ probes
    def ready(self) -> bool:
        return self._assigned and self._moodle_ok

    def serve_probes(self, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:
        sync = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/metrics":
                    sync.metrics.ready.set(1 if sync.ready() else 0)
                    body, status, ctype = generate_latest(sync.metrics.registry), 200, "text/plain; version=0.0.4"
                elif self.path == "/readyz":
                    ok = sync.ready()
                    body = (b'{"ready": true}' if ok else
                            f'{{"ready": false, "assigned": {str(sync._assigned).lower()}, '
                            f'"moodle_ok": {str(sync._moodle_ok).lower()}}}'.encode())
                    status, ctype = (200 if ok else 503), "application/json"
                elif self.path == "/healthz":
                    alive = time.monotonic() - sync._beat < max(120.0, sync.writer.client.retry_for + 60)
                    body, status, ctype = b'{"status": "ok"}', (200 if alive else 503), "application/json"
                else:
                    body, status, ctype = b'{"code": "NOT_FOUND"}', 404, "application/json"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        server = _Probes((host, port), Handler)
        threading.Thread(target=server.serve_forever, name="moodle-sync-probes", daemon=True).start()
        return server

    # -------------------------------------------------------------------- kafka
    def _clients(self) -> None:
        from processor.runtime import clients

        c = self.cfg
        self._consumer = clients.new_consumer(
            clients.moodle_sync_consumer_config(c.bootstrap, c.group_id, c.session_timeout_s), c.security)
        self._producer = clients.new_producer(clients.moodle_sync_producer_config(c.bootstrap), c.security)

        def on_assign(consumer: Any, parts: list[Any]) -> None:
            self._assigned = True
            log.info("assigned %s", sorted(p.partition for p in parts))

        def on_revoke(consumer: Any, parts: list[Any]) -> None:
            self._assigned = False
            log.info("revoked %s", sorted(p.partition for p in parts))

        self._consumer.subscribe([c.topic], on_assign=on_assign, on_revoke=on_revoke)

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> int:
        """Consume until stopped (SIGTERM/SIGINT), idle long enough (``exit_when_idle_s``) or fatal."""
        try:
            self.writer.resolver.cohorts()  # fail fast on a bad token, service or capability
            self._moodle_ok = True
        except MoodleFatal as err:
            log.critical("FATAL: %s", err.message)
            return EXIT_FATAL
        except MoodleUnavailable as err:
            log.critical("Moodle unavailable: %s", err.message)
            return EXIT_UNAVAILABLE
        self._clients()
        idle_since = time.monotonic()
        code = EXIT_OK
        try:
            while not self._stop.is_set():
                self._beat = time.monotonic()
                msgs = self._consumer.consume(self.cfg.poll_max, self.cfg.poll_timeout_s)
                real = [m for m in msgs if not m.error()]
                for m in msgs:
                    if m.error() and m.error().code() != -191:  # _PARTITION_EOF
                        log.warning("kafka: %s", m.error())
                if not real:
                    self._update_lag()
                    if not self._assigned:
                        idle_since = time.monotonic()
                    elif (self.cfg.exit_when_idle_s is not None
                          and time.monotonic() - idle_since > self.cfg.exit_when_idle_s):
                        break
                    continue
                idle_since = time.monotonic()
                self.process(real)
        except MoodleFatal as err:
            log.critical("FATAL: %s", err.message)
            code = EXIT_FATAL
        except MoodleUnavailable as err:
            log.critical("Moodle unavailable, stopping without committing the current batch: %s", err.message)
            code = EXIT_UNAVAILABLE
        except _KafkaFailure as err:
            log.critical("Kafka: %s; stopping without committing the current batch", err)
            code = EXIT_KAFKA
        finally:
            self._moodle_ok = self._moodle_ok and code == EXIT_OK
            try:
                self._consumer.close()
            except Exception:  # noqa: BLE001 - closing after a failure
                pass
        return code

    # -------------------------------------------------------------------- batch
    def process(self, msgs: list[Any]) -> None:
        started = time.perf_counter()
        folded: dict[tuple[str, str], tuple[Any, Any]] = {}
        failures: list[tuple[Any, str, str]] = []  # (message, code, reason)
        ids: dict[str, None] = {}
        for m in msgs:
            try:
                ch = self.cfg.wire.decode_membership_change(m.value())
            except ContractError as err:
                failures.append((m, "DECODE_ERROR", f"{err.path}: {err.message}"))
                continue
            if ch.site_id != self.cfg.site_id:
                self.metrics.skipped.labels("other_site").inc()
                continue
            if ch.change_id in self._seen or ch.change_id in ids:
                self.metrics.skipped.labels("duplicate").inc()
                continue
            ids[ch.change_id] = None
            key = (ch.segment_id, ch.user_id)
            if key in folded:
                self.metrics.skipped.labels("superseded").inc()
            folded[key] = (ch, m)
        assertions = [Assertion(ch.segment_id, ch.user_id, ch.change == "ADDED", ref=(ch, m))
                      for ch, m in folded.values()]
        report = self.writer.apply(assertions) if assertions else None
        self._moodle_ok = True
        if report is not None:
            for a in report.applied:
                self.metrics.applied.labels("ADDED" if a.member else "REMOVED").inc()
            for _ in report.already:
                self.metrics.skipped.labels("already_member").inc()
            for _ in range(report.splits):
                self.metrics.retried.labels("split").inc()
            for f in report.failed:
                failures.append((f.assertion.ref[1], f.code, self._reason(f)))
        for m, code, reason in failures:
            self._dead_letter(m, code, reason)
        self._flush_dead_letters()
        self._commit(msgs)
        for cid in ids:
            self._seen[cid] = None
            if len(self._seen) > self.cfg.dedupe_ids:
                self._seen.popitem(last=False)
        self.batches += 1
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self._update_lag()

    @staticmethod
    def _reason(f: Failure) -> str:
        a = f.assertion
        verb = "add" if a.member else "remove"
        return f"cannot {verb} user {a.user_id!r} {'to' if a.member else 'from'} segment {a.segment_id!r}: {f.message}"

    def _dead_letter(self, m: Any, code: str, reason: str) -> None:
        full = f"MOODLE_{code}" if not code.startswith("MOODLE_") and code != "DECODE_ERROR" else code
        log.warning("dead-letter %s[%d]@%d %s: %s", m.topic(), m.partition(), m.offset(), full, reason)
        self.metrics.dead_lettered.labels(full).inc()
        dl = DeadLetter(m.topic(), m.partition(), m.offset(), m.key(), m.value(), full, reason[:1000],
                        int(time.time() * 1000))

        def report(err: Any, msg: Any) -> None:
            if err is not None:
                self._dlq_errors.append(str(err))

        self._producer.produce(self.cfg.dlq_topic, self.cfg.wire.encode_dead_letter(dl), m.key(), on_delivery=report)

    def _flush_dead_letters(self) -> None:
        if self._producer is None:
            return
        left = self._producer.flush(30)
        if left or self._dlq_errors:
            detail = self._dlq_errors[-1] if self._dlq_errors else f"{left} not acknowledged"
            self._dlq_errors.clear()
            raise _KafkaFailure(f"dead letters not acknowledged ({detail})")

    def _commit(self, msgs: list[Any]) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        last: dict[tuple[str, int], int] = {}
        for m in msgs:
            k = (m.topic(), m.partition())
            last[k] = max(last.get(k, -1), m.offset())
        try:
            self._consumer.commit(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last.items()],
                                  asynchronous=False)
        except KafkaException as exc:
            raise _KafkaFailure(f"commit failed ({exc})") from None

    def _update_lag(self) -> None:
        if time.monotonic() - self._lag_at < 5.0 or self._consumer is None:
            return
        self._lag_at = time.monotonic()
        try:
            parts = self._consumer.assignment()
            committed = {(tp.topic, tp.partition): tp.offset for tp in self._consumer.committed(parts, timeout=2)}
            for tp in parts:
                _, hi = self._consumer.get_watermark_offsets(tp, timeout=2)
                pos = committed.get((tp.topic, tp.partition), -1)
                self.metrics.lag.labels(str(tp.partition)).set(max(0, hi - max(pos, 0)))
        except Exception:  # noqa: BLE001 - a metric must never stop the sync
            pass


class _KafkaFailure(Exception):
    pass


def install_signal_handlers(sync: MoodleSync) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sync.stop())
