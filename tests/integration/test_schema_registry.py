"""The tools with a Schema Registry, on a real broker (issue 19, part 2): ``topics create``
registers every contract schema with compatibility FULL_TRANSITIVE; ``commands publish`` and
``users upsert`` frame their records with the registered ids (read back by confluent-kafka's
AvroDeserializer); ``changes tail`` and ``rebuild`` read records a Confluent serializer framed
with a schema that has a field of its own, and the rebuild skips a record of an unknown id.

Tools run as subprocesses, so the registry is the REST double (tests/support/schema_registry.py),
not confluent-kafka's per-process ``mock://``.
"""

from __future__ import annotations

import copy
import json
import os
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from processor.broker import EmbeddedBroker
from processor.client import ContractProducer, TopicReader
from processor.config import Settings
from processor.contract import schemas
from tests.support.harness import discard_broker, make_command
from tests.support.schema_registry import SchemaRegistryDouble
from tests.support.tool_env import processor_cli, settings_from_env, topic_env

pytestmark = pytest.mark.integration

SOURCE = {"name": "source_system", "type": ["null", "string"], "default": None, "doc": "the producer's own field"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedBroker, SchemaRegistryDouble]]:
    registry = SchemaRegistryDouble().start()
    broker = EmbeddedBroker(log_path=tmp_path_factory.mktemp("sr-broker") / "broker.log").start()
    try:
        yield broker, registry
    finally:
        discard_broker(broker)
        registry.stop()


def _env(broker: EmbeddedBroker, registry: SchemaRegistryDouble) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "SCHEMA_REGISTRY_URL": registry.url,
            **topic_env(suffix), "APP_ID": f"sa-sr-{suffix}", "PARTITIONS": "2",
            "COMMAND_PARTITIONS": "1", "BROKER_QUIRKS": "tansu", "BROKER_SESSION_TIMEOUT": "6"}


def _read_all(s: Settings, topic: str, want: int, timeout: float = 20) -> list[bytes]:
    reader = TopicReader.from_settings(s, topic)
    got: list[bytes] = []
    try:
        deadline = time.monotonic() + timeout
        while len(got) < want and time.monotonic() < deadline:
            got += [v for _, v in reader.poll_batch() if v is not None]
    finally:
        reader.close()
    return got


def _extended(name: str) -> str:
    raw = copy.deepcopy(schemas.raw_schema(name))
    raw["fields"].append(SOURCE)
    return json.dumps(raw)


def test_the_tools_speak_the_registry_framing(world: tuple[EmbeddedBroker, SchemaRegistryDouble],
                                              tmp_path: Path) -> None:
    broker, registry = world
    env = _env(broker, registry)
    s = settings_from_env(env)
    created = processor_cli("topics", "create", env=env)
    assert created.returncode == 0, created.stdout + created.stderr
    subjects = {f"{getattr(s.topics, t)}-value" for t in
                ("user_events", "commands", "membership_changes", "command_results", "dead_letters")}
    assert {registry.config.get(x) for x in subjects} == {"FULL_TRANSITIVE"}, registry.config
    assert all(f"schema: {x} id " in created.stdout for x in subjects), created.stdout
    client = SchemaRegistryClient({"url": registry.url})
    ctx = lambda topic: SerializationContext(topic, MessageField.VALUE)  # noqa: E731

    f = tmp_path / "cmds.yaml"
    f.write_text("site_id: sr-site\nactor: {user_id: ops, roles: [site_admin]}\ncommands:\n"
                 "  - UpsertSegment: {segment_id: sales, name: Sales}\n")
    published = processor_cli("commands", "publish", str(f), "--no-wait", "--no-token", env=env)
    assert published.returncode == 0, published.stdout + published.stderr
    upserted = processor_cli("users", "upsert", "--site", "sr-site", "u-cli", "department=Sales", "--no-catalog", env=env)
    assert upserted.returncode == 0, upserted.stdout + upserted.stderr
    [cmd] = _read_all(s, s.topics.commands, 1)
    [ev] = _read_all(s, s.topics.user_events, 1)
    for value, topic, field, want in [(cmd, s.topics.commands, "site_id", "sr-site"),
                                      (ev, s.topics.user_events, "user_id", "u-cli")]:
        assert value[0] == 0
        assert struct.unpack(">I", value[1:5])[0] == client.get_latest_version(f"{topic}-value").schema_id
        assert AvroDeserializer(client)(value, ctx(topic))[field] == want

    # records of a producer whose schema has a field of its own (registered by its serializer)
    change_ser = AvroSerializer(client, _extended("membership_change"))
    event_ser = AvroSerializer(client, _extended("user_event"))
    raw = ContractProducer.from_settings(s)
    change = {"change_id": "c-sr", "site_id": "sr-site", "segment_id": "sales", "user_id": "u-sr", "change": "ADDED",
              "cause_kind": "RULE_CREATED", "cause_id": "r1", "matched_rule_ids": ["r1"], "occurred_at": 1,
              "emitted_at": 2, "source_system": "other-processor"}
    raw.raw(s.topics.membership_changes, b"sr-site:u-sr", change_ser(change, ctx(s.topics.membership_changes)))
    for i in range(4):
        event = {"event_id": f"e{i}", "event_type": "USER_CREATED", "site_id": "sr-site", "user_id": f"u{i}",
                 "occurred_at": 1, "profile": {"department": "Sales"}, "source_system": "debezium"}
        raw.raw(s.topics.user_events, f"sr-site:u{i}".encode(), event_ser(event, ctx(s.topics.user_events)))
    raw.raw(s.topics.user_events, b"sr-site:u9", b"\x00" + struct.pack(">I", 9999) + ev[5:])  # unknown id
    raw.flush(20)
    raw.close()

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "SCHEMA_REGISTRY_"))}
    tail = subprocess.Popen([sys.executable, "-m", "processor", "changes", "tail"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**clean, **env})
    try:
        line = tail.stdout.readline()  # type: ignore[union-attr]
    finally:
        tail.terminate()
        _, err = tail.communicate(timeout=20)
    assert "u-sr" in line and "ADDED" in line, (line, err)

    rebuilt = processor_cli("rebuild", "--emit", "diff", "--json", "--jobs", "1", env=env)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    report = json.loads(rebuilt.stdout.strip().splitlines()[-1])
    # the hand-made event, the four framed with a field of their own, and one of an unknown id
    assert (report["events"], report["skipped_invalid"], report["users"]) == (6, 1, 5), report


