"""Typed views of the wire records (frozen dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

ProfileValue = Union[None, str, int, float, bool, list[str]]
Profile = dict[str, ProfileValue]

USER_EVENT_TYPES = ("USER_CREATED", "USER_UPDATED", "USER_DELETED")

PAYLOAD_TYPES = (
    "UpsertProfileField",
    "DeleteProfileField",
    "UpsertSegment",
    "DeleteSegment",
    "EnableSegmentAutomation",
    "DisableSegmentAutomation",
    "CreateRule",
    "UpdateRule",
    "DeleteRule",
    "SetSiteSettings",  # appended after v1 (the union's last branch)
)
# A payload carrying many of the above, decided as one command (processor/catalog/batch.py)
BATCH = "Batch"


@dataclass(frozen=True, slots=True)
class UserEvent:
    event_id: str
    event_type: str
    site_id: str
    user_id: str
    occurred_at: int
    profile: Profile = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Actor:
    user_id: str
    roles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Command:
    """An AutomationCommand; ``payload_type`` is the union branch's record name.

    ``auth_token`` (the issuer's JWT, checked with COMMANDS_REQUIRE_TOKEN=1) is a credential:
    it is left out of ``repr``, equality and :meth:`to_dict` (the catalog log's form)."""

    command_id: str
    site_id: str
    issued_at: int
    actor: Actor
    payload_type: str
    payload: dict[str, Any]
    auth_token: str | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "command_id": self.command_id,
            "site_id": self.site_id,
            "issued_at": self.issued_at,
            "actor": {"user_id": self.actor.user_id, "roles": list(self.actor.roles)},
            "payload_type": self.payload_type,
            "payload": dict(self.payload),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Command":
        return cls(
            command_id=d["command_id"],
            site_id=d["site_id"],
            issued_at=int(d["issued_at"]),
            actor=Actor(d["actor"]["user_id"], tuple(d["actor"]["roles"])),
            payload_type=d["payload_type"],
            payload=dict(d["payload"]),
        )


@dataclass(frozen=True, slots=True)
class MembershipChange:
    change_id: str
    site_id: str
    segment_id: str
    user_id: str
    change: str  # ADDED | REMOVED
    cause_kind: str
    cause_id: str
    matched_rule_ids: tuple[str, ...]
    occurred_at: int
    emitted_at: int
    # Appended (optional Avro field, null in changes written before it): the profile values the
    # decision read, as sorted (field, JSON text) pairs (processor/membership/evidence.py).
    evidence: tuple[tuple[str, str], ...] | None = None


@dataclass(frozen=True, slots=True)
class CommandResult:
    command_id: str
    site_id: str
    status: str  # ACCEPTED | REJECTED (the decision); APPLYING | APPLIED (its backfill, later records)
    code: str | None
    message: str | None
    processed_at: int
    # the backfill's progress (APPLYING / APPLIED records only; None on a decision)
    partitions_done: int | None = None
    partitions_total: int | None = None
    users_evaluated: int | None = None
    users_added: int | None = None
    users_removed: int | None = None
    applied_at: int | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    source_topic: str
    source_partition: int
    source_offset: int
    key: bytes | None
    value: bytes | None
    error_code: str
    error: str
    failed_at: int
    # Added in place (optional Avro fields, null in dead letters written before them): the whole
    # input's sizes and SHA-256 (hex), and which fields were cut to fit the producer's size limit
    # (processor/contract/dead_letter_bounds.py).
    key_size: int | None = None
    key_sha256: str | None = None
    value_size: int | None = None
    value_sha256: str | None = None
    truncated: tuple[str, ...] | None = None
