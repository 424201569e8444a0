"""One user's stored state, behind a one-byte format version.

Format 3 (written) is a MessagePack array of the fields of :class:`_Stored`, in order: the state is
internal, read and written on every event, and MessagePack costs a fraction of Avro's time.
Formats 1 and 2 (Avro, ``schemas/internal/``) are still read: changelogs and local stores
written by older workers hold them. A change of layout gets a new format byte.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import fastavro
import msgspec

from processor.contract import schemas
from processor.contract.models import Profile

FORMAT_V1 = b"\x01"  # Avro, read only (no last_control_offset)
FORMAT_V2 = b"\x02"  # Avro, read only
FORMAT_V3 = b"\x03"  # MessagePack
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
    # The profile values the decision read (processor/membership/evidence.py); None in facts
    # recorded before evidence existed. Stored as a 9th array item only when set, so a fact
    # without it keeps its bytes, and an older worker reading a newer state ignores it.
    evidence: tuple[tuple[str, str], ...] | None = None


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


class _StoredFact(msgspec.Struct, array_like=True):
    member: bool
    change_id: str
    change: str
    cause_kind: str
    cause_id: str
    matched_rule_ids: tuple[str, ...]
    occurred_at: int
    emitted_at: int
    evidence: tuple[tuple[str, str], ...] | None = None  # appended: absent in older states


class _Stored(msgspec.Struct, array_like=True):
    """Format 3's layout: a MessagePack array of these fields in this order (typed on decode)."""

    site_id: str
    user_id: str
    deleted: bool
    profile: dict[str, str | int | float | bool | list[str] | None]
    last_offset: int
    next_check_at: int
    recent_event_ids: list[str]
    facts: dict[str, _StoredFact]
    last_control_offset: int


class _Head(msgspec.Struct, array_like=True):
    """The first fields of :class:`_Stored` (the rest of the array is skipped unread)."""

    site_id: str
    user_id: str
    deleted: bool


class _Names(msgspec.Struct):
    """The profile fields a listing shows; every other field is skipped without being built."""

    firstname: Any = None
    lastname: Any = None
    email: Any = None


class _Who(msgspec.Struct, array_like=True):
    """The fields of :class:`_Stored` up to the profile (the facts after it are skipped unread)."""

    site_id: str
    user_id: str
    deleted: bool
    profile: _Names


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(_Stored).decode
_decode_head = msgspec.msgpack.Decoder(_Head).decode
_decode_who = msgspec.msgpack.Decoder(_Who).decode


def encode_state(st: UserState) -> bytes:
    """The state's stored bytes (format 3)."""
    return FORMAT_V3 + _encode((
        st.site_id, st.user_id, st.deleted, st.profile, st.last_offset, st.next_check_at, st.recent_event_ids,
        {seg: _fact_row(f) for seg, f in st.facts.items()},
        st.last_control_offset,
    ))


def _fact_row(f: Fact) -> tuple:  # type: ignore[type-arg]
    row = (f.member, f.change_id, f.change, f.cause_kind, f.cause_id, f.matched_rule_ids, f.occurred_at, f.emitted_at)
    return row if f.evidence is None else (*row, f.evidence)


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
    """The ``deleted`` flag of an encoded state without decoding the rest: every format starts
    with site_id, user_id, deleted. Counting a site's live users reads only this."""
    fmt = raw[:1]
    if fmt == FORMAT_V3:
        try:
            return _decode_head(memoryview(raw)[1:]).deleted
        except msgspec.DecodeError as err:
            raise ValueError(f"corrupt user state (format 3): {err}") from err
    if fmt not in (FORMAT_V1, FORMAT_V2):
        raise ValueError(f"unknown user state format {fmt!r}")
    return raw[_skip_string(raw, _skip_string(raw, 1))] == 1


NAME_FIELDS = ("firstname", "lastname", "email")


def decode_names(raw: bytes) -> Profile:
    """``firstname``, ``lastname`` and ``email`` of an encoded state's profile (those it holds),
    decoding nothing else: member listings and the member search read only these."""
    if raw[:1] == FORMAT_V3:
        try:
            names = _decode_who(memoryview(raw)[1:]).profile
        except msgspec.DecodeError as err:
            raise ValueError(f"corrupt user state (format 3): {err}") from err
        return {k: v for k in NAME_FIELDS if (v := getattr(names, k)) is not None}
    profile = decode_state(raw).profile
    return {k: profile[k] for k in NAME_FIELDS if profile.get(k) is not None}


def decode_state(raw: bytes) -> UserState:
    """A state from its stored bytes in any known format; ValueError for anything else."""
    fmt = raw[:1]
    if fmt == FORMAT_V3:
        try:
            rec = _decode(memoryview(raw)[1:])
        except msgspec.DecodeError as err:  # ValidationError included
            raise ValueError(f"corrupt user state (format 3): {err}") from err
        return UserState(rec.site_id, rec.user_id, rec.deleted, rec.profile, rec.last_offset, rec.next_check_at,
                         rec.recent_event_ids,
                         {seg: Fact(f.member, f.change_id, f.change, f.cause_kind, f.cause_id, f.matched_rule_ids,
                                    f.occurred_at, f.emitted_at, f.evidence) for seg, f in rec.facts.items()},
                         rec.last_control_offset)
    return _decode_avro(fmt, raw)


def _decode_avro(fmt: bytes, raw: bytes) -> UserState:
    """Formats 1 and 2, written by older workers (format 1 resolved to 2: defaults fill new fields)."""
    if fmt == FORMAT_V2:
        rec = fastavro.schemaless_reader(io.BytesIO(raw[1:]), schemas.parsed_schema(schemas.USER_STATE), None)
    elif fmt == FORMAT_V1:
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