def test_a_tool_says_when_the_registry_does_not_answer(world: tuple[EmbeddedBroker, SchemaRegistryDouble],
                                                      tmp_path: Path) -> None:
    broker, registry = world
    env = _env(broker, registry)
    assert processor_cli("topics", "create", env=env).returncode == 0
    f = tmp_path / "cmds.yaml"
    f.write_text("site_id: s\nactor: {user_id: ops, roles: [site_admin]}\ncommands:\n"
                 "  - UpsertSegment: {segment_id: a, name: A}\n")
    registry.down()
    try:
        out = processor_cli("commands", "publish", str(f), "--no-wait", "--no-token", env=env)
    finally:
        registry.up()
    assert out.returncode == 3 and "SCHEMA_REGISTRY_UNAVAILABLE" in out.stderr, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert _read_all(settings_from_env(env), settings_from_env(env).topics.commands, 1, timeout=3) == []  # nothing was sent


def test_a_worker_reads_framed_input_and_frames_its_output(world: tuple[EmbeddedBroker, SchemaRegistryDouble],
                                                          tmp_path: Path) -> None:
    """A framed event with a field of its own is processed; the change is framed (read by
    AvroDeserializer); an unknown schema id is dead-lettered as UNKNOWN_SCHEMA_ID."""
    from tests.support.harness import WorkerProcess
    from processor.wire import WireFormat

    broker, registry = world
    env = _env(broker, registry)
    s = settings_from_env(env)
    assert processor_cli("topics", "create", env=env).returncode == 0
    worker = WorkerProcess(s, "sr-w0", tmp_path, extra_env={"SCHEMA_REGISTRY_URL": registry.url}).start()
    try:
        fmt = WireFormat.from_settings(s)
        prod = ContractProducer.from_settings(s)
        for c in (make_command("sr-w", "UpsertSegment", segment_id="sales", name="Sales"),
                  make_command("sr-w", "EnableSegmentAutomation", segment_id="sales"),
                  make_command("sr-w", "CreateRule", rule_id="r1", segment_id="sales", name="Sales",
                               condition={"field": "department", "op": "equals", "value": "Sales"})):
            prod.command(c)
        client = SchemaRegistryClient({"url": registry.url})
        ctx = SerializationContext(s.topics.user_events, MessageField.VALUE)
        event = {"event_id": "e-w", "event_type": "USER_CREATED", "site_id": "sr-w", "user_id": "u-w",
                 "occurred_at": 1, "profile": {"department": "Sales"}, "source_system": "debezium"}
        prod.raw(s.topics.user_events, b"sr-w:u-w", AvroSerializer(client, _extended("user_event"))(event, ctx))
        prod.raw(s.topics.user_events, b"sr-w:u-x", b"\x00" + struct.pack(">I", 9999) + b"\x02x")
        prod.flush(20)
        prod.close()
        [change] = _read_all(s, s.topics.membership_changes, 1, timeout=30)
        got = AvroDeserializer(client)(change, SerializationContext(s.topics.membership_changes, MessageField.VALUE))
        assert (got["user_id"], got["change"]) == ("u-w", "ADDED")
        [dead] = _read_all(s, s.topics.dead_letters, 1, timeout=20)
        assert fmt.decode_dead_letter(dead).error_code == "UNKNOWN_SCHEMA_ID"
    finally:
        worker.stop()


