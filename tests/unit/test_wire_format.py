"""Schema Registry framing (processor/wire.py) against confluent-kafka's own serializers and its
in-memory ``mock://`` registry (issue 19, part 2): producers' framed records with fields of their
own are read with the writer's schema; our outputs are read by confluent-kafka's AvroDeserializer;
an unknown id or an unreadable writer schema is a contract error (a dead letter); a registry that
does not answer is not."""

from __future__ import annotations

import copy
import io
import json
import struct
import uuid
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from processor import wire
from processor.broker import free_port
from processor.config import SchemaRegistry, Settings
from processor.contract import codec, schemas
from processor.contract.exceptions import ContractError
from processor.contract.models import Actor, Command, CommandResult, DeadLetter, MembershipChange, UserEvent
from tests.support.schema_registry import SchemaRegistryDouble


@pytest.fixture
def settings() -> Settings:
    s = Settings(schema_registry=SchemaRegistry(url=f"mock://wire-{uuid.uuid4().hex[:8]}"))
    wire.register_schemas(s)
    return s


def extended(name: str, *extra: dict[str, Any]) -> dict[str, Any]:
    """Our schema with fields a producer added (optional, at the end)."""
    raw = copy.deepcopy(schemas.raw_schema(name))
    raw["fields"] += list(extra)
    return raw


SOURCE = {"name": "source_system", "type": ["null", "string"], "default": None}
EVENT = {"event_id": "e-1", "event_type": "USER_UPDATED", "site_id": "s1", "user_id": "u1", "occurred_at": 1_700_000,
         "profile": {"department": "Sales", "age": 41, "tags": ["a", "b"]}}


