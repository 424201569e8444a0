"""Unit tests for processor/contract/codec.py: the Avro wire contract.

Expectations come from the wire contract in issue 2: values are plain
schemaless Avro of the schemas in ``schemas/``, ids are non-empty strings,
the user-event key is ``"{site_id}:{user_id}"``, and anything undecodable or
invalid raises ``ContractError`` (so the edge can dead-letter it).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.contract.codec import (
    decode_command,
    decode_command_result,
    decode_dead_letter,
    decode_key,
    decode_membership_change,
    decode_user_event,
    encode_command,
    encode_command_result,
    encode_dead_letter,
    encode_membership_change,
    encode_user_event,
    user_event_key,
)
from processor.contract.exceptions import ContractError
from processor.contract.ids import NAME, OPAQUE, id_problem
from processor.contract.limits import DEFAULT_LIMITS, Limits
from processor.contract.models import Actor, Command, CommandResult, DeadLetter, MembershipChange, UserEvent

SCHEMA_DIR = Path(__file__).resolve().parents[3] / "schemas"

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------ helpers


def _event(**kw) -> UserEvent:
    base = dict(
        event_id="ev-1",
        event_type="USER_CREATED",
        site_id="site-a",
        user_id="u-1",
        occurred_at=1_700_000_000_123,
        profile={"department": "Sales"},
    )
    base.update(kw)
    return UserEvent(**base)


def _key(ev: UserEvent) -> bytes:
    return f"{ev.site_id}:{ev.user_id}".encode()


def _command(payload_type: str = "UpsertSegment", payload: dict | None = None, **kw) -> Command:
    base = dict(
        command_id="cmd-1",
        site_id="site-a",
        issued_at=1_700_000_000_456,
        actor=Actor("admin-1", ("site_admin",)),
        payload_type=payload_type,
        payload=payload if payload is not None else {"segment_id": "sales", "name": "Sales"},
    )
    base.update(kw)
    return Command(**base)


def _raw_schema(name: str) -> dict:
    return json.loads((SCHEMA_DIR / f"{name}.avsc").read_text())


def _independent_write(schema_name: str, record: dict) -> bytes:
    """Encode with fastavro straight from the .avsc file, as another team would."""
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(_raw_schema(schema_name)), record)
    return buf.getvalue()


def _avro_long(n: int) -> bytes:
    """Zig-zag varint, the Avro encoding of int/long."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        b = z & 0x7F
        z >>= 7
        if z:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _avro_str(s: str) -> bytes:
    raw = s.encode()
    return _avro_long(len(raw)) + raw


ALL_PAYLOADS = {
    "UpsertProfileField": {"shortname": "team", "name": "Team", "datatype": "MENU", "options": ["A", "B"]},
    "DeleteProfileField": {"shortname": "team"},
    "UpsertSegment": {"segment_id": "sales", "name": "Sales"},
    "DeleteSegment": {"segment_id": "sales"},
    "EnableSegmentAutomation": {"segment_id": "sales"},
    "DisableSegmentAutomation": {"segment_id": "sales", "remove_members": True},
    "CreateRule": {
        "rule_id": "r1",
        "segment_id": "sales",
        "name": "Sales staff",
        "condition_json": '{"field": "department", "op": "equals", "value": "Sales"}',
        "enabled": True,
    },
    "UpdateRule": {
        "rule_id": "r1",
        "segment_id": "sales",
        "name": "Sales staff",
        "condition_json": '{"field": "department", "op": "equals", "value": "Sales"}',
        "enabled": False,
    },
    "DeleteRule": {"rule_id": "r1"},
    "SetSiteSettings": {"large_change_min_removed": 20, "large_change_ratio": 0.25},
}


# -------------------------------------------------------------- round trips


@pytest.mark.parametrize("event_type", ["USER_CREATED", "USER_UPDATED", "USER_DELETED"])
def test_user_event_round_trip_every_event_type(event_type):
    """Every event type encodes and decodes back to an equal UserEvent."""
    ev = _event(event_type=event_type)
    assert decode_user_event(_key(ev), encode_user_event(ev)) == ev