def test_a_registry_outage_holds_the_input_and_loses_nothing(world: tuple[EmbeddedBroker, SchemaRegistryDouble],
                                                             tmp_path: Path) -> None:
    """While the registry answers 503, a framed event whose writer schema the worker has not seen
    is neither processed nor dead-lettered: its partition waits (a marker on the other partition is
    processed meanwhile); once the registry is back, the event is processed, exactly once."""
    from tests.support.harness import WorkerProcess, make_event, partition_of

    def change_keys(want: int, timeout: float) -> list[str]:
        reader = TopicReader.from_settings(s, s.topics.membership_changes)
        got: list[str] = []
        try:
            deadline = time.monotonic() + timeout
            while len(got) < want and time.monotonic() < deadline:
                got += [k.decode() for k, v in reader.poll_batch() if k is not None and v is not None]
        finally:
            reader.close()
        return got

    broker, registry = world
    env = _env(broker, registry)
    s = settings_from_env(env)
    assert processor_cli("topics", "create", env=env).returncode == 0
    worker = WorkerProcess(s, "sr-outage", tmp_path, extra_env={"SCHEMA_REGISTRY_URL": registry.url,
                                                                "DEAD_LETTER_RETRY_MAX_S": "2"}).start()
    try:
        prod = ContractProducer.from_settings(s)
        cmds = (make_command("sr-o", "UpsertSegment", segment_id="sales", name="Sales"),
                make_command("sr-o", "EnableSegmentAutomation", segment_id="sales"),
                make_command("sr-o", "CreateRule", rule_id="r1", segment_id="sales", name="Sales",
                             condition={"field": "department", "op": "equals", "value": "Sales"}))
        for c in cmds:
            prod.command(c)
        prod.flush(20)
        # each command has its result (a command with a backfill also has APPLYING/APPLIED ones)
        deadline, results = time.monotonic() + 60, []
        while time.monotonic() < deadline and not all(any(c.command_id.encode() in v for v in results)
                                                      for c in cmds):
            results = _read_all(s, s.topics.command_results, len(results) + 1, timeout=5)
        assert all(any(c.command_id.encode() in v for v in results) for c in cmds), worker.log_tail()
        held = next(u for u in (f"u{i}" for i in range(100)) if partition_of(f"sr-o:{u}".encode(), 2) == 0)
        marker = next(u for u in (f"m{i}" for i in range(100)) if partition_of(f"sr-o:{u}".encode(), 2) == 1)
        client = SchemaRegistryClient({"url": registry.url})
        ctx = SerializationContext(s.topics.user_events, MessageField.VALUE)
        raw = json.loads(_extended("user_event"))
        raw["fields"][-1] = {**SOURCE, "name": "import_batch"}  # a writer schema no worker has seen
        value = AvroSerializer(client, json.dumps(raw))(
            {"event_id": "e-held", "event_type": "USER_CREATED", "site_id": "sr-o", "user_id": held,
             "occurred_at": 1, "profile": {"department": "Sales"}, "import_batch": "b1"}, ctx)

        ours = prod.wire.encode_user_event(make_event("sr-o", marker, department="Sales"))  # our schema's id

        registry.down()
        prod.raw(s.topics.user_events, f"sr-o:{held}".encode(), value)
        prod.raw(s.topics.user_events, f"sr-o:{marker}".encode(), ours)  # the worker knows our schema
        prod.flush(20)
        assert change_keys(1, 30) == [f"sr-o:{marker}"], worker.log_tail()
        time.sleep(3)  # the held partition is asked again meanwhile (DEAD_LETTER_RETRY_MAX_S=2)
        assert "cannot be read now" in worker.log_tail(300), worker.log_tail()
        assert change_keys(2, 2) == [f"sr-o:{marker}"]

        registry.up()
        assert sorted(change_keys(2, 30)) == sorted([f"sr-o:{marker}", f"sr-o:{held}"]), worker.log_tail()
        values = _read_all(s, s.topics.membership_changes, 3, timeout=5)
        got = [AvroDeserializer(client)(v, SerializationContext(s.topics.membership_changes, MessageField.VALUE))
               for v in values]
        assert sorted((c["user_id"], c["change"]) for c in got) == sorted([(marker, "ADDED"), (held, "ADDED")])
        assert _read_all(s, s.topics.dead_letters, 1, timeout=3) == []
        prod.close()
    finally:
        worker.stop()
