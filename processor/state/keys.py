"""Table keys: ``b"U" + varint(len(site)) + site + user`` (UTF-8).

The length-prefixed site makes ``user_prefix(site)`` an exact prefix for
every user of one site and no other (``"a"`` vs ``"ab"`` cannot collide), so
a backfill is a RocksDB prefix scan.
"""

from __future__ import annotations

from functools import lru_cache

USER = b"U"
TIMER = b"T"  # T + be64(due epoch seconds) + user key: due re-evaluations, in time order


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key above every key that starts with ``prefix`` (an exclusive upper bound)."""
    p = prefix.rstrip(b"\xff")
    if not p:
        raise ValueError("a prefix of only 0xff bytes has no upper bound")
    return p[:-1] + bytes([p[-1] + 1])


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


@lru_cache(maxsize=4096)  # a few sites, millions of keys: computed once per site
def user_prefix(site_id: str) -> bytes:
    s = site_id.encode()
    return USER + _varint(len(s)) + s


def user_key(site_id: str, user_id: str) -> bytes:
    return user_prefix(site_id) + user_id.encode()


def parse_user_key(key: bytes) -> tuple[str, str]:
    if not key.startswith(USER):
        raise ValueError("not a user key")
    site, i = _read_lp(key, 1)
    return site, key[i:].decode()


def timer_key(due: int, ukey: bytes) -> bytes:
    return TIMER + due.to_bytes(8, "big") + ukey


def parse_timer_key(key: bytes) -> tuple[int, bytes]:
    return int.from_bytes(key[1:9], "big"), key[9:]


def timer_upper_bound(now: int) -> bytes:
    """Every timer key due at or before ``now`` sorts below this key."""
    return TIMER + (now + 1).to_bytes(8, "big")


FIRED = b"F"  # F + be64(tick offset) + user key -> be64(due): users a tick changed (see fired_key)


def fired_key(tick_offset: int, ukey: bytes) -> bytes:
    """A user whose changes the control-topic tick at ``tick_offset`` produced.

    A tick pops the timers it fires, so a replay of the same tick (after a crash between the
    state write and the output) cannot find those users again; this entry lets it re-issue their
    changes. Entries of older ticks are dropped by the next tick of the partition (by then the
    older tick was processed again or committed, and a commit waits for the output).
    """
    return FIRED + tick_offset.to_bytes(8, "big") + ukey


def parse_fired_key(key: bytes) -> tuple[int, bytes]:
    return int.from_bytes(key[1:9], "big"), key[9:]


MEMBER = b"M"  # M + lp(site) + lp(segment) + user: the members tab, a prefix scan per segment


def _lp(s: str) -> bytes:
    b = s.encode()
    return _varint(len(b)) + b


def member_prefix(site_id: str, segment_id: str | None = None) -> bytes:
    """Prefix of one segment's member keys (or of every member key of the site)."""
    return MEMBER + _lp(site_id) + (_lp(segment_id) if segment_id is not None else b"")


def member_key(site_id: str, segment_id: str, user_id: str) -> bytes:
    return member_prefix(site_id, segment_id) + user_id.encode()


def _read_lp(key: bytes, i: int) -> tuple[str, int]:
    n = shift = 0
    while True:
        b = key[i]
        n |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            break
        shift += 7
    return key[i:i + n].decode(), i + n


def parse_member_key(key: bytes) -> tuple[str, str, str]:
    site, i = _read_lp(key, 1)
    seg, i = _read_lp(key, i)
    return site, seg, key[i:].decode()
