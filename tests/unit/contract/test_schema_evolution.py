"""The schemas can evolve: each current schema against every released version kept in
``schemas/history/<name>/`` (copied from the release, never edited), both ways, with fastavro
(tests/support/avro_evolution.py), plus the conventions that make later changes safe: every
enum has a default symbol, every field a doc, every optional field a null default.

The checker itself is shown to fail on the changes that break readers (renames, removed or
reordered symbols, retyped fields, fields inserted in the middle or in a nested record, ...)
and to pass the ones docs/contract.md#schema-evolution allows.
"""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any, Callable

import fastavro
import pytest

from processor.catalog.commands import decide
from processor.catalog.model import SiteCatalog
from processor.contract import schemas
from processor.contract.codec import (
    decode_command,
    decode_user_event,
    encode_command,
    encode_command_result,
    encode_dead_letter,
    encode_membership_change,
)
from processor.contract.exceptions import ContractError
from processor.contract.models import Actor, Command, CommandResult, DeadLetter, MembershipChange
from tests.support.avro_evolution import problems, samples

ROOT = Path(__file__).resolve().parents[3]
SCHEMAS = ROOT / "schemas"
HISTORY = SCHEMAS / "history"
CURRENT = sorted(p.relative_to(SCHEMAS).with_suffix("").as_posix()
                 for p in [*SCHEMAS.glob("*.avsc"), *(SCHEMAS / "internal").glob("*.avsc")])
# A superseded format kept only to read old state; it is itself a released version (frozen).
FROZEN = {"internal/user_state_v1": "internal/user_state/v1"}
KEPT = sorted(p.relative_to(HISTORY).with_suffix("").as_posix() for p in HISTORY.rglob("*.avsc"))


def load(rel: str, base: Path = SCHEMAS) -> dict[str, Any]:
    return json.loads((base / f"{rel}.avsc").read_text())


def strip(schema: Any) -> Any:
    return fastavro.parse_schema(schemas._strip_logical(schema))


def write(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, strip(schema), record)
    return buf.getvalue()


def read(data: bytes, writer: dict[str, Any], reader: dict[str, Any] | None = None) -> Any:
    return fastavro.schemaless_reader(io.BytesIO(data), strip(writer),
                                      None if reader is None else strip(reader))


def fields(schema: Any, path: str = "$") -> list[tuple[str, dict[str, Any]]]:
    """Every field of every record in ``schema`` (nested ones too), with its path."""
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(schema, list):
        for branch in schema:
            out += fields(branch, path)
    elif isinstance(schema, dict):
        if schema.get("type") == "record":
            for f in schema["fields"]:
                out.append((f"{path}.{f['name']}", f))
                out += fields(f["type"], f"{path}.{f['name']}")
        else:
            for key in ("type", "items", "values"):
                if isinstance(schema.get(key), (dict, list)):
                    out += fields(schema[key], path)
    return out


