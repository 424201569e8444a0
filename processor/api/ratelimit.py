"""Write rate limit of the admin API: commands per token subject and site, per worker.

Every accepted write becomes a command that every worker keeps a record of, so an unbounded
stream of writes from one token costs every worker memory. A moving one-minute window (the
``limits`` library, in memory) admits ``API_WRITE_RATE_PER_MINUTE`` writes per (site, subject);
the next one answers 429 ``RATE_LIMITED`` with ``Retry-After`` (seconds until the oldest write in
the window leaves it). ``?dry_run=true`` is not counted: it writes nothing (the console validates
with it as an admin types). 0 turns the limit off.
"""

from __future__ import annotations

import json
import math
import time

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from processor.api.errors import ApiError


class WriteLimiter:
    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._item = RateLimitItemPerMinute(per_minute) if per_minute > 0 else None
        self._limiter = MovingWindowRateLimiter(MemoryStorage()) if self._item else None

    def hit(self, site_id: str, subject: str) -> None:
        """Count one write, or raise 429 if the window is full (a refused write is not counted)."""
        if self._item is None or self._limiter is None:
            return
        key = json.dumps([site_id, subject])  # one identifier: ids may contain the library's "/" separator
        if self._limiter.hit(self._item, key):
            return
        reset_at, _ = self._limiter.get_window_stats(self._item, key)
        wait = max(1, math.ceil(reset_at - time.time()))
        raise ApiError(429, "RATE_LIMITED", f"at most {self.per_minute} writes per minute per token subject and "
                       f"site (API_WRITE_RATE_PER_MINUTE); retry in {wait} s", retry_after=wait)