def test_user_event_round_trip_every_profile_value_type():
    """The profile union (null, string, long, double, boolean, array<string>) survives a round trip
    with Python types preserved: booleans stay booleans (checkboxes), not 0/1."""
    profile = {
        "department": "Sales",
        "suspended": True,
        "confirmed": False,
        "lastlogin": 1_700_000_000,
        "profile_field_score": 12.5,
        "interests": ["chess", "go"],
        "profile_field_langs": [],
        "city": None,
        "profile_field_big": 2**40,
    }
    ev = _event(profile=profile)
    got = decode_user_event(_key(ev), encode_user_event(ev))
    assert got.profile == profile
    assert type(got.profile["suspended"]) is bool
    assert type(got.profile["confirmed"]) is bool
    assert type(got.profile["lastlogin"]) is int
    assert type(got.profile["profile_field_score"]) is float
    assert got.profile["city"] is None


def test_user_event_empty_profile_round_trip():
    """An empty profile (the schema default) round trips as an empty map."""
    ev = _event(event_type="USER_DELETED", profile={})
    assert decode_user_event(_key(ev), encode_user_event(ev)).profile == {}


def test_user_event_key_allows_colon_in_user_id():
    """The key is site_id + ':' + user_id even when the user id itself contains a colon."""
    ev = _event(user_id="ldap:jdoe")
    assert user_event_key("site-a", "ldap:jdoe") == b"site-a:ldap:jdoe"
    assert decode_user_event(b"site-a:ldap:jdoe", encode_user_event(ev)) == ev


def test_user_event_non_ascii_ids_round_trip():
    """Keys and ids are UTF-8; non-ASCII ids round trip and the UTF-8 key matches."""
    ev = _event(site_id="école", user_id="usuário-ß")
    assert decode_user_event(user_event_key("école", "usuário-ß"), encode_user_event(ev)) == ev


def test_user_event_bytes_are_plain_schemaless_avro_of_the_schema_file():
    """Encoded user events are exactly fastavro.schemaless_writer over schemas/user_event.avsc."""
    ev = _event(profile={"department": "Sales", "suspended": False, "interests": ["a"]})
    record = {
        "event_id": ev.event_id,
        "event_type": ev.event_type,
        "site_id": ev.site_id,
        "user_id": ev.user_id,
        "occurred_at": ev.occurred_at,
        "profile": ev.profile,
    }
    assert encode_user_event(ev) == _independent_write("user_event", record)


def test_user_event_written_by_another_producer_decodes():
    """A value produced by another team straight from the .avsc (profile default omitted) decodes."""
    record = {
        "event_id": "e-9",
        "event_type": "USER_UPDATED",
        "site_id": "s",
        "user_id": "u",
        "occurred_at": 5,
    }
    value = _independent_write("user_event", record)
    ev = decode_user_event(b"s:u", value)
    assert (ev.event_id, ev.event_type, ev.site_id, ev.user_id, ev.occurred_at, ev.profile) == (
        "e-9", "USER_UPDATED", "s", "u", 5, {},
    )


@pytest.mark.parametrize("payload_type", sorted(ALL_PAYLOADS))
def test_command_round_trip_every_payload(payload_type):
    """Every AutomationCommand payload record round trips to an equal Command."""
    cmd = _command(payload_type, dict(ALL_PAYLOADS[payload_type]),
                   actor=Actor("admin-1", ("site_admin", "system")))
    assert decode_command(encode_command(cmd)) == cmd


def test_command_upsert_profile_field_options_default_to_empty():
    """UpsertProfileField without options (schema default []) encodes and decodes with options == []."""
    cmd = _command("UpsertProfileField", {"shortname": "team", "name": "Team", "datatype": "TEXT"})
    got = decode_command(encode_command(cmd))
    assert got.payload == {"shortname": "team", "name": "Team", "datatype": "TEXT", "options": []}


def test_command_written_by_another_producer_decodes():
    """A command encoded straight from automation_command.avsc with a fully qualified union branch decodes."""
    record = {
        "command_id": "c-1",
        "site_id": "s",
        "issued_at": 10,
        "actor": {"user_id": "adm", "roles": ["site_admin"]},
        "payload": ("segment_automation.commands.v1.DeleteRule", {"rule_id": "r7"}),
    }
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(_raw_schema("automation_command")), record)
    cmd = decode_command(buf.getvalue())
    assert cmd.payload_type == "DeleteRule"
    assert cmd.payload == {"rule_id": "r7"}
    assert cmd.actor == Actor("adm", ("site_admin",))


