"""Read-only queries over the users table's key spaces, for the HTTP API.

A segment's members, one user's state, a page of stored users, and full-site scans (previews,
member counts) over the partitions one worker holds. Pure: a handle is anything with ``get``,
``keys(from_key=)`` and ``items(from_key=)`` (a rocksdict ``Rdict`` in the worker), so the key
layout (processor/state/keys.py) stays known to the state package and the writer only.
"""

from __future__ import annotations

import heapq
import json

import msgspec
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence, TypeVar

from processor.state.keys import member_prefix, parse_member_key, user_key, user_prefix
from processor.state.user_state import UserState, decode_state, is_deleted

_T = TypeVar("_T")
Handle = Any  # get(key), keys(from_key=), items(from_key=): one partition's store


@dataclass(frozen=True, slots=True)
class Member:
    """One entry of a segment's members tab."""

    user_id: str
    since: int | None
    matched_rule_ids: list[str]
    cause: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "since": self.since, "matched_rule_ids": self.matched_rule_ids,
                "cause": self.cause}


class _Entry(msgspec.Struct):
    """A members-tab entry's JSON (processor/state/members.py)."""

    since: int | None = None
    rules: list[str] = msgspec.field(default_factory=list)
    cause: str | None = None


_decode_entry = msgspec.json.Decoder(_Entry).decode


def member(user_id: str, entry: bytes) -> Member:
    """A members-tab entry (processor/state/members.py) as a :class:`Member`."""
    e = _decode_entry(entry) if entry else _Entry()
    return Member(user_id, e.since, e.rules, e.cause)


def _after(prefix: bytes, after: str) -> bytes:
    """The first key past ``after`` (exclusive) within ``prefix``."""
    return prefix + after.encode() + (b"\x00" if after else b"")


def _page(handles: Sequence[Handle], prefix: bytes, after: str, limit: int, row: Callable[[bytes, bytes], _T],
          user_id: Callable[[_T], str]) -> list[_T]:
    """The first ``limit`` rows past ``after`` under ``prefix`` across the handles, in user-id order
    (each handle is read up to ``limit`` rows, then the handles' rows are merged)."""
    per_handle: list[list[_T]] = []
    for db in handles:
        rows: list[_T] = []
        for k, v in db.items(from_key=_after(prefix, after)):
            if not k.startswith(prefix) or len(rows) >= limit:
                break
            rows.append(row(k, v))
        per_handle.append(rows)
    return list(heapq.merge(*per_handle, key=user_id))[:limit]


def members(handles: Sequence[Handle], site_id: str, segment_id: str, after: str = "",
            limit: int = 50) -> list[Member]:
    """Members of one segment with user_id > ``after``, sorted by user_id, at most ``limit``."""
    def row(k: bytes, v: bytes) -> Member:
        meta = json.loads(v) if v else {}
        return Member(parse_member_key(k)[2], meta.get("since"), meta.get("rules", []), meta.get("cause"))

    return _page(handles, member_prefix(site_id, segment_id), after, limit, row, lambda m: m.user_id)


def user(handles: Sequence[Handle], site_id: str, user_id: str) -> UserState | None:
    """The stored state of one user, or None if no handle holds it."""
    key = user_key(site_id, user_id)
    for db in handles:
        raw = db.get(key)
        if raw:
            return decode_state(raw)
    return None


def users(handles: Sequence[Handle], site_id: str, after: str = "", limit: int = 50) -> list[UserState]:
    """Stored users of a site with user_id > ``after``, sorted by user_id, at most ``limit``."""
    return _page(handles, user_prefix(site_id), after, limit, lambda k, v: decode_state(v), lambda st: st.user_id)


class _InOrder:
    """Point reads of one handle in increasing key order: a member's user state is usually the
    next user key after the previous member's, so stepping an iterator forward is cheaper than a
    lookup (~0.7 us against ~3 us); after ``STEPS`` steps without reaching the key it seeks anew."""

    STEPS = 16

    def __init__(self, db: Handle) -> None:
        self.db = db
        self.it: Iterator[tuple[bytes, bytes]] | None = None
        self.key: bytes | None = None
        self.value: bytes | None = None

    def get(self, key: bytes) -> bytes | None:
        steps = 0
        while self.key is not None and self.key < key and steps < self.STEPS:
            self.key, self.value = next(self.it, (None, None))  # type: ignore[arg-type]
            steps += 1
        if self.key is None or self.key < key:
            self.it = iter(self.db.items(from_key=key))
            self.key, self.value = next(self.it, (None, None))
        return self.value if self.key == key else None


class HandleScan:
    """A full-site scan over some partitions' handles, consumed lazily by a time-sliced scanner.

    ``current`` says whether the handles are still the worker's open ones: after a rebalance the
    scan must stop rather than keep an old handle open (its partition could not be re-opened)."""

    def __init__(self, handles: Sequence[Handle], site_id: str, current: Callable[[], bool]) -> None:
        self.handles = handles
        self.site_id = site_id
        self._current = current

    def users(self) -> Iterator[UserState]:
        prefix = user_prefix(self.site_id)
        for db in self.handles:
            for k, v in db.items(from_key=prefix):
                if not k.startswith(prefix):
                    break
                yield decode_state(v)

    def user_deleted_flags(self) -> Iterator[bool]:
        prefix = user_prefix(self.site_id)
        for db in self.handles:
            for k, v in db.items(from_key=prefix):
                if not k.startswith(prefix):
                    break
                yield is_deleted(v)  # reads the flag only, not the whole state

    def partition_members(self, segment_id: str, after: str = "") -> list[Iterator[tuple[str, bytes, bytes | None]]]:
        """Per handle, lazily: ``(user_id, members-tab entry, the user's encoded state or None)``
        for each member of one segment with user_id > ``after``, in user-id order (a member's
        entry and state are in the same partition). The caller decodes only what it needs
        (:func:`member`, processor.state.user_state.decode_names)."""
        prefix = member_prefix(self.site_id, segment_id)
        uprefix = user_prefix(self.site_id)
        n = len(prefix)

        def one(db: Handle) -> Iterator[tuple[str, bytes, bytes | None]]:
            state = _InOrder(db)
            for k, v in db.items(from_key=_after(prefix, after)):
                if not k.startswith(prefix):
                    break
                uid = k[n:]
                yield uid.decode(), v, state.get(uprefix + uid)

        return [one(db) for db in self.handles]

    def segment_members(self, segment_id: str, after: str = "") -> Iterator[tuple[str, bytes, bytes | None]]:
        """:meth:`partition_members` merged into one user-id order (tuples compare by user id
        first, and a user id is in one partition only)."""
        return heapq.merge(*self.partition_members(segment_id, after))

    def member_segments(self) -> Iterator[str]:
        prefix = member_prefix(self.site_id)
        for db in self.handles:
            for k in db.keys(from_key=prefix):
                if not k.startswith(prefix):
                    break
                yield parse_member_key(k)[1]

    def current(self) -> bool:
        return self._current()
