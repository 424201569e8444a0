"""``GET /sites/{site}/users``: the stored profile of every user, in pages sorted by user id.

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

from aiohttp import web as aioweb

from processor.api.auth import READ
from processor.api.errors import ApiError
from processor.api.requests import page_limit
from processor.http.peers import ProfilesRead

if TYPE_CHECKING:
    from processor.http.api import Api


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

    async def local_profiles(self, request: aioweb.Request) -> aioweb.Response:
        self.api.principal(request, READ)
        q = request.query
        read = ProfilesRead(request.match_info["site"], q.get("after", ""), page_limit(q.get("limit")))
        return await self.api.respond_local(request, read)

    async def list_users(self, request: aioweb.Request) -> aioweb.Response:
        self.api.principal(request, READ)
        site = request.match_info["site"]
        limit = page_limit(request.query.get("limit"))
        after = _decode_cursor(request.query.get("cursor"))
        # bounded like every gathered read: a slow, failing or garbled worker is 503 WORKER_UNAVAILABLE
        parts = await self.api.gather(request, ProfilesRead(site, after, limit))
        merged = list(heapq.merge(*(p["users"] for p in parts), key=lambda r: r["user_id"]))[:limit]
        nxt = _encode_cursor(merged[-1]["user_id"]) if len(merged) == limit else None
        return aioweb.json_response({"users": merged, "next_cursor": nxt})
