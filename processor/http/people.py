"""People, not ids: names and e-mail addresses in member listings, the member search and the
members CSV export (docs/api.md, "Members: names, search, CSV export").

* A members page lists each member's ``name`` and ``email`` from the stored profile
  (processor/state/people.py), looked up in the partition that holds the member.
* ``?q=`` on the member list: each worker scans its part of the segment, time-sliced like a
  preview (processor/http/scans.py), and answers its first ``limit`` matches past the cursor;
  the gathering worker merges them like the plain list.
* ``GET .../members.csv`` streams the whole list: pages of every worker (this one directly,
  peers over their internal endpoint) merged in user-id order as the response is written, so a
  worker holds one page per worker, never the list (processor/http/members_csv.py).
"""

from __future__ import annotations

import csv
import io
from itertools import islice
from typing import TYPE_CHECKING, Any

from aiohttp import web as aioweb

from processor.api.auth import READ
from processor.api.errors import ApiError
from processor.http import members_csv
from processor.http.model import TableReads
from processor.http.peers import MemberSearchRead, MembersRead, gather_all
from processor.state.people import MAX_FOLDED_CHARS, MAX_QUERY_CHARS, Query, person
from processor.state.reads import member
from processor.state.user_state import decode_names

if TYPE_CHECKING:
    from processor.http.api import Api

EXPORT_PAGE = 500  # members per page and worker while exporting (the internal endpoint's largest page)
FLUSH_BYTES = 64 * 1024  # rows are written to the client in chunks of about this size

QUERY = {"export_members": set()}  # query parameters each handler accepts (merged into Api.QUERY)


def query(raw: str | None, folded: bool = False) -> Query | None:
    """``?q=`` as a search term (None: list every member); a 400 when it is too long. ``folded``:
    the term a worker passes on (already folded, so up to three times the limit)."""
    try:
        return Query.parse(raw, MAX_FOLDED_CHARS if folded else MAX_QUERY_CHARS)
    except ValueError as err:
        raise ApiError(400, "INVALID_PARAMETER", str(err), "$query.q") from None


def members_answer(store: TableReads, read: MembersRead) -> dict[str, Any]:
    """This worker's page of members with each one's name and e-mail, and the partitions it
    answered for (the export checks they do not move while it runs). One pass over the
    segment's entries, each with its user's state from the same partition (only the name fields
    decoded): a page of 500 takes a few milliseconds, so it needs no time slicing."""
    rows = [{**member(uid, entry).as_dict(), **person(decode_names(raw) if raw else {})}
            for uid, entry, raw in islice(store.scan(read.site_id).segment_members(read.segment_id, read.after),
                                          read.limit)]
    return {"members": rows, "partitions": store.owned_partitions()}


def sample_users(ids: list[str], parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A preview sample's users with their names and e-mail addresses (from the workers' answers)."""
    people = {u: p for part in parts for u, p in part.get("people", {}).items()}
    return [{"user_id": u, **people.get(u, {"name": None, "email": None})} for u in ids]


def member_read(site_id: str, segment_id: str, after: str, limit: int, q: Query | None) -> MembersRead:
    return MembersRead(site_id, segment_id, after, limit) if q is None else \
        MemberSearchRead(site_id, segment_id, after, limit, q.text)


class People:
    def __init__(self, api: "Api") -> None:
        self.api = api

    def routes(self) -> list[tuple[str, str, Any]]:
        return [("GET", "/sites/{site}/segments/{segment}/members.csv", self.export_members)]

    async def search_answer(self, read: MemberSearchRead, deadline: float) -> dict[str, Any]:
        """This worker's first ``limit`` members past ``after`` that match ``q``."""
        api = self.api
        q = query(read.q, folded=True)
        if q is None:
            return members_answer(api.model.store, read)
        rows = await api.scanner.search(api.model.store.scan(read.site_id), read.segment_id, read.after,
                                        read.limit, q, deadline)
        return {"members": rows, "partitions": api.model.store.owned_partitions()}

    async def export_members(self, request: aioweb.Request) -> aioweb.StreamResponse:
        api = self.api
        api.principal(request, READ)
        site_id, segment = request.match_info["site"], request.match_info["segment"]
        if segment not in api.site(request).segments:
            raise ApiError(404, "UNKNOWN_SEGMENT", f"segment {segment!r} does not exist")
        authorization = request.headers.get("Authorization", "")

        async def fetch(base: str, after: str) -> dict[str, Any]:
            return await api.peers.one(base, MembersRead(site_id, segment, after, EXPORT_PAGE), authorization)

        pages = members_csv.MergedPages(api.model.peer_urls(), fetch, EXPORT_PAGE)
        await pages.start(gather_all)  # a worker that fails before the first byte is a 503 as usual
        resp = aioweb.StreamResponse(headers={
            "Content-Type": "text/csv; charset=utf-8; header=present",
            "Content-Disposition": members_csv.content_disposition(site_id, segment)})
        await resp.prepare(request)
        buf = io.StringIO()
        out = csv.writer(buf, lineterminator="\r\n")
        buf.write(members_csv.BOM)
        out.writerow(members_csv.HEADER)
        try:
            async for m in pages:
                out.writerow(members_csv.row(m))
                if buf.tell() >= FLUSH_BYTES:
                    await resp.write(buf.getvalue().encode())
                    buf.seek(0)
                    buf.truncate()
            await resp.write(buf.getvalue().encode())
            await resp.write_eof()
        except ConnectionError:  # the client left: nothing more to do
            pass
        except Exception as exc:  # noqa: BLE001 - after the first byte an error cannot be a status any more
            # the connection is closed before the terminating chunk: the client sees an
            # incomplete download (curl, urllib, browsers report it), never a truncated "complete" file
            code = exc.code if isinstance(exc, ApiError) else type(exc).__name__
            api.model.log.warning("members export of %s/%s stopped after %d rows: %s", site_id, segment,
                                  pages.rows, code)
            if request.transport is not None:
                request.transport.close()
        return resp
