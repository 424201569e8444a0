"""AutomationCommand's optional ``auth_token`` (COMMANDS_REQUIRE_TOKEN=1): an Avro extension that
old records and old consumers survive, and a credential that never reaches the catalog log.

Expected bytes come from fastavro writing the schema file directly (with and without the new
field), not from the codec under test.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import fastavro
import pytest

from processor.catalog.entry import CatalogEntry
from processor.contract.codec import decode_command, encode_command
from processor.contract.exceptions import ContractError
from processor.contract.models import Actor, Command

SCHEMA = json.loads((Path(__file__).resolve().parents[3] / "schemas" / "automation_command.avsc").read_text())
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
RECORD = {"command_id": "c-1", "site_id": "acme", "issued_at": 10,
          "actor": {"user_id": "alice", "roles": ["site_admin"]},
          "payload": ("segment_automation.commands.v1.DeleteRule", {"rule_id": "r7"})}


def _write(schema: dict, record: dict) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), record)
    return buf.getvalue()


def _v1_schema() -> dict:
    """The schema as it was before auth_token (every field but the new one)."""
    return {**SCHEMA, "fields": [f for f in SCHEMA["fields"] if f["name"] != "auth_token"]}


def test_schema_adds_an_optional_field_at_the_end() -> None:
    last = SCHEMA["fields"][-1]
    assert last["name"] == "auth_token"
    assert last["type"] == ["null", "string"] and last["default"] is None and last["doc"]
    assert [f["name"] for f in SCHEMA["fields"][:-1]] == ["command_id", "site_id", "issued_at", "actor", "payload"]


def test_a_record_written_before_the_field_decodes_without_a_token() -> None:
    cmd = decode_command(_write(_v1_schema(), RECORD))
    assert (cmd.command_id, cmd.payload_type, cmd.auth_token) == ("c-1", "DeleteRule", None)


def test_a_command_without_token_is_byte_identical_to_v1() -> None:
    """Consumers built on the old schema keep reading every command that carries no token."""
    cmd = Command("c-1", "acme", 10, Actor("alice", ("site_admin",)), "DeleteRule", {"rule_id": "r7"})
    assert encode_command(cmd) == _write(_v1_schema(), RECORD)


def test_a_token_round_trips_and_matches_the_schema_file() -> None:
    cmd = Command("c-1", "acme", 10, Actor("alice", ("site_admin",)), "DeleteRule", {"rule_id": "r7"},
                  auth_token=TOKEN)
    value = encode_command(cmd)
    assert value == _write(SCHEMA, {**RECORD, "auth_token": TOKEN})
    assert decode_command(value).auth_token == TOKEN
    assert decode_command(_write(SCHEMA, {**RECORD, "auth_token": None})).auth_token is None


def test_a_corrupt_token_union_index_is_a_decode_error() -> None:
    """fastavro would read union index -1 as the last branch (a string); the codec refuses it."""
    v1 = _write(_v1_schema(), RECORD)
    for tail in (b"\x01\x02\x03", b"\x04", b"\x02\x7f"):  # index -1, index 2, string truncated
        with pytest.raises(ContractError) as info:
            decode_command(v1 + tail)
        assert info.value.code == "DECODE_ERROR", tail


def test_the_token_never_reaches_the_catalog_log_or_a_repr() -> None:
    cmd = Command("c-1", "acme", 10, Actor("alice", ("site_admin",)), "DeleteRule", {"rule_id": "r7"},
                  auth_token=TOKEN)
    entry = CatalogEntry(cmd, "REJECTED", "FORBIDDEN", "no", 1, 0, 0, None)
    assert TOKEN.encode() not in entry.encode()
    assert "auth_token" not in cmd.to_dict()
    assert TOKEN not in repr(cmd)