def test_command_empty_roles_round_trip():
    """An actor with no roles is representable (authorization rejects it later, not the codec)."""
    cmd = _command(actor=Actor("u", ()))
    assert decode_command(encode_command(cmd)).actor == Actor("u", ())


@pytest.mark.parametrize("change", ["ADDED", "REMOVED"])
def test_membership_change_round_trip(change):
    """MembershipChange round trips, matched_rule_ids coming back as a tuple."""
    ch = MembershipChange(
        change_id="abc", site_id="s", segment_id="sales", user_id="u", change=change,
        cause_kind="RULE_CREATED", cause_id="cmd-1",
        matched_rule_ids=("r1", "r2") if change == "ADDED" else (),
        occurred_at=1, emitted_at=2,
    )
    assert decode_membership_change(encode_membership_change(ch)) == ch


def test_membership_change_is_readable_with_the_schema_file():
    """Downstream consumers reading with schemas/membership_change.avsc see every field."""
    ch = MembershipChange("cid", "s", "seg", "u", "ADDED", "USER_CREATED", "ev", ("r1",), 1000, 2000)
    rec = fastavro.schemaless_reader(
        io.BytesIO(encode_membership_change(ch)),
        fastavro.parse_schema(_raw_schema("membership_change")),
        None,
    )
    assert rec["change_id"] == "cid"
    assert rec["change"] == "ADDED"
    assert rec["cause_kind"] == "USER_CREATED"
    assert rec["matched_rule_ids"] == ["r1"]


@pytest.mark.parametrize(
    "status,code,message",
    [("ACCEPTED", None, None), ("REJECTED", "FORBIDDEN", "CreateRule requires role site_admin")],
)
def test_command_result_round_trip(status, code, message):
    """CommandResult round trips, with nullable code/message."""
    res = CommandResult("c1", "s", status, code, message, 99)
    assert decode_command_result(encode_command_result(res)) == res


@pytest.mark.parametrize("key,value", [(None, None), (b"k", b"\x00\xff"), (b"", b"")])
def test_dead_letter_round_trip(key, value):
    """DeadLetter round trips, including absent key/value and raw binary."""
    dl = DeadLetter("lms.user-events.v1", 3, 12345, key, value, "DECODE_ERROR", "bad", 7)
    assert decode_dead_letter(encode_dead_letter(dl)) == dl


def test_dead_letter_can_carry_an_oversized_input():
    """A dead letter for a message over the input size limit is itself still decodable."""
    big = b"x" * (DEFAULT_LIMITS.max_message_bytes + 10)
    dl = DeadLetter("t", 0, 0, None, big, "LIMIT_EXCEEDED", "too big", 1)
    assert decode_dead_letter(encode_dead_letter(dl)).value == big


# -------------------------------------------------------------- decode keys


def test_decode_key():
    """Keys decode as UTF-8; a missing or non-UTF-8 key decodes to None."""
    assert decode_key(b"s:u") == "s:u"
    assert decode_key("é".encode()) == "é"
    assert decode_key(None) is None
    assert decode_key(b"\xff\xfe") is None


# ----------------------------------------------------------- decode errors


def _code(fn, *args, **kw) -> ContractError:
    with pytest.raises(ContractError) as info:
        fn(*args, **kw)
    return info.value


def test_tombstone_is_decode_error():
    """A message without a value (tombstone) is rejected with DECODE_ERROR."""
    assert _code(decode_user_event, b"s:u", None).code == "DECODE_ERROR"
    assert _code(decode_command, None).code == "DECODE_ERROR"


@pytest.mark.parametrize("value", [b"", b"\xff", b"\xff" * 64, b"\x02\x00", b"garbage that is not avro"])
def test_random_bytes_are_decode_errors(value):
    """Bytes that are not a UserEvent / AutomationCommand raise DECODE_ERROR."""
    assert _code(decode_user_event, b"s:u", value).code in {"DECODE_ERROR", "TRAILING_BYTES"}
    assert _code(decode_command, value).code in {"DECODE_ERROR", "TRAILING_BYTES"}


