"""The history index's key spaces (one RocksDB, one leading byte per space).

Ids never contain U+0000 (processor/contract/ids.py forbids control characters), so it
separates variable-length parts; times are 8-byte big-endian epoch milliseconds so keys sort
by time; a change id (32 hex digits from the engine) is kept as its 16 bytes.

==========================================  ==================================================
``U site 0 user 0 emitted change``          one change of a user (the record)
``S site 0 segment 0 emitted change``       the same change in its segment's order (value: user)
``T emitted site 0 user 0 change``          the same change in time order (age sweep)
``X site 0 change``                         seen (exact de-duplication, kept as long as ``T``)
``N site 0 user``                           changes kept for the user, newest pruned time
``D site 0 segment 0 day``                  ADDED / REMOVED counts of one UTC day
``B site 0 segment``                        net members of the days already expired
``I site 0 command``                        ADDED / REMOVED caused by one command
``A site 0 offset``                         one catalog entry (the audit record)
``C site 0 command``                        catalog offset of a command's first entry
``Q processed site 0 offset``               audit records in time order (age sweep)
``R site 0 rule 0 offset``                  one version of a rule (accepted create/update/delete)
``P topic 0 partition``                     next offset to read (stored with the data it covers)
``M status``                                the indexer's progress (lag, records read), for readers
``M complete``                              1: the index read the changes topic from offset 0
==========================================  ==================================================
"""

from __future__ import annotations

SEP = b"\x00"
DAY_MS = 86_400_000
U, S, T, X, N, D, B, I, A, C, Q, R, P, M = (c.encode() for c in "USTXNDBIACQRPM")
STATUS = M + b"status"
COMPLETE = M + b"complete"
_HEX = frozenset("0123456789abcdef")


def ms(t: int) -> bytes:
    return max(0, t).to_bytes(8, "big")


def change_bytes(change_id: str) -> bytes:
    if len(change_id) == 32 and set(change_id) <= _HEX:
        return b"\x00" + bytes.fromhex(change_id)
    return b"\x01" + change_id.encode()


def change_str(raw: bytes) -> str:
    return raw[1:].hex() if raw[:1] == b"\x00" else raw[1:].decode()


def _j(*parts: str) -> bytes:
    return SEP.join(p.encode() for p in parts)


# ------------------------------------------------------------------ changes
def user_prefix(site: str, user: str) -> bytes:
    return U + _j(site, user) + SEP


def user_key(site: str, user: str, emitted: int, change_id: str) -> bytes:
    return user_prefix(site, user) + ms(emitted) + change_bytes(change_id)


def segment_prefix(site: str, segment: str) -> bytes:
    return S + _j(site, segment) + SEP


def segment_key(site: str, segment: str, emitted: int, change_id: str) -> bytes:
    return segment_prefix(site, segment) + ms(emitted) + change_bytes(change_id)


def time_key(emitted: int, site: str, user: str, change_id: str) -> bytes:
    return T + ms(emitted) + _j(site, user) + SEP + change_bytes(change_id)


def parse_time_key(k: bytes) -> tuple[int, str, str, str]:
    """(emitted, site, user, change id) of a ``T`` key."""
    emitted = int.from_bytes(k[1:9], "big")
    site, user, cid = k[9:].split(SEP, 2)
    return emitted, site.decode(), user.decode(), change_str(cid)


def parse_tail(k: bytes, prefix_len: int) -> tuple[int, str]:
    """(emitted, change id) after a ``U``/``S`` prefix."""
    return int.from_bytes(k[prefix_len:prefix_len + 8], "big"), change_str(k[prefix_len + 8:])


def seen_key(site: str, change_id: str) -> bytes:
    return X + site.encode() + SEP + change_bytes(change_id)


def count_key(site: str, user: str) -> bytes:
    return N + _j(site, user)


# ---------------------------------------------------------------- aggregates
def day_prefix(site: str, segment: str) -> bytes:
    return D + _j(site, segment) + SEP


def day_key(site: str, segment: str, day: int) -> bytes:
    return day_prefix(site, segment) + day.to_bytes(4, "big")


def parse_day_key(k: bytes) -> tuple[str, str, int]:
    site, segment, day = k[1:].split(SEP, 2)
    return site.decode(), segment.decode(), int.from_bytes(day, "big")


def base_key(site: str, segment: str) -> bytes:
    return B + _j(site, segment)


def impact_key(site: str, command_id: str) -> bytes:
    return I + _j(site, command_id)


# --------------------------------------------------------------------- audit
def audit_prefix(site: str) -> bytes:
    return A + site.encode() + SEP


def audit_key(site: str, offset: int) -> bytes:
    return audit_prefix(site) + offset.to_bytes(8, "big")


def command_key(site: str, command_id: str) -> bytes:
    return C + _j(site, command_id)


def audit_time_key(processed: int, site: str, offset: int) -> bytes:
    return Q + ms(processed) + site.encode() + SEP + offset.to_bytes(8, "big")


def parse_audit_time_key(k: bytes) -> tuple[int, str, int]:
    return int.from_bytes(k[1:9], "big"), k[9:-9].decode(), int.from_bytes(k[-8:], "big")


def rule_site_prefix(site: str) -> bytes:
    return R + site.encode() + SEP


def rule_key(site: str, rule: str, offset: int) -> bytes:
    return rule_site_prefix(site) + rule.encode() + SEP + offset.to_bytes(8, "big")


def parse_rule_key(k: bytes) -> tuple[str, str, int]:
    site, rest = k[1:].split(SEP, 1)
    return site.decode(), rest[:-9].decode(), int.from_bytes(rest[-8:], "big")


def position_key(topic: str, partition: int) -> bytes:
    return P + topic.encode() + SEP + partition.to_bytes(4, "big")


def end_of(prefix: bytes) -> bytes:
    """A key after every key starting with ``prefix`` (for backwards iteration from the end)."""
    return prefix + b"\xff" * 24
