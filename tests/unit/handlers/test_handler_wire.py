"""The handlers with a Schema Registry wire format (processor/wire.py), without Faust: framed
input is read with its writer's schema, command results are framed with our schema's id, an
unknown schema id is dead-lettered, and while the registry does not answer the guard holds the
message's partition (no dead letter, nothing processed) until it does, then the message is
processed. The registry is confluent-kafka's in-memory ``mock://`` one; its "down" is the
connection error its HTTP client raises."""

from __future__ import annotations

import copy
import json
import struct
import uuid
from typing import Any

import pytest
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from processor import wire
from processor.config import SchemaRegistry, Settings
from processor.contract import schemas
from processor.contract.codec import user_event_key
from processor.handlers.guard import WireReadiness
from tests.support.handler_world import COMMANDS, EVENTS, World, managed_segment

SITE = "s1"
SALES = {"field": "department", "op": "equals", "value": "Sales"}
SOURCE = {"name": "source_system", "type": ["null", "string"], "default": None, "doc": "the producer's own"}


class FlakyRegistry:
    """confluent-kafka's mock registry, whose reads fail like an unreachable server while ``down``."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.down = False
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.client, name)
        if name not in ("get_schema", "lookup_schema"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.down:
                raise ConnectionError("[Errno 111] Connection refused")
            return attr(*args, **kwargs)
        return call


@pytest.fixture
def registry() -> tuple[Settings, FlakyRegistry]:
    s = Settings(schema_registry=SchemaRegistry(url=f"mock://handlers-{uuid.uuid4().hex[:8]}"))
    wire.register_schemas(s)
    return s, FlakyRegistry(wire.registry_client(s.schema_registry))


def framed_event(s: Settings, user: str, **profile: object) -> bytes:
    """A user event as a Confluent serializer writes it, with a field our schema does not have."""
    raw = copy.deepcopy(schemas.raw_schema(schemas.USER_EVENT))
    raw["fields"].append(SOURCE)
    ser = AvroSerializer(wire.registry_client(s.schema_registry), json.dumps(raw))
    record = {"event_id": f"e-{user}", "event_type": "USER_CREATED", "site_id": SITE, "user_id": user,
              "occurred_at": 1, "profile": dict(profile), "source_system": "debezium"}
    return ser(record, SerializationContext(s.topics.user_events, MessageField.VALUE))


def world(s: Settings, client: Any) -> World:
    fmt = wire.RegistryWireFormat(client, s.topics)
    w = World(wire_format=fmt)
    w.ready = WireReadiness(fmt, {EVENTS: schemas.USER_EVENT, COMMANDS: schemas.AUTOMATION_COMMAND}, w.stats)
    w.wire()  # rebuild the handlers and the guard with it
    return w


async def test_a_framed_event_with_a_field_of_its_own_is_processed_and_results_are_framed(registry) -> None:
    s, client = registry
    w = world(s, client)
    await managed_segment(w, SITE, rules={"r": SALES})
    our_id = client.client.get_latest_version(f"{s.topics.command_results}-value").schema_id
    assert all(v[0] == 0 and struct.unpack(">I", v[1:5])[0] == our_id for v in w.bus.result_values)
    msg = w.message(EVENTS, 0, user_event_key(SITE, "alice"), framed_event(s, "alice", department="Sales"))
    await w.guard.run(msg, w.users.handle)
    assert [(c.change, c.user_id) for c in w.new_changes()] == [("ADDED", "alice")]
    assert w.dead_letters.sent == [] and w.dead_letters.holds_of == []


async def test_an_unknown_schema_id_is_dead_lettered(registry) -> None:
    s, client = registry
    w = world(s, client)
    await managed_segment(w, SITE, rules={"r": SALES})
    value = framed_event(s, "bob", department="Sales")
    msg = w.message(EVENTS, 0, user_event_key(SITE, "bob"), value[:1] + struct.pack(">I", 9999) + value[5:])
    await w.guard.run(msg, w.users.handle)
    assert [dl.error_code for dl in w.dead_letters.sent] == ["UNKNOWN_SCHEMA_ID"]
    assert w.new_changes() == [] and w.dead_letters.holds_of == []


async def test_a_registry_that_does_not_answer_holds_the_partition_until_it_does(registry) -> None:
    s, client = registry
    w = world(s, client)
    await managed_segment(w, SITE, rules={"r": SALES})
    value = framed_event(s, "carol", department="Sales")  # a writer schema the worker has not seen yet
    client.down = True
    msg = w.message(EVENTS, 1, user_event_key(SITE, "carol"), value)
    await w.guard.run(msg, w.users.handle)
    [(held, ready, reason)] = w.dead_letters.holds_of
    assert held is msg and "SCHEMA_REGISTRY_UNAVAILABLE" in reason and "Connection refused" in reason
    assert w.dead_letters.sent == [] and w.new_changes() == [] and w.state(SITE, "carol") is None
    assert await ready() is not None  # still down: the runtime keeps the partition paused

    client.down = False
    assert await ready() is None
    w.dead_letters.held.clear()  # the runtime seeks back to the message and resumes the partition
    await w.guard.run(msg, w.users.handle)
    assert [(c.change, c.user_id) for c in w.new_changes()] == [("ADDED", "carol")]
    assert w.dead_letters.sent == [] and len(w.dead_letters.holds_of) == 1


async def test_a_known_writer_schema_needs_no_registry_call(registry) -> None:
    """Once a writer schema is cached, its records are read with the registry down."""
    s, client = registry
    w = world(s, client)
    await managed_segment(w, SITE, rules={"r": SALES})
    await w.guard.run(w.message(EVENTS, 0, user_event_key(SITE, "dan"), framed_event(s, "dan", department="HR")),
                      w.users.handle)
    client.down, calls = True, client.calls
    await w.guard.run(w.message(EVENTS, 0, user_event_key(SITE, "erin"), framed_event(s, "erin", department="Sales")),
                      w.users.handle)
    assert [(c.change, c.user_id) for c in w.new_changes()] == [("ADDED", "erin")]
    assert client.calls == calls and w.dead_letters.holds_of == []


async def test_records_framed_with_our_own_schema_need_no_registry_call(registry) -> None:
    """Our schemas' ids are looked up once (the guard's first check); a record framed with one of
    them (our tools, another worker's output) then decodes with the registry down."""
    s, client = registry
    w = world(s, client)
    await managed_segment(w, SITE, rules={"r": SALES})
    fmt = w.wire_format
    from tests.support.handler_world import event

    value = fmt.encode_user_event(event(SITE, "fay", department="Sales"))
    client.down, calls = True, client.calls
    await w.guard.run(w.message(EVENTS, 0, user_event_key(SITE, "fay"), value), w.users.handle)
    assert [(c.change, c.user_id) for c in w.new_changes()] == [("ADDED", "fay")]
    assert client.calls == calls and w.dead_letters.holds_of == [] and w.dead_letters.sent == []
