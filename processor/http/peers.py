"""Reads gathered from every worker: this one answers by a direct call, peers over HTTP.

Each internal read is a typed request (:class:`InternalRead`): for this worker it goes straight
to the local answer; for a peer it becomes a call of that peer's ``/internal/...`` endpoint,
bounded in time and size, whose answer is checked against the read's shape.

A read that gathers from every worker must answer even when one of them is slow, gone or
broken: every way a peer can fail (no answer within the timeout, refused or reset connection,
a status other than 200, a body that is not JSON or not the expected shape, any other error)
becomes ``503 WORKER_UNAVAILABLE`` with ``Retry-After``, never a 500 and never a partial answer.
A peer that refuses a scan because it already runs its maximum passes that on as 429
``SCAN_BUSY``.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, ClassVar
from urllib.parse import quote

import aiohttp

from processor.api.errors import ApiError

MAX_ANSWER_BYTES = 16 * 1024 * 1024  # a members page of 500 or a preview is a few hundred KiB at most
RETRY_AFTER_S = 1

Shape = Callable[[Any], bool]


def unavailable(base: str, why: str) -> ApiError:
    return ApiError(503, "WORKER_UNAVAILABLE", f"worker {base} {why}; retry", retry_after=RETRY_AFTER_S)


class PeerClient:
    """One HTTP client session per worker, opened on first use."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(self, base: str, method: str, path: str, headers: dict[str, str], payload: Any,
                   timeout_s: float, shape: Shape) -> dict[str, Any]:
        """The peer's JSON answer, checked by ``shape``; an :class:`ApiError` for every failure."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        try:
            async with asyncio.timeout(timeout_s):
                async with self._session.request(method, base + path, headers=headers, json=payload,
                                                 allow_redirects=False) as r:
                    status, retry_after = r.status, r.headers.get("Retry-After", "")
                    raw = bytearray()
                    async for chunk in r.content.iter_any():
                        raw += chunk
                        if len(raw) > MAX_ANSWER_BYTES:
                            break
        except TimeoutError:
            raise unavailable(base, f"did not answer within {timeout_s:g} s") from None
        except Exception as exc:  # noqa: BLE001 - refused, reset, bad HTTP, ...: the peer is unavailable
            raise unavailable(base, f"could not be reached ({type(exc).__name__})") from None
        if status == 429:
            raise ApiError(429, "SCAN_BUSY", f"worker {base} is already running its maximum of full-site scans; "
                           "retry shortly", retry_after=int(retry_after) if retry_after.isdigit() else 2)
        if status != 200:
            raise unavailable(base, f"answered {status}")
        if len(raw) > MAX_ANSWER_BYTES:
            raise unavailable(base, f"answered more than {MAX_ANSWER_BYTES} bytes")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise unavailable(base, "answered with something that is not JSON") from None
        if not isinstance(body, dict) or not shape(body):
            raise unavailable(base, "answered with an unexpected shape")
        return body


async def gather_all(calls: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Run every call at once and return their answers in order. The first failure cancels the
    others (a local scan gives its slot back at once) and is raised."""
    tasks = [asyncio.ensure_future(c()) for c in calls]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for t in tasks:
            t.cancel()
    failed = [t.exception() for t in tasks if t.done() and not t.cancelled() and t.exception() is not None]
    if failed:
        try:
            raise failed[0]
        finally:  # no cycle through this frame: a failed scan's frames (and the database handles
            del failed, tasks  # they hold) are freed as soon as the error is answered
    return [t.result() for t in tasks]