def test_garbage_user_event_is_decode_error_exactly():
    """A lone 0xFF byte cannot start a valid record: DECODE_ERROR specifically."""
    assert _code(decode_user_event, b"s:u", b"\xff").code == "DECODE_ERROR"
    assert _code(decode_command, b"\xff").code == "DECODE_ERROR"


def test_every_truncation_of_a_user_event_is_decode_error():
    """Cutting a valid user event anywhere short of its end raises DECODE_ERROR."""
    ev = _event(profile={"department": "Sales", "interests": ["a", "b"], "suspended": False})
    value = encode_user_event(ev)
    for cut in range(len(value)):
        assert _code(decode_user_event, _key(ev), value[:cut]).code == "DECODE_ERROR", cut


def test_every_truncation_of_a_command_is_decode_error():
    """Cutting a valid command anywhere short of its end raises DECODE_ERROR."""
    value = encode_command(_command("CreateRule", dict(ALL_PAYLOADS["CreateRule"])))
    for cut in range(len(value)):
        assert _code(decode_command, value[:cut]).code == "DECODE_ERROR", cut


@pytest.mark.parametrize("extra", [b"\x00", b"\x01\x02\x03"])
def test_trailing_bytes_rejected(extra):
    """A valid record followed by extra bytes is TRAILING_BYTES (probably the wrong schema)."""
    ev = _event()
    assert _code(decode_user_event, _key(ev), encode_user_event(ev) + extra).code == "TRAILING_BYTES"
    # b"\x00" after a command is its optional auth_token (null, see test_command_auth_token_*)
    assert _code(decode_command, encode_command(_command()) + b"\x00" + extra).code == "TRAILING_BYTES"


def test_wrong_schema_is_rejected():
    """A membership change or command result fed to the user-event decoder is rejected."""
    ch = MembershipChange("c", "s", "seg", "u", "ADDED", "USER_CREATED", "ev", (), 1, 2)
    with pytest.raises(ContractError):
        decode_user_event(b"s:u", encode_membership_change(ch))
    with pytest.raises(ContractError):
        decode_command(encode_user_event(_event()))


def test_unknown_event_type_is_decode_error():
    """An event_type enum index outside USER_CREATED|USER_UPDATED|USER_DELETED is DECODE_ERROR."""
    value = (
        _avro_str("e1")
        + _avro_long(3)  # enum index 3 does not exist
        + _avro_str("s")
        + _avro_str("u")
        + _avro_long(1)
        + _avro_long(0)  # empty profile map
    )
    assert _code(decode_user_event, b"s:u", value).code == "DECODE_ERROR"


def test_hand_built_event_matches_encoder():
    """Sanity check of the hand-built Avro helper: index 1 is USER_UPDATED and decodes."""
    value = _avro_str("e1") + _avro_long(1) + _avro_str("s") + _avro_str("u") + _avro_long(1) + _avro_long(0)
    assert decode_user_event(b"s:u", value) == UserEvent("e1", "USER_UPDATED", "s", "u", 1, {})


@pytest.mark.parametrize("field", ["event_id", "site_id", "user_id"])
@pytest.mark.parametrize("bad", ["", "   "])
def test_user_event_empty_ids_rejected(field, bad):
    """Empty or blank event_id/site_id/user_id raise EMPTY_ID with the field's JSON path."""
    ev = _event(**{field: bad})
    err = _code(decode_user_event, _key(ev), encode_user_event(ev))
    assert err.code == "EMPTY_ID"
    assert err.path == f"$.{field}"
    assert field in err.message


@pytest.mark.parametrize("field", ["command_id", "site_id"])
def test_command_empty_ids_rejected(field):
    """Empty command_id/site_id raise EMPTY_ID (a result cannot be addressed without them)."""
    err = _code(decode_command, encode_command(_command(**{field: ""})))
    assert err.code == "EMPTY_ID"
    assert err.path == f"$.{field}"