def enums(schema: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for n in node:
                walk(n)
        elif isinstance(node, dict):
            if node.get("type") == "enum":
                found.append(node)
            for key in ("type", "items", "values"):
                walk(node.get(key))
            for f in node.get("fields", ()):
                walk(f["type"])

    walk(schema)
    return found


# ------------------------------------------------------------- the kept versions


def test_every_current_schema_has_a_kept_released_version() -> None:
    """A schema without a kept version could change in any way unnoticed."""
    for rel in CURRENT:
        kept_dir = FROZEN[rel].rsplit("/", 1)[0] if rel in FROZEN else rel
        assert list((HISTORY / kept_dir).glob("v*.avsc")), \
            f"{rel}: no released version in schemas/history/{kept_dir}/"


@pytest.mark.parametrize("kept", KEPT)
def test_current_schema_is_compatible_with_every_kept_version(kept: str) -> None:
    """Old data -> current reader and current data -> old reader (resolution and schemaless)."""
    name = kept.rsplit("/", 1)[0]
    assert problems(load(kept, HISTORY), load(name)) == []


@pytest.mark.parametrize("current,kept", sorted(FROZEN.items()))
def test_a_frozen_format_is_unchanged_but_for_docs(current: str, kept: str) -> None:
    def undocumented(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: undocumented(v) for k, v in node.items() if k != "doc"}
        if isinstance(node, list):
            return [undocumented(v) for v in node]
        return node

    assert undocumented(load(current)) == undocumented(load(kept, HISTORY))


def test_the_processors_outputs_are_the_released_bytes() -> None:
    """What the processor writes today is byte for byte what the released schemas write, so a
    consumer still decoding with a released schema, schemalessly, reads every field it knows."""
    v1_change = {"change_id": "cid", "site_id": "s", "segment_id": "seg", "user_id": "u", "change": "REMOVED",
                 "cause_kind": "REBUILD", "cause_id": "rebuild:r1", "matched_rule_ids": ["r1", "r2"],
                 "occurred_at": 1000, "emitted_at": 2000}
    for evidence in (None, (("department", '"Sales"'),)):  # appended after v1: v1's bytes come first
        ch = MembershipChange("cid", "s", "seg", "u", "REMOVED", "REBUILD", "rebuild:r1", ("r1", "r2"),
                              1000, 2000, evidence)
        released = write(load("membership_change/v1", HISTORY), v1_change)
        assert encode_membership_change(ch)[:len(released)] == released
        assert read(encode_membership_change(ch), load("membership_change/v1", HISTORY)) == v1_change
    res = CommandResult("c1", "s", "REJECTED", "FORBIDDEN", "no", 99)
    assert encode_command_result(res) == write(load("command_result/v1", HISTORY), {
        "command_id": "c1", "site_id": "s", "status": "REJECTED", "code": "FORBIDDEN", "message": "no",
        "processed_at": 99})
    dl = DeadLetter("t", 1, 2, b"k", b"v", "DECODE_ERROR", "e", 3, 1, "ab", 1, "cd", ())
    v1 = load("dead_letter/v1", HISTORY)
    assert read(encode_dead_letter(dl), v1) == {
        "source_topic": "t", "source_partition": 1, "source_offset": 2, "key": b"k", "value": b"v",
        "error_code": "DECODE_ERROR", "error": "e", "failed_at": 3}


# ------------------------------------------------------------------ conventions


@pytest.mark.parametrize("rel", CURRENT)
def test_every_field_has_a_doc(rel: str) -> None:
    missing = [path for path, f in fields(load(rel)) if not str(f.get("doc", "")).strip()]
    assert missing == [], f"{rel}: fields without a doc: {missing}"


@pytest.mark.parametrize("rel", CURRENT)
def test_every_enum_has_a_default_symbol(rel: str) -> None:
    """So a reader of this version survives a symbol added later (it reads as the default)."""
    for enum in enums(load(rel)):
        assert enum.get("default") in enum["symbols"], f"{rel}: enum {enum['name']} has no default symbol"
        assert enum["default"] == "UNKNOWN", enum["name"]


@pytest.mark.parametrize("rel", CURRENT)
def test_optional_fields_are_null_first_with_a_null_default(rel: str) -> None:
    for path, f in fields(load(rel)):
        if isinstance(f["type"], list) and "null" in f["type"]:
            assert f["type"][0] == "null" and "default" in f and f["default"] is None, f"{rel}: {path}"


def test_the_processor_never_writes_unknown() -> None:
    """UNKNOWN is only a reader's default: each output enum's other symbols are the ones the code uses."""
    from processor.contract.models import USER_EVENT_TYPES
    from processor.rules.fields import FieldType

    by_name = {e["name"]: e["symbols"] for rel in CURRENT for e in enums(load(rel))}
    assert by_name["UserEventType"] == [*USER_EVENT_TYPES, "UNKNOWN"]
    assert by_name["ProfileFieldDatatype"] == [*(t.value for t in FieldType), "UNKNOWN"]
    # APPLYING and APPLIED were appended after UNKNOWN (processor/handlers/progress.py writes them)
    assert by_name["CommandStatus"] == ["ACCEPTED", "REJECTED", "UNKNOWN", "APPLYING", "APPLIED"]
    assert by_name["ChangeType"] == ["ADDED", "REMOVED", "UNKNOWN"]


# ------------------------------------------------- what the enum defaults buy


def test_a_reader_of_this_version_survives_a_symbol_added_later() -> None:
    """A future writer appends cause NEW_CAUSE; a reader with today's schema resolves it to UNKNOWN
    and reads every other field (without the default, fastavro raises SchemaResolutionError)."""
    now = load("membership_change")
    future = copy.deepcopy(now)
    next(f for f in future["fields"] if f["name"] == "cause_kind")["type"]["symbols"].append("NEW_CAUSE")
    rec = {"change_id": "c", "site_id": "s", "segment_id": "g", "user_id": "u", "change": "ADDED",
           "cause_kind": "NEW_CAUSE", "cause_id": "x", "matched_rule_ids": ["r"], "occurred_at": 1,
           "emitted_at": 2, "evidence": None}
    assert read(write(future, rec), future, now) == {**rec, "cause_kind": "UNKNOWN"}


def test_a_user_event_of_unknown_type_is_a_decode_error() -> None:
    """UNKNOWN (what a newer event type resolves to) is refused, so the event is dead-lettered and
    can be replayed after an upgrade, never applied as some other type."""
    value = write(load("user_event"), {"event_id": "e", "event_type": "UNKNOWN", "site_id": "s",
                                       "user_id": "u", "occurred_at": 1, "profile": {}})
    with pytest.raises(ContractError) as info:
        decode_user_event(b"s:u", value)
    assert (info.value.code, info.value.path) == ("DECODE_ERROR", "$.event_type")
    assert "UNKNOWN" in info.value.message and "USER_CREATED" in info.value.message


def test_a_command_with_a_datatype_of_unknown_is_a_decode_error() -> None:
    """On the wire, datatype UNKNOWN (what a datatype added later reads as) is undecodable, like an
    unknown event type: the command is dead-lettered with its bytes, never stored as another type."""
    cmd = Command("c-1", "site-a", 1, Actor("a", ("system",)), "UpsertProfileField",
                  {"shortname": "team", "name": "Team", "datatype": "UNKNOWN", "options": []})
    with pytest.raises(ContractError) as info:
        decode_command(encode_command(cmd))
    assert (info.value.code, info.value.path) == ("DECODE_ERROR", "$.payload.datatype")


def test_a_profile_field_of_unknown_datatype_is_rejected() -> None:
    cmd = Command("c-1", "site-a", 1, Actor("a", ("system",)), "UpsertProfileField",
                  {"shortname": "team", "name": "Team", "datatype": "UNKNOWN", "options": []})
    d = decide(SiteCatalog("site-a"), cmd)
    assert (d.status, d.code, d.path) == ("REJECTED", "INVALID_FIELD", "$.payload.datatype")
    assert "UNKNOWN" in d.message and "MULTISELECT" in d.message


# --------------------------------------------------- the checker can fail


def _field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in schema["fields"] if f["name"] == name)


