"""The members CSV export's pure parts: cells made safe for spreadsheets, rows, the file name, and
the merge of every worker's member pages into one user-id order without holding the list.

Formula (CSV) injection: a spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@``
(and, in some, tab, carriage return or NUL first) as a formula. Every such cell gets a leading
single quote, as OWASP ("CSV Injection") and ASVS 1.2.10 recommend; so does a cell that already
starts with a single quote, which makes the rule reversible: drop one leading ``'`` to get the
stored value back. Quoting and line ends are RFC 4180 (the csv module, ``\\r\\n``).
"""

from __future__ import annotations

import datetime as _dt
import heapq
import re
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence
from urllib.parse import quote

from processor.api.errors import ApiError

HEADER = ["user_id", "name", "email", "member_since_utc", "matched_rule_ids"]
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\x00", "'")
BOM = "\ufeff"  # so that spreadsheets read the file as UTF-8 (names are rarely ASCII)


def neutralise(cell: str) -> str:
    """``cell`` as a spreadsheet shows it as text, never runs it as a formula."""
    return "'" + cell if cell.startswith(FORMULA_START) else cell


def utc(ms: int | None) -> str:
    """Epoch milliseconds as ``YYYY-MM-DD HH:MM:SS`` in UTC (spreadsheets read it as a time)."""
    if ms is None:
        return ""
    return _dt.datetime.fromtimestamp(ms / 1000, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def row(m: dict[str, Any]) -> list[str]:
    """One member (as a members page lists it) as CSV cells, in :data:`HEADER` order."""
    since = m.get("since")
    return [neutralise(str(x)) for x in (
        m["user_id"], m.get("name") or "", m.get("email") or "",
        utc(since if isinstance(since, int) else None), ";".join(m.get("matched_rule_ids") or []))]


def content_disposition(site_id: str, segment_id: str) -> str:
    """``attachment`` with the file name ``<site>-<segment>-members.csv`` (RFC 6266: an ASCII
    fallback, and the exact name as ``filename*`` since ids may hold any letter)."""
    name = f"{site_id}-{segment_id}-members.csv"
    fallback = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


Fetch = Callable[[str, str], Awaitable[dict[str, Any]]]  # (worker base URL, after) -> a members page


def moved(base: str) -> ApiError:
    return ApiError(503, "WORKER_UNAVAILABLE", f"the partitions of worker {base} moved during the export "
                    "(rebalance): the list could be incomplete; export again", retry_after=1)


class MergedPages:
    """Every worker's members, in pages of ``page`` fetched one at a time as the merge needs them,
    merged into user-id order. At most one page per worker is held.

    Complete or failed, never silently partial: the partitions each worker answers for must stay
    the same from its first page to its last and no two workers may answer for the same one,
    else :func:`moved` is raised (a rebalance during the export could skip or repeat users)."""

    def __init__(self, bases: Sequence[str], fetch: Fetch, page: int) -> None:
        self.bases = list(bases)
        self.fetch = fetch
        self.page = page
        self.partitions: dict[str, list[int]] = {}
        self.heap: list[tuple[str, int, int, list[dict[str, Any]]]] = []  # (user id, worker, index, page)
        self.last: dict[int, str] = {}  # per worker: the user id pushed last
        self.rows = 0

    async def start(self, gather: Callable[[list[Callable[[], Awaitable[Any]]]], Awaitable[list[Any]]]) -> None:
        """The first page of every worker, at once (a failure here is still a clean error answer)."""
        firsts = await gather([lambda b=b: self.fetch(b, "") for b in self.bases])
        for i, (base, answer) in enumerate(zip(self.bases, firsts)):
            self.partitions[base] = list(answer.get("partitions", []))
            self._push(i, answer["members"], 0)
        seen: set[int] = set()
        for base, parts in self.partitions.items():
            if seen & set(parts):
                raise moved(base)
            seen |= set(parts)

    def _push(self, worker: int, members: list[dict[str, Any]], index: int) -> None:
        if index >= len(members):
            return
        uid = members[index]["user_id"]
        if uid <= self.last.get(worker, ""):  # each worker's rows only ever go up: else the merge loops
            raise ApiError(503, "WORKER_UNAVAILABLE", f"worker {self.bases[worker]} answered members out of "
                           "order; retry", retry_after=1)
        self.last[worker] = uid
        heapq.heappush(self.heap, (uid, worker, index, members))

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        while self.heap:
            _, worker, index, members = heapq.heappop(self.heap)
            m = members[index]
            self.rows += 1
            yield m
            if index + 1 < len(members):
                self._push(worker, members, index + 1)
            elif len(members) >= self.page:  # a full page: this worker may have more
                base = self.bases[worker]
                answer = await self.fetch(base, m["user_id"])
                if list(answer.get("partitions", [])) != self.partitions[base]:
                    raise moved(base)
                self._push(worker, answer["members"], 0)