@pytest.mark.parametrize(
    "key",
    [None, b"", b"site-a", b"site-a:u-2", b"site-b:u-1", b"u-1:site-a", b"site-a:u-1 ", b"\xff\xfe"],
)
def test_user_event_key_mismatch(key):
    """A key other than exactly "{site_id}:{user_id}" raises KEY_MISMATCH naming the expected key."""
    ev = _event()
    err = _code(decode_user_event, key, encode_user_event(ev))
    assert err.code == "KEY_MISMATCH"
    assert "site-a:u-1" in err.message


def test_message_size_limit():
    """A value larger than max_message_bytes is LIMIT_EXCEEDED before decoding; at the limit it decodes."""
    ev = _event()
    value = encode_user_event(ev)
    assert decode_user_event(_key(ev), value, Limits(max_message_bytes=len(value))) == ev
    err = _code(decode_user_event, _key(ev), value, Limits(max_message_bytes=len(value) - 1))
    assert err.code == "LIMIT_EXCEEDED"
    cvalue = encode_command(_command())
    assert _code(decode_command, cvalue, Limits(max_message_bytes=len(cvalue) - 1)).code == "LIMIT_EXCEEDED"


def test_default_message_limit_applies():
    """With default limits a value over 512 KiB is rejected with LIMIT_EXCEEDED."""
    value = b"\x00" * (512 * 1024 + 1)
    assert _code(decode_user_event, b"s:u", value).code == "LIMIT_EXCEEDED"
    assert _code(decode_command, value).code == "LIMIT_EXCEEDED"


@pytest.mark.parametrize("field", ["event_id", "site_id", "user_id"])
def test_id_length_limit(field):
    """Ids longer than max_id_chars (255 by default) are LIMIT_EXCEEDED; exactly 255 is accepted."""
    ok = _event(**{field: "x" * 255})
    assert decode_user_event(_key(ok), encode_user_event(ok)) == ok
    bad = _event(**{field: "x" * 256})
    err = _code(decode_user_event, _key(bad), encode_user_event(bad))
    assert err.code == "LIMIT_EXCEEDED"
    assert err.path == f"$.{field}"


def test_command_id_length_limit():
    """A command_id over the id limit is LIMIT_EXCEEDED."""
    err = _code(decode_command, encode_command(_command(command_id="c" * 300)))
    assert err.code == "LIMIT_EXCEEDED"


def test_profile_entry_limit():
    """More profile entries than max_profile_entries is LIMIT_EXCEEDED at $.profile."""
    limits = Limits(max_profile_entries=3)
    ok = _event(profile={f"f{i}": "v" for i in range(3)})
    assert decode_user_event(_key(ok), encode_user_event(ok), limits) == ok
    bad = _event(profile={f"f{i}": "v" for i in range(4)})
    err = _code(decode_user_event, _key(bad), encode_user_event(bad), limits)
    assert (err.code, err.path) == ("LIMIT_EXCEEDED", "$.profile")


def test_profile_string_limit():
    """A profile string longer than max_string_chars is LIMIT_EXCEEDED naming the field."""
    limits = Limits(max_string_chars=10)
    ok = _event(profile={"city": "x" * 10})
    assert decode_user_event(_key(ok), encode_user_event(ok), limits) == ok
    bad = _event(profile={"city": "x" * 11})
    err = _code(decode_user_event, _key(bad), encode_user_event(bad), limits)
    assert (err.code, err.path) == ("LIMIT_EXCEEDED", "$.profile.city")


def test_profile_array_limits():
    """Arrays over max_array_items, or with an item over max_string_chars, are LIMIT_EXCEEDED."""
    limits = Limits(max_array_items=2, max_string_chars=5)
    ok = _event(profile={"interests": ["a", "bbbbb"]})
    assert decode_user_event(_key(ok), encode_user_event(ok), limits) == ok
    too_many = _event(profile={"interests": ["a", "b", "c"]})
    err = _code(decode_user_event, _key(too_many), encode_user_event(too_many), limits)
    assert (err.code, err.path) == ("LIMIT_EXCEEDED", "$.profile.interests")
    too_long = _event(profile={"interests": ["a", "bbbbbb"]})
    err = _code(decode_user_event, _key(too_long), encode_user_event(too_long), limits)
    assert (err.code, err.path) == ("LIMIT_EXCEEDED", "$.profile.interests[1]")