def _rename(s: dict[str, Any]) -> None:
    _field(s, "user_id")["name"] = "member_id"


def _drop_symbol(s: dict[str, Any]) -> None:
    _field(s, "cause_kind")["type"]["symbols"].remove("REBUILD")


def _reorder_symbols(s: dict[str, Any]) -> None:
    _field(s, "change")["type"]["symbols"] = ["REMOVED", "ADDED", "UNKNOWN"]


def _drop_enum_default(s: dict[str, Any]) -> None:
    del _field(s, "change")["type"]["default"]


def _retype(s: dict[str, Any]) -> None:
    _field(s, "source_partition")["type"] = "string"


def _required_appended(s: dict[str, Any]) -> None:
    s["fields"].append({"name": "extra", "type": "string", "doc": "d"})


def _optional_in_the_middle(s: dict[str, Any]) -> None:
    s["fields"].insert(2, {"name": "extra", "type": ["null", "string"], "default": None, "doc": "d"})


def _remove_field(s: dict[str, Any]) -> None:
    s["fields"].remove(_field(s, "error_code"))


def _nested_append(s: dict[str, Any]) -> None:
    _field(s, "actor")["type"]["fields"].append({"name": "extra", "type": ["null", "string"], "default": None,
                                                 "doc": "d"})