# -------------------------------------------------- shapes of the internal answers (what the
# gathering side reads from each; checked so a broken peer cannot make it fail with a 500)
def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _strs(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def counts_shape(p: dict[str, Any]) -> bool:
    m = p.get("members")
    return (isinstance(m, dict) and all(_int(n) for n in m.values()) and _int(p.get("users"))
            and _int(p.get("deleted_users", 0)))


def _opt_str(v: Any) -> bool:
    return v is None or isinstance(v, str)


def members_shape(p: dict[str, Any]) -> bool:
    m = p.get("members")
    parts = p.get("partitions", [])
    return (isinstance(m, list) and all(isinstance(x, dict) and isinstance(x.get("user_id"), str)
                                        and _opt_str(x.get("name")) and _opt_str(x.get("email")) for x in m)
            and isinstance(parts, list) and all(_int(n) for n in parts))


_FACT = {"member": bool, "change": str, "cause_kind": str, "cause_id": str, "matched_rule_ids": list}


def user_shape(p: dict[str, Any]) -> bool:
    if not isinstance(p.get("found"), bool):
        return False
    if not p["found"]:
        return True
    facts = p.get("facts")
    return (isinstance(p.get("deleted"), bool) and isinstance(p.get("profile"), dict) and isinstance(facts, dict)
            and all(isinstance(f, dict) and all(isinstance(f.get(k), t) for k, t in _FACT.items())
                    for f in facts.values()))


def profiles_shape(p: dict[str, Any]) -> bool:
    users = p.get("users")
    return isinstance(users, list) and all(
        isinstance(u, dict) and isinstance(u.get("user_id"), str) and isinstance(u.get("deleted"), bool)
        and isinstance(u.get("profile"), dict) for u in users)


def preview_shape(p: dict[str, Any]) -> bool:
    people = p.get("people", {})
    return (all(_int(p.get(k)) for k in ("evaluated", "added", "removed"))
            and _strs(p.get("sample_added")) and _strs(p.get("sample_removed"))
            and isinstance(people, dict) and all(
                isinstance(v, dict) and _opt_str(v.get("name")) and _opt_str(v.get("email")) for v in people.values()))


# ------------------------------------------------------------ the internal reads, typed
def _q(value: str) -> str:
    return quote(value, safe="")  # an id's "/" (refused anyway) could not change the path


@dataclass(frozen=True)
class InternalRead:
    """One read every worker answers for its own partitions."""

    method: ClassVar[str] = "GET"
    scan: ClassVar[bool] = False  # a preview decodes every stored user: SCAN_TIMEOUT_S, not PEER_TIMEOUT_S
    site_id: str

    def path(self) -> str:
        """The peer's ``/internal/...`` endpoint for this read."""
        raise NotImplementedError

    def payload(self) -> Any:
        return None

    @staticmethod
    def shape(answer: dict[str, Any]) -> bool:
        raise NotImplementedError


@dataclass(frozen=True)
class MembersRead(InternalRead):
    segment_id: str
    after: str
    limit: int

    def path(self) -> str:
        return (f"/internal/sites/{_q(self.site_id)}/segments/{_q(self.segment_id)}/members"
                f"?after={_q(self.after)}&limit={self.limit}")

    shape = staticmethod(members_shape)


@dataclass(frozen=True)
class MemberSearchRead(MembersRead):
    """Members matching a search term (processor/state/people.py): a scan of the segment."""

    scan: ClassVar[bool] = True
    q: str

    def path(self) -> str:
        return super().path() + f"&q={_q(self.q)}"


@dataclass(frozen=True)
class CountsRead(InternalRead):
    def path(self) -> str:
        return f"/internal/sites/{_q(self.site_id)}/counts"

    shape = staticmethod(counts_shape)


@dataclass(frozen=True)
class UserRead(InternalRead):
    user_id: str

    def path(self) -> str:
        return f"/internal/sites/{_q(self.site_id)}/users/{_q(self.user_id)}"

    shape = staticmethod(user_shape)


@dataclass(frozen=True)
class ProfilesRead(InternalRead):
    after: str
    limit: int

    def path(self) -> str:
        return f"/internal/sites/{_q(self.site_id)}/profiles?after={_q(self.after)}&limit={self.limit}"

    shape = staticmethod(profiles_shape)


@dataclass(frozen=True)
class PreviewRead(InternalRead):
    method: ClassVar[str] = "POST"
    scan: ClassVar[bool] = True
    segment_id: str
    rule_id: str
    condition: Any

    def path(self) -> str:
        return f"/internal/sites/{_q(self.site_id)}/preview"

    def payload(self) -> Any:
        return {"segment_id": self.segment_id, "rule_id": self.rule_id, "condition": self.condition}

    shape = staticmethod(preview_shape)


Local = Callable[[InternalRead, float], Awaitable[dict[str, Any]]]  # (read, deadline) -> this worker's answer


class Peers:
    """Gathers one internal read from every worker owning user partitions."""

    def __init__(self, self_url: Callable[[], str], peer_urls: Callable[[], list[str]], local: Local,
                 peer_timeout_s: float, scan_timeout_s: float) -> None:
        self.self_url = self_url
        self.peer_urls = peer_urls
        self.local = local
        self.peer_timeout_s = peer_timeout_s
        self.scan_timeout_s = scan_timeout_s
        self.client = PeerClient()

    def timeout_s(self, read: InternalRead) -> float:
        """How long a gathered read waits for every worker: PEER_TIMEOUT_S, or SCAN_TIMEOUT_S for
        a preview (it decodes and evaluates every stored user: seconds on a large site; member
        counts only walk keys)."""
        return self.scan_timeout_s if read.scan else self.peer_timeout_s

    async def gather(self, read: InternalRead, authorization: str) -> list[dict[str, Any]]:
        """Every worker's answer to ``read`` (the caller's ``Authorization`` goes to the peers).
        Any worker that fails, does not answer in time or answers garbage makes the whole answer
        503 WORKER_UNAVAILABLE (429 SCAN_BUSY if it is busy scanning), never a partial one; the
        other calls are then cancelled."""
        return await gather_all([lambda b=b: self.one(b, read, authorization) for b in self.peer_urls()])

    async def one(self, base: str, read: InternalRead, authorization: str) -> dict[str, Any]:
        """The answer of the worker at ``base`` (this one directly, a peer over HTTP)."""
        timeout = self.timeout_s(read)
        if base == self.self_url():
            return await self.local(read, time.monotonic() + timeout)
        return await self.client.call(base, read.method, read.path(), {"Authorization": authorization},
                                      read.payload(), timeout, read.shape)

    async def close(self) -> None:
        await self.client.close()
