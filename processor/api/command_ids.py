"""API command ids tell when they were issued, so a status poll can tell "too old" from "pending".

An API id is ``api-`` plus a UUIDv7 (RFC 9562) in 32 hex digits: the same shape as before
(which was a random UUIDv4), with the issue time in milliseconds in its first 48 bits.
"""

from __future__ import annotations

import os
import re
import time

_API_V7 = re.compile(r"api-[0-9a-f]{12}7[0-9a-f]{3}[89ab][0-9a-f]{15}")
# How far apart two API workers' clocks (and their produce order) may be: an id issued this much
# later than another was produced after it.
CLOCK_SKEW_MS = 60_000


def new_command_id(now_ms: int | None = None) -> str:
    """A fresh API command id issued at ``now_ms`` (default: now)."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    rand = int.from_bytes(os.urandom(10), "big")  # 74 of these 80 bits are used
    value = ((ms & (2**48 - 1)) << 80 | 0x7 << 76 | (rand >> 62 & 0xFFF) << 64
             | 0b10 << 62 | rand & (2**62 - 1))
    return f"api-{value:032x}"


def issued_ms(command_id: str) -> int | None:
    """When the API issued ``command_id`` (ms since the epoch); None for any other id (ids of
    other producers, and API ids from before ids carried the time)."""
    if not _API_V7.fullmatch(command_id):
        return None
    return int(command_id[4:16], 16)


def expired(command_id: str, now_ms: int, ttl_ms: int, oldest_kept_id: str | None) -> bool:
    """Whether a command id that is not in the de-duplication window is past tracking, not pending.

    True for an API id issued more than ``ttl_ms`` ago, or issued clearly before the site's oldest
    kept API command (the site's API commands share one commands partition and are decided in
    order, so an id produced before a kept one was decided before it, and has been forgotten).
    """
    issued = issued_ms(command_id)
    if issued is None:
        return False
    if now_ms - issued > ttl_ms:
        return True
    oldest = issued_ms(oldest_kept_id) if oldest_kept_id else None
    return oldest is not None and oldest > issued + CLOCK_SKEW_MS
