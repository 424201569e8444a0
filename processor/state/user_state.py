"""One user's stored state, Avro-encoded behind a one-byte format version."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import fastavro

from processor.contract import schemas
from processor.contract.models import Profile

FORMAT_V1 = b"\x01"  # read only (no last_control_offset)
FORMAT_V2 = b"\x02"
RECENT_EVENT_IDS = 32  # duplicates arrive close together; older ones are caught by offsets


@dataclass(slots=True)
class Fact:
    """The last change this processor emitted for one segment of one user."""

    member: bool
    change_id: str
    change: str
    cause_kind: str
    cause_id: str
    matched_rule_ids: tuple[str, ...]
    occurred_at: int
    emitted_at: int


@dataclass(slots=True)
class UserState:
    site_id: str
    user_id: str
    deleted: bool = False
    profile: Profile = field(default_factory=dict)
    last_offset: int = -1  # highest user-event offset applied
    next_check_at: int = 0  # epoch seconds; 0 = no time-relative rule can flip
    recent_event_ids: list[str] = field(default_factory=list)
    facts: dict[str, Fact] = field(default_factory=dict)
    last_control_offset: int = -1  # highest control offset (backfill/tick) that changed facts

    def remember_event(self, event_id: str) -> None:
        self.recent_event_ids.append(event_id)
        del self.recent_event_ids[:-RECENT_EVENT_IDS]

    def is_member(self, segment_id: str) -> bool:
        f = self.facts.get(segment_id)
        return bool(f and f.member)


def encode_state(st: UserState) -> bytes:
    buf = io.BytesIO()
    buf.write(FORMAT_V2)
    fastavro.schemaless_writer(
        buf,
        schemas.parsed_schema(schemas.USER_STATE),
        {
            "site_id": st.site_id,
            "user_id": st.user_id,
            "deleted": st.deleted,
            "profile": st.profile,
            "last_offset": st.last_offset,
            "next_check_at": st.next_check_at,
            "recent_event_ids": st.recent_event_ids,
            "facts": {
                seg: {
                    "member": f.member,
                    "change_id": f.change_id,
                    "change": f.change,
                    "cause_kind": f.cause_kind,
                    "cause_id": f.cause_id,
                    "matched_rule_ids": list(f.matched_rule_ids),
                    "occurred_at": f.occurred_at,
                    "emitted_at": f.emitted_at,
                }
                for seg, f in st.facts.items()
            },
            "last_control_offset": st.last_control_offset,
        },
    )
    return buf.getvalue()


def _skip_string(raw: bytes, i: int) -> int:
    """Index after the Avro string at ``raw[i]`` (zigzag varint length, then the bytes)."""
    n = shift = 0
    while True:
        b = raw[i]
        i += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
    return i + ((n >> 1) ^ -(n & 1))


def is_deleted(raw: bytes) -> bool:
    """The ``deleted`` flag of an encoded state without decoding the rest: both formats start
    with site_id, user_id, deleted. Counting a site's live users reads only this."""
    if raw[:1] not in (FORMAT_V1, FORMAT_V2):
        raise ValueError(f"unknown user state format {raw[:1]!r}")
    return raw[_skip_string(raw, _skip_string(raw, 1))] == 1


def decode_state(raw: bytes) -> UserState:
    fmt = raw[:1]
    if fmt == FORMAT_V2:
        rec = fastavro.schemaless_reader(io.BytesIO(raw[1:]), schemas.parsed_schema(schemas.USER_STATE), None)
    elif fmt == FORMAT_V1:  # written by an older worker: resolve to format 2 (defaults fill new fields)
        rec = fastavro.schemaless_reader(io.BytesIO(raw[1:]), schemas.parsed_schema(schemas.USER_STATE_V1),
                                         schemas.parsed_schema(schemas.USER_STATE))
    else:
        raise ValueError(f"unknown user state format {fmt!r}")
    return UserState(
        site_id=rec["site_id"],
        user_id=rec["user_id"],
        deleted=rec["deleted"],
        profile=rec["profile"],
        last_offset=rec["last_offset"],
        next_check_at=rec["next_check_at"],
        recent_event_ids=rec["recent_event_ids"],
        facts={
            seg: Fact(
                f["member"], f["change_id"], f["change"], f["cause_kind"], f["cause_id"],
                tuple(f["matched_rule_ids"]), f["occurred_at"], f["emitted_at"],
            )
            for seg, f in rec["facts"].items()
        },
        last_control_offset=rec["last_control_offset"],
    )
