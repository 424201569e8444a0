"""Encode and decode wire records with fastavro (schemaless binary).

A record read from a Schema Registry-framed message is decoded with its writer's schema
(:class:`WriterSchema`, built by the edge, processor/wire.py, from the schema the registry
holds under the message's id) and resolved to ours, so a producer may add optional fields.

Decoding is strict: the whole buffer must be consumed (no trailing bytes) and
every id must be a non-empty string within limits (a user event's ids also of their
character set, processor/contract/ids.py; a command's are checked by ``decide`` so that
it still gets a REJECTED result). Any failure raises
:class:`ContractError` with a code and the JSON path of the offending field,
which the edge turns into a dead-letter record.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from functools import cache
from typing import Any

import fastavro

from processor.contract import schemas
from processor.contract.exceptions import ContractError
from processor.contract.ids import check_id
from processor.contract.limits import DEFAULT_LIMITS, Limits
from processor.contract.models import (
    BATCH,
    PAYLOAD_TYPES,
    USER_EVENT_TYPES,
    Actor,
    Command,
    CommandResult,
    DeadLetter,
    MembershipChange,
    Profile,
    UserEvent,
)

_COMMAND_NS = "segment_automation.commands.v1"
_COMMAND_ADDED = ("auth_token",)  # fields appended to AutomationCommand after v1 (all optional)
# fields appended to CommandResult after v1 (all optional): a decision is written without them
_RESULT_ADDED = ("partitions_done", "partitions_total", "users_evaluated", "users_added", "users_removed",
                 "applied_at")
# Leading fields whose bytes the positional prechecks read (_precheck_user_event, _precheck_command)
_PRECHECKED = {schemas.USER_EVENT: 2, schemas.AUTOMATION_COMMAND: 5}


@dataclass(frozen=True, slots=True)
class WriterSchema:
    """The schema a record was written with (a Schema Registry's), ready to read into ours.

    ``parsed`` is None when it reads exactly like ours (same parsing canonical form): the record
    is then read with our schema alone, as fast as a schemaless one. ``positional`` says whether
    our leading fields are also the writer's, so the byte-level checks of an enum or union index
    (see :func:`_check_index`) apply; a writer that reorders them is resolved by name only.
    """

    name: str
    parsed: Any
    positional: bool


def _canonical(schema: Any) -> str:
    return fastavro.schema.to_parsing_canonical_form(fastavro.parse_schema(schema))


def _leading(schema: dict[str, Any], count: int) -> str:
    return _canonical({**schema, "fields": schema.get("fields", [])[:count]})


def writer_schema(name: str, schema: dict[str, Any] | str) -> WriterSchema:
    """``schema`` (a writer's Avro schema, JSON text or parsed) prepared for reading records into our
    schema ``name``; a schema that cannot be read into ours raises ``INCOMPATIBLE_SCHEMA``."""
    try:
        raw = schemas._strip_logical(json.loads(schema) if isinstance(schema, str) else schema)
        if not isinstance(raw, dict) or raw.get("type") != "record":
            raise ValueError("not an Avro record schema")
        parsed = fastavro.parse_schema(raw)
        ours = schemas._strip_logical(schemas.raw_schema(name))
        if fastavro.schema.to_parsing_canonical_form(parsed) == _canonical(ours):
            return WriterSchema(name, None, True)
        count = _PRECHECKED.get(name, 0)
        positional = count == 0 or _leading(raw, count) == _leading(ours, count)
    except Exception as exc:  # noqa: BLE001 - unparsable JSON or Avro: not a schema we can read
        raise ContractError("INCOMPATIBLE_SCHEMA", f"the writer's schema is not a usable Avro record schema "
                            f"({type(exc).__name__}: {exc})"[:500]) from None
    return WriterSchema(name, parsed, positional)


def _read(schema_name: str, value: bytes | None, limits: Limits, split: tuple[str, ...] = (),
          writer: WriterSchema | None = None, **kw: Any) -> Any:
    """Decode ``value``; with ``split`` (fields appended to the schema later, see
    :func:`schemas.parsed_schema_split`), a record may end before them (their defaults apply).
    With ``writer``, the record was written with that schema (it says which fields it has):
    read with it and resolved to ours."""
    if value is None:
        raise ContractError("DECODE_ERROR", "message has no value (tombstone); expected an Avro record")
    if len(value) > limits.max_message_bytes:
        raise ContractError(
            "LIMIT_EXCEEDED",
            f"message is {len(value)} bytes; the limit is {limits.max_message_bytes} bytes",
        )
    buf = io.BytesIO(value)
    try:
        if writer is not None and writer.parsed is not None:
            record = fastavro.schemaless_reader(buf, writer.parsed, schemas.parsed_schema(schema_name), **kw)
        elif writer is not None:  # written with exactly our current schema: every field is there
            record = fastavro.schemaless_reader(buf, schemas.parsed_schema(schema_name), None, **kw)
        elif split:
            before, added = schemas.parsed_schema_split(schema_name, split)
            record = fastavro.schemaless_reader(buf, before, None, **kw)
            if buf.tell() < len(value):  # written with the added fields
                # each is ["null", T]: refuse an index fastavro would read from the end (see
                # _check_index); checked for the first one, the only one so far
                cur = _Cursor(value)
                cur.pos = buf.tell()
                _check_index(cur.long(), 2, f"{split[0]} union", f"$.{split[0]}")
                record.update(fastavro.schemaless_reader(buf, added, None))
        else:
            record = fastavro.schemaless_reader(buf, schemas.parsed_schema(schema_name), None, **kw)
    except ContractError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure means "not this schema"
        if writer is not None and writer.parsed is not None and "Resolution" in type(exc).__name__:
            raise ContractError("INCOMPATIBLE_SCHEMA", f"the writer's schema does not resolve to our "
                                f"{schema_name} schema ({exc})"[:500]) from None
        raise ContractError(
            "DECODE_ERROR",
            f"value is not a valid Avro {schema_name} record ({type(exc).__name__}: {exc})"[:500],
        ) from None
    if buf.tell() != len(value):
        raise ContractError(
            "TRAILING_BYTES",
            f"value has {len(value) - buf.tell()} bytes after the {schema_name} record; wrong schema?",
        )
    return record


class _Cursor:
    """Minimal Avro binary reader for the few leading fields whose indexes we must check."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def long(self) -> int:
        shift = n = 0
        while True:
            if self.pos >= len(self.data) or shift > 63:
                raise ContractError("DECODE_ERROR", "truncated or malformed Avro varint")
            b = self.data[self.pos]
            self.pos += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return (n >> 1) ^ -(n & 1)

    def skip_string(self) -> None:
        n = self.long()
        if n < 0:
            raise ContractError("DECODE_ERROR", "negative string length")
        self.pos += n

    def skip_string_array(self) -> None:
        while True:
            count = self.long()
            if count == 0:
                return
            if count < 0:  # block with byte size
                self.long()
                count = -count
            for _ in range(count):
                self.skip_string()


def _check_index(value: int, size: int, what: str, path: str) -> None:
    # fastavro 1.13 reads a negative index as counting from the end (-1 = last symbol), so a
    # single corrupt byte could turn USER_CREATED into USER_DELETED: refuse it explicitly.
    if not 0 <= value < size:
        raise ContractError("DECODE_ERROR", f"{what} index {value} is out of range 0..{size - 1}", path)


def _precheck_user_event(value: bytes) -> None:
    cur = _Cursor(value)
    cur.skip_string()  # event_id
    _check_index(cur.long(), len(USER_EVENT_TYPES), "event_type enum", "$.event_type")


def _precheck_command(value: bytes) -> None:
    cur = _Cursor(value)
    cur.skip_string()  # command_id
    cur.skip_string()  # site_id
    cur.long()  # issued_at
    cur.skip_string()  # actor.user_id
    cur.skip_string_array()  # actor.roles
    _check_index(cur.long(), _payload_branches(), "payload union", "$.payload")


@cache
def _payload_branches() -> int:
    """How many payload records the AutomationCommand union has (the schema's count: every
    branch this version can decode, the Batch included)."""
    return len(next(f for f in schemas.raw_schema(schemas.AUTOMATION_COMMAND)["fields"]
                    if f["name"] == "payload")["type"])


def _write(schema_name: str, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schemas.parsed_schema(schema_name), record)
    return buf.getvalue()


def _check_id(value: str, path: str, limits: Limits) -> None:
    if not value or not value.strip():
        raise ContractError("EMPTY_ID", f"{path.rsplit('.', 1)[-1]} must be a non-empty string", path)
    if len(value) > limits.max_id_chars:
        raise _over_limit(f"id is {len(value)} characters", limits.max_id_chars, path)


def _over_limit(what: str, limit: int, path: str) -> ContractError:
    """LIMIT_EXCEEDED for ``what`` (e.g. "value is 300 characters") against ``limit``."""
    return ContractError("LIMIT_EXCEEDED", f"{what}; the limit is {limit}", path)


def _check_profile(profile: Profile, limits: Limits) -> None:
    if len(profile) > limits.max_profile_entries:
        raise _over_limit(f"profile has {len(profile)} fields", limits.max_profile_entries, "$.profile")
    max_name, max_chars, max_items = limits.max_field_name_chars, limits.max_string_chars, limits.max_array_items
    for name, val in profile.items():  # every event passes here: build the error path only on failure
        if not name or len(name) > max_name:
            raise ContractError("INVALID_FIELD", "profile field names must be 1-255 characters", f"$.profile.{name}")
        kind = type(val)
        if kind is str and len(val) > max_chars:  # type: ignore[arg-type]
            raise _over_limit(f"value is {len(val)} characters", max_chars, f"$.profile.{name}")  # type: ignore[arg-type]
        if kind is list:
            if len(val) > max_items:  # type: ignore[arg-type]
                raise _over_limit(f"array has {len(val)} items", max_items, f"$.profile.{name}")  # type: ignore[arg-type]
            for i, item in enumerate(val):  # type: ignore[arg-type]
                if len(item) > max_chars:
                    raise _over_limit(f"item is {len(item)} characters", max_chars, f"$.profile.{name}[{i}]")


def decode_key(key: bytes | None) -> str | None:
    """Keys are UTF-8 strings; ``None`` when absent or not UTF-8."""
    if key is None:
        return None
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return None


# ---------------------------------------------------------------- user events


def decode_user_event(key: bytes | None, value: bytes | None, limits: Limits = DEFAULT_LIMITS,
                      writer: WriterSchema | None = None) -> UserEvent:
    """Decode and validate a ``UserEvent``; the key must be ``site_id:user_id``. ``writer``: the
    schema the record was written with (Schema Registry framing; ``value`` is then the Avro body)."""
    rec = _read(schemas.USER_EVENT, value, limits, writer=writer)
    if rec["event_type"] not in USER_EVENT_TYPES:  # UNKNOWN: the enum's default, never handled
        raise ContractError("DECODE_ERROR", f"event_type {rec['event_type']} is not one this processor handles "
                            f"({', '.join(USER_EVENT_TYPES)})", "$.event_type")
    if writer is None or writer.positional:
        _precheck_user_event(value)  # type: ignore[arg-type]
    _check_id(rec["event_id"], "$.event_id", limits)
    _check_id(rec["site_id"], "$.site_id", limits)
    _check_id(rec["user_id"], "$.user_id", limits)
    for name in ("event_id", "site_id", "user_id"):  # the character sets (processor/contract/ids.py)
        check_id(rec[name], name, f"$.{name}")
    _check_profile(rec["profile"], limits)
    expected = f"{rec['site_id']}:{rec['user_id']}"
    got = decode_key(key)
    if got != expected:
        raise ContractError(
            "KEY_MISMATCH",
            f"message key {got!r} does not match the value; expected {expected!r} (site_id:user_id)",
            "$key",
        )
    return UserEvent(
        event_id=rec["event_id"],
        event_type=rec["event_type"],
        site_id=rec["site_id"],
        user_id=rec["user_id"],
        occurred_at=rec["occurred_at"],
        profile=rec["profile"],
    )


def encode_user_event(ev: UserEvent) -> bytes:
    return _write(
        schemas.USER_EVENT,
        {
            "event_id": ev.event_id,
            "event_type": ev.event_type,
            "site_id": ev.site_id,
            "user_id": ev.user_id,
            "occurred_at": ev.occurred_at,
            "profile": ev.profile,
        },
    )


def user_event_key(site_id: str, user_id: str) -> bytes:
    return f"{site_id}:{user_id}".encode()


# ------------------------------------------------------------------- commands


def decode_command(value: bytes | None, limits: Limits = DEFAULT_LIMITS, writer: WriterSchema | None = None
                   ) -> Command:
    """Decode an ``AutomationCommand``; ids needed to address a result must be non-empty.

    The key/site agreement is checked by the caller, which can still publish a
    REJECTED result because the command is addressable. ``writer``: as for user events.
    """
    rec = _read(schemas.AUTOMATION_COMMAND, value, limits, _COMMAND_ADDED, writer=writer, return_record_name=True)
    if writer is None or writer.positional:
        _precheck_command(value)  # type: ignore[arg-type]
    _check_id(rec["command_id"], "$.command_id", limits)
    _check_id(rec["site_id"], "$.site_id", limits)
    name, payload = rec["payload"]
    short = name.rsplit(".", 1)[-1]
    if short == BATCH:  # operations as {"type", "payload"} (the catalog log's form)
        payload = {"operations": [{"type": n.rsplit(".", 1)[-1], "payload": p} for n, p in payload["operations"]]}
    elif short not in PAYLOAD_TYPES:  # pragma: no cover - the schema union forbids it
        raise ContractError("DECODE_ERROR", f"unknown payload type {name}", "$.payload")
    if short == "UpsertProfileField" and payload.get("datatype") == "UNKNOWN":
        # The enum's default: what a symbol this version does not know reads as. Like an unknown
        # event_type it is undecodable here (dead letter with the original bytes, replayable after
        # an upgrade), never stored as some other type.
        raise ContractError("DECODE_ERROR", "datatype UNKNOWN is not one this processor handles (the "
                            "producer may use a newer schema)", "$.payload.datatype")
    return Command(
        command_id=rec["command_id"],
        site_id=rec["site_id"],
        issued_at=rec["issued_at"],
        actor=Actor(rec["actor"]["user_id"], tuple(rec["actor"]["roles"])),
        payload_type=short,
        payload=payload,
        auth_token=rec.get("auth_token"),
    )


def encode_command(cmd: Command, current_schema: bool = False) -> bytes:
    """Without an ``auth_token`` the bytes are those of the schema before the field existed, so
    consumers built on that version keep reading every command that does not carry one.
    ``current_schema``: always write the current schema (a framed record names its schema, so
    the bytes must be exactly that schema's)."""
    payload = _wire_payload(cmd.payload_type, cmd.payload)
    record = {
        "command_id": cmd.command_id,
        "site_id": cmd.site_id,
        "issued_at": cmd.issued_at,
        "actor": {"user_id": cmd.actor.user_id, "roles": list(cmd.actor.roles)},
        "payload": (f"{_COMMAND_NS}.{cmd.payload_type}", payload),
    }
    if cmd.auth_token is None and not current_schema:
        v1, _ = schemas.parsed_schema_split(schemas.AUTOMATION_COMMAND, _COMMAND_ADDED)
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, v1, record)
        return buf.getvalue()
    return _write(schemas.AUTOMATION_COMMAND, {**record, "auth_token": cmd.auth_token})


def _wire_payload(ptype: str, payload: dict[str, Any]) -> Any:
    payload = dict(payload)
    if ptype == "UpsertProfileField":
        payload.setdefault("options", [])
    elif ptype == BATCH:
        payload = {"operations": [(f"{_COMMAND_NS}.{op['type']}", _wire_payload(op["type"], op["payload"]))
                                  for op in payload["operations"]]}
    return payload


# -------------------------------------------------------------------- outputs


_CHANGE_ADDED = ("evidence",)  # fields appended to MembershipChange after v1 (all optional)


def encode_membership_change(ch: MembershipChange) -> bytes:
    """The current schema: the bytes of v1, then the appended fields (a reader of v1 reads the
    record and leaves them, docs/contract.md#schema-evolution)."""
    return _write(
        schemas.MEMBERSHIP_CHANGE,
        {
            "change_id": ch.change_id,
            "site_id": ch.site_id,
            "segment_id": ch.segment_id,
            "user_id": ch.user_id,
            "change": ch.change,
            "cause_kind": ch.cause_kind,
            "cause_id": ch.cause_id,
            "matched_rule_ids": list(ch.matched_rule_ids),
            "occurred_at": ch.occurred_at,
            "emitted_at": ch.emitted_at,
            "evidence": None if ch.evidence is None else dict(ch.evidence),
        },
    )


def decode_membership_change(value: bytes, writer: WriterSchema | None = None) -> MembershipChange:
    """A change of any released version: one written before ``evidence`` existed reads it as None."""
    rec = _read(schemas.MEMBERSHIP_CHANGE, value, DEFAULT_LIMITS, _CHANGE_ADDED, writer=writer)
    rec["matched_rule_ids"] = tuple(rec["matched_rule_ids"])
    ev = rec.get("evidence")
    rec["evidence"] = None if ev is None else tuple(sorted(ev.items()))
    return MembershipChange(**rec)


def encode_command_result(res: CommandResult, current_schema: bool = False) -> bytes:
    """A decision (ACCEPTED / REJECTED, no progress) is written with the v1 layout: the bytes it
    always had, which every reader of v1 reads; a progress record (APPLYING / APPLIED) with the
    fields appended since. ``current_schema``: always the current schema (a framed record)."""
    record = {
        "command_id": res.command_id,
        "site_id": res.site_id,
        "status": res.status,
        "code": res.code,
        "message": res.message,
        "processed_at": res.processed_at,
    }
    added = {f: getattr(res, f) for f in _RESULT_ADDED}
    if all(v is None for v in added.values()) and not current_schema:
        v1, _ = schemas.parsed_schema_split(schemas.COMMAND_RESULT, _RESULT_ADDED)
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, v1, record)
        return buf.getvalue()
    return _write(schemas.COMMAND_RESULT, {**record, **added})


