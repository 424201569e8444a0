"""Prometheus metrics (one registry per worker process, served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.events = Counter("segment_user_events_total", "User events consumed", ["event_type", "outcome"],
                              registry=r)
        self.changes = Counter("segment_membership_changes_total", "Membership changes emitted",
                               ["change", "cause_kind"], registry=r)
        self.commands = Counter("segment_commands_total", "Commands processed", ["status", "code"], registry=r)
        self.dead_letters = Counter("segment_dead_letters_total", "Messages dead-lettered", ["code"], registry=r)
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
        self.api = Histogram("segment_api_request_seconds", "Admin API latency", ["method", "endpoint", "status"],
                             registry=r)

    def observe_api(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        self.api.labels(method, endpoint, str(status)).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
