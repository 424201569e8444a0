"""Values of the history index: MessagePack arrays (small, fast; the index is local and rebuilt
from the topics if lost, so its format may change with a new leading version number)."""

from __future__ import annotations

from typing import Any

import msgspec

_enc = msgspec.msgpack.Encoder().encode
_dec = msgspec.msgpack.Decoder().decode

# Commands whose id is a change's cause_id (docs/contract.md#causes); events and time are not.
COMMAND_CAUSES = frozenset({"RULE_CREATED", "RULE_UPDATED", "RULE_DELETED", "SEGMENT_AUTOMATION_ENABLED",
                            "SEGMENT_AUTOMATION_DISABLED", "SEGMENT_DELETED", "PROFILE_FIELD_DELETED"})


class ChangeRecord(msgspec.Struct, array_like=True, frozen=True):
    """One change as kept under its user (the key holds site, user, emitted_at, change_id)."""

    segment_id: str
    change: str
    cause_kind: str
    cause_id: str
    matched_rule_ids: tuple[str, ...]
    occurred_at: int
    evidence: dict[str, str] | None = None


class AuditRecord(msgspec.Struct, array_like=True, frozen=True):
    """One catalog entry: a command and its decision (the key holds site and catalog offset)."""

    command_id: str
    payload_type: str
    actor_user: str
    actor_roles: tuple[str, ...]
    issued_at: int
    processed_at: int
    status: str
    code: str | None
    message: str | None
    payload: dict[str, Any]


class RuleVersion(msgspec.Struct, array_like=True, frozen=True):
    """A rule as an accepted command left it (``deleted``: the rule, or its segment, went)."""

    processed_at: int
    command_id: str
    segment_id: str
    name: str
    condition_json: str
    enabled: bool
    deleted: bool = False


_change = msgspec.msgpack.Decoder(ChangeRecord).decode
_audit = msgspec.msgpack.Decoder(AuditRecord).decode
_rule = msgspec.msgpack.Decoder(RuleVersion).decode


def encode(value: Any) -> bytes:
    return _enc(value)


def decode(raw: bytes) -> Any:
    return _dec(raw)


def change(raw: bytes) -> ChangeRecord:
    return _change(raw)


def audit(raw: bytes) -> AuditRecord:
    return _audit(raw)


def rule(raw: bytes) -> RuleVersion:
    return _rule(raw)


def pair(raw: bytes | None) -> list[int]:
    """A two-counter value ([added, removed], [count, pruned through]); [0, 0] when absent."""
    return list(_dec(raw)) if raw else [0, 0]
