"""Hostile input: garbage is dead-lettered with a reason, valid events still flow."""

from __future__ import annotations

import io
import random

import fastavro

from processor.contract.codec import encode_user_event, user_event_key
from tests.support.harness import Cluster, fold_membership, make_command, make_event


def _wrong_schema(i: int) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, {"type": "record", "name": "X", "fields": [
        {"name": "a", "type": "long"}, {"name": "b", "type": "string"}]}, {"a": i, "b": "hello" * 3})
    return buf.getvalue()


def test_garbage_is_dead_lettered_and_valid_events_processed(cluster: Cluster, site: str) -> None:
    """100 garbage messages (random bytes, wrong schema, empty ids, key mismatch, truncated)
    interleaved with 100 valid events: every garbage message is in dead-letters with a code,
    every valid event is processed, and the worker stays up."""
    rnd = random.Random(42)
    cmds = [make_command(site, "UpsertSegment", segment_id="s", name="S"),
            make_command(site, "EnableSegmentAutomation", segment_id="s"),
            make_command(site, "CreateRule", rule_id="r", segment_id="s", name="r",
                         condition={"field": "department", "op": "equals", "value": "Sales"})]
    for c in cmds:
        cluster.producer.command(c)
    cluster.producer.flush()
    cluster.wait_results([c.command_id for c in cmds])

    topic = cluster.settings.topics.user_events
    garbage_keys: set[bytes] = set()
    expected = set()
    for i in range(100):
        kind = i % 5
        key = f"{site}:garbage-{i}".encode()
        if kind == 0:
            value: bytes | None = rnd.randbytes(rnd.randint(0, 200))
        elif kind == 1:
            value = _wrong_schema(i)
        elif kind == 2:  # empty user id
            ev = make_event(site, "", department="Sales")
            value = encode_user_event(ev)
            key = f"{site}:garbage-{i}".encode()
        elif kind == 3:  # key disagrees with value
            value = encode_user_event(make_event(site, f"victim-{i}", department="Sales"))
        else:  # truncated valid record
            value = encode_user_event(make_event(site, f"t-{i}", department="Sales"))[:-3]
        garbage_keys.add(key)
        cluster.producer.raw(topic, key, value)
        uid = f"ok-{i}"
        ev = make_event(site, uid, department="Sales" if i % 2 == 0 else "HR")
        cluster.producer.raw(topic, user_event_key(site, uid), encode_user_event(ev))
        if i % 2 == 0:
            expected.add(uid)
    cluster.producer.flush()

    cluster.wait(lambda: fold_membership(cluster.changes_for(site)).get((site, "s")) == expected,
                 what="valid events processed")
    cluster.wait(lambda: {d.key for d in cluster.out.dead_letters} >= garbage_keys, what="all garbage dead-lettered")
    dlq = [d for d in cluster.out.dead_letters if d.key in garbage_keys]
    assert len(dlq) == 100
    assert all(d.error_code and d.error for d in dlq)
    assert {d.error_code for d in dlq} >= {"DECODE_ERROR", "EMPTY_ID", "KEY_MISMATCH"}
    assert all(d.source_topic == topic and d.value is not None or d.error_code for d in dlq)
    assert not any(c.user_id.startswith(("victim", "t-", "garbage")) for c in cluster.changes_for(site))
    assert all(w.alive for w in cluster.workers)