def decode_command_result(value: bytes, writer: WriterSchema | None = None) -> CommandResult:
    return CommandResult(**_read(schemas.COMMAND_RESULT, value, DEFAULT_LIMITS, _RESULT_ADDED, writer=writer))


def encode_dead_letter(dl: DeadLetter) -> bytes:
    return _write(
        schemas.DEAD_LETTER,
        {
            "source_topic": dl.source_topic,
            "source_partition": dl.source_partition,
            "source_offset": dl.source_offset,
            "key": dl.key,
            "value": dl.value,
            "error_code": dl.error_code,
            "error": dl.error,
            "failed_at": dl.failed_at,
            "key_size": dl.key_size,
            "key_sha256": dl.key_sha256,
            "value_size": dl.value_size,
            "value_sha256": dl.value_sha256,
            "truncated": None if dl.truncated is None else list(dl.truncated),
        },
    )


# Optional fields added to dead_letter.avsc after its first version (null-union, default null).
DEAD_LETTER_ADDED_FIELDS = ("key_size", "key_sha256", "value_size", "value_sha256", "truncated")


@cache
def _dead_letter_v1() -> Any:
    """The dead-letter schema as first published (without the added fields): the writer schema
    of dead letters already on the topic when a worker with this code starts."""
    raw = schemas.raw_schema(schemas.DEAD_LETTER)
    v1 = {**raw, "fields": [f for f in raw["fields"] if f["name"] not in DEAD_LETTER_ADDED_FIELDS]}
    return fastavro.parse_schema(schemas._strip_logical(v1))


def decode_dead_letter(value: bytes, writer: WriterSchema | None = None) -> DeadLetter:
    """Read a dead letter of the current schema, or one written before its optional fields
    existed (those then read as null, by Avro schema resolution)."""
    limits = Limits(max_message_bytes=1 << 30)
    try:
        record = _read(schemas.DEAD_LETTER, value, limits, writer=writer)
    except ContractError as err:
        if writer is not None:
            raise
        buf = io.BytesIO(value)
        try:
            record = fastavro.schemaless_reader(buf, _dead_letter_v1(), schemas.parsed_schema(schemas.DEAD_LETTER))
        except Exception:  # noqa: BLE001 - not a first-version record either: report the current schema's error
            raise err from None
        if buf.tell() != len(value):
            raise err from None
    if record["truncated"] is not None:
        record["truncated"] = tuple(record["truncated"])
    return DeadLetter(**record)
