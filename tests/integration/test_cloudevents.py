"""The CloudEvents binary-mode headers on the membership changes a real worker emits, read back
from the broker with a plain consumer and parsed by the CloudEvents SDK (docs/contract.md
"CloudEvents headers")."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from cloudevents.core.bindings import kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from confluent_kafka import TopicPartition

from processor.config import Settings
from processor.contract.codec import decode_membership_change
from processor.runtime import clients
from tests.support.harness import Cluster, make_event

from .test_user_events import send, setup_site

Record = tuple[bytes, bytes, dict[str, bytes]]  # key, value, headers


def records_with_headers(s: Settings, site: str, count: int, timeout: float = 60.0) -> list[Record]:
    """The first ``count`` records of ``site`` on the membership-changes topic, read from the
    start of every partition with their headers (the harness's reader keeps values only)."""
    topic = s.topics.membership_changes
    c = clients.new_consumer(clients.reader_config(s.bootstrap_servers, "ce-reader"), s.kafka_security)
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        out: list[Record] = []
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            for m in c.consume(1000, 0.2):
                if m.error() is None and m.key() is not None and m.key().startswith(f"{site}:".encode()):
                    hs = m.headers() or []
                    assert len({k for k, _ in hs}) == len(hs), f"a header appears twice: {hs}"
                    out.append((m.key(), m.value(), dict(hs)))
        assert len(out) >= count, f"{len(out)} of {count} records of {site} on {topic}"
        return out
    finally:
        c.close()


def test_every_change_carries_cloudevents_headers_that_match_its_body(cluster: Cluster, site: str) -> None:
    """ADDED then REMOVED from two user events: each record's headers name the change (ce_id =
    the decoded change_id), its segment (ce_source), its user (ce_subject), the time of the
    event that caused it (ce_time = the event's occurred_at, which this test chose) and the
    value's media type; the CloudEvents SDK reads each as a valid 1.0 event."""
    setup_site(cluster, site)
    created = replace(make_event(site, "josé", department="Sales"), occurred_at=1_700_000_000_250)
    updated = make_event(site, "josé", "USER_UPDATED", department="HR")
    send(cluster, created)
    send(cluster, updated)
    cluster.wait(lambda: len(cluster.changes_for(site)) == 2, what="ADDED then REMOVED")

    records = records_with_headers(cluster.settings, site, 2)
    assert len(records) == 2
    times = {"ADDED": created.occurred_at, "REMOVED": updated.occurred_at}
    for key, value, h in records:
        ch = decode_membership_change(value)
        assert key == f"{site}:josé".encode()
        assert h["ce_specversion"] == b"1.0"
        assert h["ce_id"] == ch.change_id.encode()
        assert h["ce_type"] == b"lms.segment.membership.changed.v1"
        assert h["ce_source"] == f"/sites/{site}/segments/sales".encode()
        assert h["ce_subject"] == "josé".encode("utf-8")
        assert h["content-type"] == b"application/avro"
        want = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=times[ch.change])
        assert datetime.fromisoformat(h["ce_time"].decode()) == want
        ev = kafka.from_binary(kafka.KafkaMessage(headers=h, key=key, value=value), JSONFormat(), CloudEvent)
        assert (ev.get_id(), ev.get_subject(), ev.get_time()) == (ch.change_id, "josé", want)
    assert [decode_membership_change(v).change for _, v, _ in records] == ["ADDED", "REMOVED"]