def _reorder_union(s: dict[str, Any]) -> None:
    branches = _field(s, "payload")["type"]
    branches.insert(0, branches.pop(3))


def _remove_branch(s: dict[str, Any]) -> None:
    _field(s, "payload")["type"].pop()


BREAKING: dict[str, tuple[str, Callable[[dict[str, Any]], None], str]] = {
    "renamed field": ("membership_change", _rename, "member_id"),
    "removed enum symbol": ("membership_change", _drop_symbol, "REBUILD removed"),
    "reordered enum symbols": ("membership_change", _reorder_symbols, "reordered"),
    "enum without default": ("membership_change", _drop_enum_default, "no default symbol"),
    "retyped field": ("dead_letter", _retype, "int is not string"),
    "required field appended": ("dead_letter", _required_appended, "No default value for field extra"),
    "optional field in the middle": ("dead_letter", _optional_in_the_middle, "old schemaless reader"),
    "removed field": ("dead_letter", _remove_field, "error_code"),
    "field appended to a nested record": ("automation_command", _nested_append, "byte layout"),
    "reordered union": ("automation_command", _reorder_union, "old schemaless reader"),
    "removed union branch": ("automation_command", _remove_branch, "old data -> new reader fails"),
}


@pytest.mark.parametrize("case", sorted(BREAKING))
def test_the_checker_reports_a_breaking_change(case: str, tmp_path: Path) -> None:
    """Each change is made to a temporary copy of a current schema, which the checker compares
    with the real one as the kept version."""
    name, change, expected = BREAKING[case]
    changed = load(name)
    change(changed)
    copy_path = tmp_path / f"{name}.avsc"
    copy_path.write_text(json.dumps(changed))
    found = problems(load(name), json.loads(copy_path.read_text()))
    assert found, case
    assert any(expected in p for p in found), found


def _append_optional(s: dict[str, Any]) -> None:
    s["fields"].append({"name": "extra", "type": ["null", "string"], "default": None, "doc": "d"})


def _append_symbol(s: dict[str, Any]) -> None:
    _field(s, "cause_kind")["type"]["symbols"].append("NEW_CAUSE")


def _append_branch(s: dict[str, Any]) -> None:
    _field(s, "payload")["type"].append({"type": "record", "name": "Noop", "fields": [
        {"name": "note", "type": "string", "doc": "d"}]})


def _add_doc(s: dict[str, Any]) -> None:
    _field(s, "status")["doc"] = "changed"


ALLOWED = {
    "optional field appended": ("membership_change", _append_optional),
    "enum symbol appended": ("membership_change", _append_symbol),
    "union branch appended": ("automation_command", _append_branch),
    "doc changed": ("command_result", _add_doc),
}


@pytest.mark.parametrize("case", sorted(ALLOWED))
def test_the_checker_passes_an_allowed_change(case: str) -> None:
    name, change = ALLOWED[case]
    changed = load(name)
    change(changed)
    assert problems(load(name), changed) == []


@pytest.mark.parametrize("rel", CURRENT)
def test_samples_cover_every_symbol_and_branch(rel: str) -> None:
    """The generated records use every enum symbol and every union branch (else a break in an
    unused one could go unseen)."""
    schema = load(rel)
    recs = samples(schema)
    parsed = strip(schema)
    for rec in recs:
        fastavro.validation.validate(rec, parsed, raise_errors=True)
    text = repr(recs)
    for enum in enums(schema):
        for sym in enum["symbols"]:
            assert repr(sym) in text, (rel, enum["name"], sym)
