"""Worker metrics that are computed here rather than counted: GC pauses and the outbox's phases."""

from __future__ import annotations

import gc

from processor.metrics import Metrics
from processor.runtime.outbox import DrainTiming


def sample(m: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    value = m.registry.get_sample_value(name, labels or {})
    return value or 0.0


def test_every_full_collection_is_observed_with_its_pause() -> None:
    """After ``watch_gc``, each collection adds one observation to its generation's histogram,
    with a non-negative pause; after unwatching, none is added."""
    m = Metrics()
    unwatch = m.watch_gc()
    try:
        before = sample(m, "segment_gc_pause_seconds_count", {"generation": "2"})
        gc.collect(2)
        gc.collect(2)
        assert sample(m, "segment_gc_pause_seconds_count", {"generation": "2"}) == before + 2
        assert sample(m, "segment_gc_pause_seconds_sum", {"generation": "2"}) >= 0.0
    finally:
        unwatch()
    gc.collect(2)
    assert sample(m, "segment_gc_pause_seconds_count", {"generation": "2"}) == before + 2


def test_a_drain_timing_lands_in_the_wait_phase_and_batch_histograms() -> None:
    """One drain: the oldest wait, each phase under its label and the batch size are observed once."""
    m = Metrics()
    m.observe_drain(DrainTiming(records=7, oldest_wait=0.040, queued=0.015, flush=0.010, send=0.001, ack=0.014))
    assert sample(m, "segment_outbox_wait_seconds_sum") == 0.040
    for phase, value in (("queued", 0.015), ("flush", 0.010), ("send", 0.001), ("ack", 0.014)):
        assert sample(m, "segment_outbox_phase_seconds_sum", {"phase": phase}) == value
        assert sample(m, "segment_outbox_phase_seconds_count", {"phase": phase}) == 1
    assert sample(m, "segment_outbox_batch_records_sum") == 7


def test_lag_counts_records_fetched_but_never_processed() -> None:
    """The lag gauge counts from what the handlers finished: a worker that starts at committed
    offset 17 (done = 16) with the high watermark at 18 has one record to process, also when its
    consumer has already fetched past it (the lost-fetch failure: lag 1, so the stall alert fires);
    after processing 17 the lag is 0; a watermark behind a stale position never goes negative."""
    from processor.handlers.replay import unprocessed

    assert unprocessed(18, 16) == 1
    assert unprocessed(18, 17) == 0
    assert unprocessed(100, 49) == 50
    assert unprocessed(5, 9) == 0