def produced_by_confluent(s: Settings, topic: str, schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    client = wire.registry_client(s.schema_registry)
    ser = AvroSerializer(client, json.dumps(schema), conf={"auto.register.schemas": True})
    return ser(record, SerializationContext(topic, MessageField.VALUE))


def test_a_framed_event_with_a_field_of_its_own_is_read_with_its_writer_schema(settings: Settings) -> None:
    value = produced_by_confluent(settings, settings.topics.user_events, extended("user_event", SOURCE),
                                  {**EVENT, "source_system": "debezium"})
    assert value[0] == 0 and struct.unpack(">I", value[1:5])[0] > 5  # framed, a new id (ours are 1-5)
    with pytest.raises(ContractError) as plain:  # what the schemaless decoder says of the same body
        codec.decode_user_event(b"s1:u1", value[5:])
    assert plain.value.code == "TRAILING_BYTES"
    ev = wire.WireFormat.from_settings(settings).decode_user_event(b"s1:u1", value)
    assert ev == UserEvent("e-1", "USER_UPDATED", "s1", "u1", 1_700_000, EVENT["profile"])


def test_our_validation_applies_to_a_framed_record(settings: Settings) -> None:
    fmt = wire.WireFormat.from_settings(settings)
    schema = extended("user_event", SOURCE)
    value = produced_by_confluent(settings, settings.topics.user_events, schema, {**EVENT, "source_system": None})
    with pytest.raises(ContractError) as err:
        fmt.decode_user_event(b"s1:someone-else", value)
    assert err.value.code == "KEY_MISMATCH"
    long_id = produced_by_confluent(settings, settings.topics.user_events, schema,
                                    {**EVENT, "user_id": "u" * 300, "source_system": None})
    with pytest.raises(ContractError) as err:
        fmt.decode_user_event(b"s1:" + b"u" * 300, long_id)
    assert err.value.code == "LIMIT_EXCEEDED" and err.value.path == "$.user_id"


def test_a_negative_enum_index_is_refused_in_a_framed_record(settings: Settings) -> None:
    """fastavro reads index -1 as the last symbol; the byte-level check applies to framed records
    whose writer schema starts like ours."""
    fmt = wire.WireFormat.from_settings(settings)
    good = fmt.encode_user_event(UserEvent("e-1", "USER_CREATED", "s1", "u1", 1, {}))
    body = bytearray(good[5:])
    body[4] = 0x03  # event_type: zigzag -2 right after the 3-character event_id "e-1"
    with pytest.raises(ContractError) as err:
        fmt.decode_user_event(b"s1:u1", bytes(good[:5] + body))
    assert (err.value.code, err.value.path) == ("DECODE_ERROR", "$.event_type")


def test_our_outputs_are_read_by_confluents_deserializer(settings: Settings) -> None:
    fmt = wire.WireFormat.from_settings(settings)
    de = AvroDeserializer(wire.registry_client(settings.schema_registry))
    t = settings.topics
    change = MembershipChange("c1", "s1", "seg", "u1", "ADDED", "RULE_CREATED", "r1", ("r1",), 10, 20)
    result = CommandResult("cmd-1", "s1", "REJECTED", "FORBIDDEN", "no", 30)
    dead = DeadLetter(t.user_events, 3, 42, b"k", b"\x01\x02", "UNKNOWN_SCHEMA_ID", "why", 50, 1, "ab", 2, "cd", ())
    command = Command("cmd-2", "s1", 60, Actor("ops", ("site_admin",)), "UpsertSegment",
                      {"segment_id": "seg", "name": "Seg"}, None)
    for topic, value, expect in [
        (t.membership_changes, fmt.encode_membership_change(change),
         {"change_id": "c1", "change": "ADDED", "cause_kind": "RULE_CREATED", "matched_rule_ids": ["r1"]}),
        (t.command_results, fmt.encode_command_result(result), {"command_id": "cmd-1", "code": "FORBIDDEN"}),
        (t.dead_letters, fmt.encode_dead_letter(dead), {"error_code": "UNKNOWN_SCHEMA_ID", "value": b"\x01\x02",
                                                        "truncated": []}),
        (t.commands, fmt.encode_command(command), {"command_id": "cmd-2", "auth_token": None,
                                                   "payload": {"segment_id": "seg", "name": "Seg"}}),
    ]:
        got = de(value, SerializationContext(topic, MessageField.VALUE))
        assert {k: got[k] for k in expect} == expect, topic
        schema_id = struct.unpack(">I", value[1:5])[0]
        registered = wire.registry_client(settings.schema_registry).get_latest_version(f"{topic}-value")
        assert schema_id == registered.schema_id  # framed with the id registered under the topic's subject


def test_an_unknown_schema_id_is_a_contract_error(settings: Settings) -> None:
    fmt = wire.WireFormat.from_settings(settings)
    value = fmt.encode_user_event(UserEvent("e-1", "USER_CREATED", "s1", "u1", 1, {}))
    forged = b"\x00" + struct.pack(">I", 4242) + value[5:]
    with pytest.raises(ContractError) as err:
        fmt.decode_user_event(b"s1:u1", forged)
    assert err.value.code == "UNKNOWN_SCHEMA_ID" and "4242" in err.value.message


def test_a_writer_schema_that_does_not_resolve_to_ours_is_a_contract_error(settings: Settings) -> None:
    renamed = copy.deepcopy(schemas.raw_schema("user_event"))
    renamed["fields"][3]["name"] = "member_id"  # user_id renamed: ours cannot read it
    value = produced_by_confluent(settings, settings.topics.user_events, renamed,
                                  {**{k: v for k, v in EVENT.items() if k != "user_id"}, "member_id": "u1"})
    with pytest.raises(ContractError) as err:
        wire.WireFormat.from_settings(settings).decode_user_event(b"s1:u1", value)
    assert err.value.code == "INCOMPATIBLE_SCHEMA", err.value


def test_unframed_records_still_read_with_a_registry(settings: Settings) -> None:
    """Records written before the registry was switched on (schemaless) never start with 0."""
    ev = UserEvent("e-1", "USER_CREATED", "s1", "u1", 1, {"a": "b"})
    assert wire.WireFormat.from_settings(settings).decode_user_event(b"s1:u1", codec.encode_user_event(ev)) == ev


def test_without_a_registry_the_schemaless_encoding_stays() -> None:
    fmt = wire.WireFormat.from_settings(Settings())
    ev = UserEvent("e-1", "USER_CREATED", "s1", "u1", 1, {"a": "b"})
    assert fmt is wire.SCHEMALESS and not fmt.framed
    assert fmt.encode_user_event(ev) == codec.encode_user_event(ev)
    assert fastavro.schemaless_reader(io.BytesIO(fmt.encode_user_event(ev)), schemas.parsed_schema("user_event"))


def test_writing_needs_our_schema_registered() -> None:
    s = Settings(schema_registry=SchemaRegistry(url=f"mock://empty-{uuid.uuid4().hex[:8]}"))
    with pytest.raises(wire.SchemaNotRegistered) as err:
        wire.WireFormat.from_settings(s).encode_user_event(UserEvent("e", "USER_CREATED", "s", "u", 1, {}))
    assert "topics create" in err.value.message and err.value.path == f"{s.topics.user_events}-value"


def test_a_registry_that_does_not_answer_is_not_the_records_fault() -> None:
    """Connection refused, then HTTP 503: SchemaRegistryUnavailable (the caller retries the same
    record later), never a ContractError (which would dead-letter a good record)."""
    registry = SchemaRegistryDouble().start()
    try:
        s = Settings(schema_registry=SchemaRegistry(url=registry.url))
        wire.register_schemas(s)
        fmt = wire.WireFormat.from_settings(s)
        value = fmt.encode_user_event(UserEvent("e-1", "USER_CREATED", "s1", "u1", 1, {}))
        registry.down()
        fresh = wire.WireFormat.from_settings(s)  # nothing cached yet
        with pytest.raises(wire.SchemaRegistryUnavailable) as err:
            fresh.decode_user_event(b"s1:u1", value)
        assert err.value.code == "SCHEMA_REGISTRY_UNAVAILABLE" and not isinstance(err.value, ContractError)
        registry.up()
        assert fresh.decode_user_event(b"s1:u1", value).user_id == "u1"  # the same record, once it answers
    finally:
        registry.stop()
    closed = Settings(schema_registry=SchemaRegistry(url=f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(wire.SchemaRegistryUnavailable):
        wire.WireFormat.from_settings(closed).decode_user_event(b"s1:u1", value)


def test_registration_sets_full_transitive_and_the_registry_then_refuses_a_breaking_version() -> None:
    registry = SchemaRegistryDouble(user="svc", password="pw").start()
    try:
        s = Settings(schema_registry=SchemaRegistry(url=registry.url, basic_auth_user="svc",
                                                    basic_auth_password="pw"))
        regs = wire.register_schemas(s)
        assert {r.subject for r in regs} == set(wire.subjects(s.topics).values())
        assert {registry.config[r.subject] for r in regs} == {"FULL_TRANSITIVE"}
        assert wire.register_schemas(s) == regs  # idempotent: the same ids
        client = wire.registry_client(s.schema_registry)
        client.register_schema(f"{s.topics.user_events}-value",
                               Schema(json.dumps(extended("user_event", SOURCE)), "AVRO"))  # compatible
        required = {"name": "tenant", "type": "string"}  # no default: old readers/writers break
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        with pytest.raises(SchemaRegistryError) as err:
            client.register_schema(f"{s.topics.user_events}-value",
                                   Schema(json.dumps(extended("user_event", required)), "AVRO"))
        assert err.value.http_status_code == 409
        wrong = Settings(schema_registry=SchemaRegistry(url=registry.url, basic_auth_user_info="svc:nope"))
        with pytest.raises(wire.SchemaRegistryUnavailable) as refused:
            wire.WireFormat.from_settings(wrong).decode_user_event(b"s1:u1", b"\x00\x00\x00\x00\x07rest")
        assert "SCHEMA_REGISTRY_BASIC_AUTH" in refused.value.message
    finally:
        registry.stop()
