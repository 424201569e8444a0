"""Edge: ``GET /sites/{site}/users``, the stored profile of every user, in pages sorted by user id.

What the processor *holds*, read from the RocksDB user table that the answers of every other
read come from; a resync (``moodle resync``) compares it with the LMS and publishes only the
users that differ. Like the members list, it gathers from every worker (each owns some
partitions; ``/internal/sites/{site}/profiles`` answers for the partitions of one) and a worker
that cannot be reached makes the answer 503, never a partial page.
"""

from __future__ import annotations

import base64
import heapq
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import web as aioweb

from processor.api import peers
from processor.api.auth import READ
from processor.api.errors import ApiError
from processor.api.requests import page_limit
from processor.state.keys import user_prefix
from processor.state.user_state import decode_state

if TYPE_CHECKING:
    from processor.web import Api


def _encode_cursor(user: str) -> str:
    return base64.urlsafe_b64encode(user.encode()).decode().rstrip("=")


def _decode_cursor(raw: str | None) -> str:
    if not raw:
        return ""
    try:
        if not raw.replace("-", "").replace("_", "").isalnum():
            raise ValueError
        return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "INVALID_PARAMETER", "cursor is not valid; use next_cursor from a previous page",
                       "$query.cursor") from None


class UserProfiles:
    def __init__(self, api: "Api") -> None:
        self.api = api

    def routes(self) -> list[tuple[str, str, Any]]:
        return [("GET", "/sites/{site}/users", self.list_users),
                ("GET", "/internal/sites/{site}/profiles", self.local_profiles)]

    def _local(self, site: str, after: str, limit: int) -> list[dict[str, Any]]:
        prefix = user_prefix(site)
        start = prefix + after.encode() + (b"\x00" if after else b"")
        per_db = []
        for db in self.api._owned_dbs():
            rows = []
            for k, v in db.items(from_key=start):
                if not k.startswith(prefix) or len(rows) >= limit:
                    break
                st = decode_state(v)
                rows.append({"user_id": st.user_id, "deleted": st.deleted, "profile": st.profile})
            per_db.append(rows)
        return list(heapq.merge(*per_db, key=lambda r: r["user_id"]))[:limit]

    async def local_profiles(self, request: aioweb.Request) -> aioweb.Response:
        self.api.principal(request, READ)
        q = request.query
        return aioweb.json_response({"users": self._local(request.match_info["site"], q.get("after", ""),
                                                          page_limit(q.get("limit")))})

    async def list_users(self, request: aioweb.Request) -> aioweb.Response:
        self.api.principal(request, READ)
        site = request.match_info["site"]
        limit = page_limit(request.query.get("limit"))
        after = _decode_cursor(request.query.get("cursor"))
        me = str(self.api.proc.app.conf.canonical_url).rstrip("/")
        path = f"/internal/sites/{quote(site, safe='')}/profiles?after={quote(after, safe='')}&limit={limit}"
        headers = {"Authorization": request.headers.get("Authorization", "")}
        timeout = self.api.timeout_s(False)

        async def one(base: str) -> list[dict[str, Any]]:
            if base == me:
                return self._local(site, after, limit)
            answer = await self.api.peer_client.call(base, "GET", path, headers, None, timeout, peers.profiles_shape)
            return list(answer["users"])

        # bounded like every gathered read: a slow, failing or garbled worker is 503 WORKER_UNAVAILABLE
        parts = await peers.gather_all([lambda b=b: one(b) for b in await self.api.peers()])
        merged = list(heapq.merge(*parts, key=lambda r: r["user_id"]))[:limit]
        nxt = _encode_cursor(merged[-1]["user_id"]) if len(merged) == limit else None
        return aioweb.json_response({"users": merged, "next_cursor": nxt})