def test_profile_field_name_limits():
    """An empty profile key or one longer than 255 characters is rejected as a contract error."""
    for name in ["", "k" * 256]:
        bad = _event(profile={name: "v"})
        with pytest.raises(ContractError):
            decode_user_event(_key(bad), encode_user_event(bad))
    ok = _event(profile={"k" * 255: "v"})
    assert decode_user_event(_key(ok), encode_user_event(ok)) == ok


def test_contract_error_carries_code_path_and_message():
    """ContractError exposes code, path and message for the dead-letter reason."""
    ev = _event(site_id="")
    err = _code(decode_user_event, b":u-1", encode_user_event(ev))
    assert err.as_dict() == {"code": "EMPTY_ID", "path": "$.site_id", "message": err.message}
    assert str(err).startswith("EMPTY_ID at $.site_id")


# -------------------------------------------------------------------- fuzz


@FUZZ
@given(key=st.one_of(st.none(), st.binary(max_size=20)), value=st.binary(max_size=300))
def test_fuzz_decode_user_event_only_raises_contract_error(key, value):
    """Random bytes never raise anything but ContractError; a success has valid non-empty ids."""
    try:
        ev = decode_user_event(key, value)
    except ContractError as err:
        assert err.code
        return
    assert ev.event_id.strip() and ev.site_id.strip() and ev.user_id.strip()
    assert key == f"{ev.site_id}:{ev.user_id}".encode()


@FUZZ
@given(value=st.binary(max_size=300))
def test_fuzz_decode_command_only_raises_contract_error(value):
    """Random bytes never raise anything but ContractError from decode_command."""
    try:
        cmd = decode_command(value)
    except ContractError as err:
        assert err.code
        return
    assert cmd.command_id.strip() and cmd.site_id.strip()


@FUZZ
@given(data=st.data())
def test_fuzz_mutated_valid_messages_only_raise_contract_error(data):
    """Valid encodings with bytes flipped, inserted or removed decode or raise ContractError, nothing else."""
    ev = _event(profile={"department": "Sales", "interests": ["x"], "suspended": True, "n": 1.5})
    for value in (encode_user_event(ev), encode_command(_command("CreateRule", dict(ALL_PAYLOADS["CreateRule"])))):
        pos = data.draw(st.integers(0, len(value) - 1))
        kind = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        byte = data.draw(st.integers(0, 255))
        if kind == "flip":
            mutated = value[:pos] + bytes([byte]) + value[pos + 1:]
        elif kind == "insert":
            mutated = value[:pos] + bytes([byte]) + value[pos:]
        else:
            mutated = value[:pos] + value[pos + 1:]
        for fn in (lambda v: decode_user_event(_key(ev), v), decode_command):
            try:
                fn(mutated)
            except ContractError:
                pass


# valid ids of the contract (processor/contract/ids.py): names for sites, opaque ids for users and events
_ids = st.text(min_size=1, max_size=20).filter(lambda s: id_problem(s, OPAQUE) is None)
_names = st.text(st.characters(categories=("L", "Nd"), include_characters="_-."), min_size=1, max_size=20).filter(
    lambda s: id_problem(s, NAME) is None)
_profile_values = st.one_of(
    st.none(),
    st.text(max_size=20),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.booleans(),
    st.lists(st.text(max_size=10), max_size=5),
)


@settings(max_examples=100, deadline=None)
@given(
    event_id=_ids,
    event_type=st.sampled_from(["USER_CREATED", "USER_UPDATED", "USER_DELETED"]),
    site_id=_names,
    user_id=_ids,
    occurred_at=st.integers(min_value=0, max_value=2**62),
    profile=st.dictionaries(st.text(min_size=1, max_size=20), _profile_values, max_size=8),
)
def test_property_user_event_round_trip(event_id, event_type, site_id, user_id, occurred_at, profile):
    """Any valid UserEvent round trips unchanged through encode/decode with its key."""
    ev = UserEvent(event_id, event_type, site_id, user_id, occurred_at, profile)
    got = decode_user_event(user_event_key(site_id, user_id), encode_user_event(ev))
    assert got == ev
    for k, v in profile.items():
        assert type(got.profile[k]) is type(v)
