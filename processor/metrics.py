"""Prometheus metrics (one registry per worker process, served at /metrics)."""

from __future__ import annotations

import gc
import platform
import time
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

if TYPE_CHECKING:
    from processor.runtime.outbox import DrainTiming


def build_info() -> dict[str, str]:
    """The labels of ``segment_build_info``: this package's, faust-streaming's and Python's versions."""
    from processor import __version__

    try:
        faust_version = version("faust-streaming")
    except PackageNotFoundError:
        faust_version = "unknown"
    return {"version": __version__, "faust_version": faust_version, "python": platform.python_version()}


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.events = Counter("segment_user_events_total", "User events consumed", ["event_type", "outcome"],
                              registry=r)
        self.changes = Counter("segment_membership_changes_total", "Membership changes emitted",
                               ["change", "cause_kind"], registry=r)
        self.commands = Counter("segment_commands_total", "Commands processed", ["status", "code"], registry=r)
        self.dead_letters = Counter("segment_dead_letters_total", "Messages dead-lettered", ["code"], registry=r)
        # processor/runtime/dead_letters.py: an input partition whose dead letter could not be sent is paused
        self.dead_letter_blocked = Gauge("segment_dead_letter_blocked",
                                         "1 while consumption of an input partition is paused because the "
                                         "dead letter of one of its messages could not be sent",
                                         ["topic", "partition"], registry=r)
        # the same pause while a message cannot be read yet (the Schema Registry does not answer)
        self.input_held = Gauge("segment_input_held",
                                "1 while consumption of an input partition is paused because one of its "
                                "messages cannot be read yet (the Schema Registry does not answer)",
                                ["topic", "partition"], registry=r)
        self.dead_letter_failures = Counter("segment_dead_letter_send_failures_total",
                                            "Dead-letter sends the broker did not acknowledge (each attempt)",
                                            ["topic"], registry=r)
        self.evaluation = Histogram("segment_event_processing_seconds", "Time to process one user event",
                                    buckets=(.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .5),
                                    registry=r)
        self.backfill_users = Counter("segment_backfill_users_total", "Users re-evaluated by backfills",
                                      registry=r)
        self.backfill_running = Gauge("segment_backfills_running", "Backfills in progress", registry=r)
        self.timers = Counter("segment_timers_fired_total", "Time-relative re-evaluations", registry=r)
        self.catalog_offset = Gauge("segment_catalog_offset", "Catalog log offset folded", registry=r)
        self.lag = Gauge("segment_consumer_lag", "Input messages not yet processed", ["topic", "partition"],
                         registry=r)
        # The outbox's share of a change's latency (processor/runtime/outbox.py, DrainTiming): how long the
        # oldest change of each released batch waited, and the phases of the release.
        lat = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5)
        self.outbox_wait = Histogram("segment_outbox_wait_seconds",
                                     "Per released batch: the oldest change's time from queued to acknowledged",
                                     buckets=lat, registry=r)
        self.outbox_phase = Histogram("segment_outbox_phase_seconds",
                                      "Per released batch: time waiting for an earlier release (queued), for the "
                                      "state writes' acknowledgement (flush), sending (send), for the changes' "
                                      "acknowledgement (ack)", ["phase"], buckets=lat, registry=r)
        self.outbox_batch = Histogram("segment_outbox_batch_records", "Changes per released batch",
                                      buckets=(1, 2, 5, 10, 25, 50, 100, 250, 1000, 5000, 20000), registry=r)
        # Garbage-collection pauses stop the whole worker (every agent, the outbox, heartbeats):
        # a latency tail with no cause in the pipeline shows up here.
        self.gc_pause = Histogram("segment_gc_pause_seconds", "Python garbage-collection pauses",
                                  ["generation"], buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5),
                                  registry=r)
        self.api = Histogram("segment_api_request_seconds", "Admin API latency", ["method", "endpoint", "status"],
                             registry=r)
        # What /readyz answers (catalog loaded, table recovery complete), for alerts without k8s.
        self.ready = Gauge("segment_ready", "1 when the worker is ready (/readyz answers 200), else 0",
                           registry=r)
        # Which build runs where: segment_build_info{version,faust_version,python} 1 (rolling upgrades).
        Info("segment_build", "Versions of the processor, faust-streaming and Python", registry=r).info(build_info())

    def watch_gc(self) -> Callable[[], None]:
        """Observe every collection's pause from now on (``gc.callbacks``; once per process).
        Returns the function that stops watching."""
        started = [0.0]
        pause = self.gc_pause

        def on_gc(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                pause.labels(str(info["generation"])).observe(time.perf_counter() - started[0])

        gc.callbacks.append(on_gc)
        return lambda: gc.callbacks.remove(on_gc)

    def observe_drain(self, t: "DrainTiming") -> None:
        self.outbox_wait.observe(t.oldest_wait)
        phase = self.outbox_phase.labels
        phase("queued").observe(t.queued)
        phase("flush").observe(t.flush)
        phase("send").observe(t.send)
        phase("ack").observe(t.ack)
        self.outbox_batch.observe(t.records)

    def observe_api(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        self.api.labels(method, endpoint, str(status)).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
