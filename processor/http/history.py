"""History and audit reads (issue 21 part 4): a user's and a segment's membership changes, a
segment's size over time, every command with who issued it and what it changed, and "why was
this user in this segment at that time".

Each worker keeps the whole history in its own index (processor/history_reader.py), so these
reads answer locally: no gather, no 503 for an absent peer. Same role as member reads (READ).
An index that is not open (starting, HISTORY_ENABLED=0) answers 503 HISTORY_UNAVAILABLE.
Registered by ``Api.routes`` in one line; ``?as_of=`` on the explain route comes here too.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web as aioweb

from processor.api.auth import READ
from processor.api.errors import ApiError
from processor.api.requests import page_limit
from processor.contract.exceptions import ContractError
from processor.contract.ids import check_id
from processor.history.reads import BadCursor, HistoryReads
from processor.history.times import BadInstant, parse_instant
from processor.http.peers import CountsRead
from processor.membership.evidence import profile_of
from processor.rules.compiler import compile_condition
from processor.rules.exceptions import CompileError, RuleError

if TYPE_CHECKING:
    from processor.http.api import Api

# Query parameters each handler accepts (merged into Api.QUERY; any other is a 400).
QUERY = {"user_history": {"cursor", "limit", "segment", "since", "until"},
         "segment_history": {"cursor", "limit", "since", "until"},
         "audit_log": {"cursor", "limit", "since", "until"},
         "explain": {"as_of"}}


def routes(api: "Api") -> list[tuple[str, str, Any]]:
    h = History(api)
    s = "/sites/{site}"
    return [("GET", f"{s}/users/{{user}}/history", h.user_history),
            ("GET", f"{s}/segments/{{segment}}/history", h.segment_history),
            ("GET", f"{s}/audit", h.audit_log)]


def _json(body: Any) -> aioweb.Response:
    return aioweb.json_response(body, dumps=lambda o: json.dumps(o, default=str))


def instant(request: aioweb.Request, name: str, end: bool = False) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return parse_instant(raw, end_of_day=end)
    except BadInstant as err:
        raise ApiError(400, "INVALID_PARAMETER", f"{name}: {err}", f"$query.{name}") from None


def window(request: aioweb.Request) -> tuple[int | None, int | None]:
    """``since`` (inclusive) and ``until`` (inclusive; a date: its whole day) -> [since, until)."""
    since, until = instant(request, "since"), instant(request, "until", end=True)
    if since is not None and until is not None and since > until:
        raise ApiError(400, "INVALID_PARAMETER", "since is after until", "$query.since")
    return since, None if until is None else until + 1


class History:
    def __init__(self, api: "Api") -> None:
        self.api = api

    def index(self) -> tuple[HistoryReads, Any]:
        reads = getattr(self.api.model, "history", None)
        db = reads.db if reads is not None else None
        if reads is None or db is None:
            why = "is not kept on this worker (HISTORY_ENABLED=0)" if reads is None else "is not open yet"
            raise ApiError(503, "HISTORY_UNAVAILABLE", f"the history index {why}; retry, or ask another worker",
                           retry_after=2)
        return reads, db

    def _page(self, request: aioweb.Request, run: Any) -> Any:
        try:
            return run(page_limit(request.query.get("limit")), request.query.get("cursor") or None)
        except BadCursor:
            raise ApiError(400, "INVALID_PARAMETER", "cursor is not valid; use next_cursor from a previous page",
                           "$query.cursor") from None

    async def user_history(self, request: aioweb.Request) -> aioweb.Response:
        """Every kept membership change of one user, newest first (a user never seen: none)."""
        self.api.principal(request, READ)
        reads, db = self.index()
        site, user = request.match_info["site"], request.match_info["user"]
        since, until = window(request)
        segment = request.query.get("segment") or None
        if segment is not None:  # a filter no segment can match is a mistake, not "no changes"
            try:
                check_id(segment, "segment_id", "$query.segment")
            except ContractError as err:
                raise ApiError(400, err.code, err.message, err.path) from None
        page = self._page(request, lambda limit, cursor: reads.user_history(db, site, user, limit, cursor, since,
                                                                          until, segment))
        return _json({"user_id": user, "changes": page.items, "next_cursor": page.next_cursor,
                      "pruned": reads.user_has_pruned(db, site, user), "index": reads.status()})

    async def segment_history(self, request: aioweb.Request) -> aioweb.Response:
        """A segment's changes in [since, until] (default: all kept), newest first, and its size at
        the end of each UTC day of that window (at most the retention's days): counted forward
        from the index when it read the changes topic from its start, else back from the
        segment's member count now (gathered from every worker)."""
        self.api.principal(request, READ)
        reads, db = self.index()
        site, segment = request.match_info["site"], request.match_info["segment"]
        since, until = window(request)
        page = self._page(request, lambda limit, cursor: reads.segment_history(db, site, segment, limit, cursor,
                                                                            since, until))
        now = int(time.time() * 1000)
        first = max(since if since is not None else 0, reads.retention.horizon(now))
        last = min((until - 1) if until is not None else now, now)
        seg = self.api.site(request).segments.get(segment)
        now_size, basis = None, "history"
        if not reads.complete(db):  # the index missed the topic's start: count back from the size now
            now_size = await self._member_count(request, site, segment)
            basis = "history" if now_size is None else "live"
        return _json({"segment_id": segment, "name": seg.name if seg else None, "exists": seg is not None,
                      "changes": page.items, "next_cursor": page.next_cursor,
                      "series": reads.series(db, site, segment, first, last, now_size) if first <= last else [],
                      "series_basis": basis, "index": reads.status()})

    async def _member_count(self, request: aioweb.Request, site: str, segment: str) -> int | None:
        """The segment's member count now, gathered from every worker like the segment list's; None
        when a worker cannot answer (busy, away): the series is then counted forward from the
        index alone, flagged ``series_basis: history`` on an index that missed the topic's start
        (``index.complete: false``)."""
        try:
            parts = await self.api.gather(request, CountsRead(site))
        except ApiError:
            return None
        return sum(p["members"].get(segment, 0) for p in parts)

    async def audit_log(self, request: aioweb.Request) -> aioweb.Response:
        """Every command of the site from the catalog log, newest first: actor, times, decision,
        a one-line summary, the payload, and the changes it caused so far."""
        self.api.principal(request, READ)
        reads, db = self.index()
        since, until = window(request)
        site = request.match_info["site"]
        page = self._page(request, lambda limit, cursor: reads.audit(db, site, limit, cursor, since, until))
        return _json({"commands": page.items, "next_cursor": page.next_cursor, "index": reads.status()})

    async def explain_as_of(self, request: aioweb.Request) -> aioweb.Response:
        """``.../explain?as_of=``: the user's membership of the segment at that time from the kept
        history: the change in force then, who issued it (a command), the profile values recorded
        with it, and the segment's rules as the catalog held them when it was decided."""
        self.api.principal(request, READ)
        reads, db = self.index()
        site_id, user, segment = (request.match_info[k] for k in ("site", "user", "segment"))
        as_of = instant(request, "as_of", end=True)
        if as_of is None:  # ?as_of= with nothing
            raise ApiError(400, "INVALID_PARAMETER", "as_of: give a time (epoch milliseconds, 2026-11-20, or an "
                           "ISO-8601 date-time), or leave the parameter out to explain on the stored profile",
                           "$query.as_of")
        change = reads.change_as_of(db, site_id, user, segment, as_of)
        now = int(time.time() * 1000)
        complete = as_of >= reads.retention.horizon(now) and not reads.user_has_pruned(db, site_id, user)
        member = (change["change"] == "ADDED") if change else (False if complete else None)
        at = change["emitted_at"] if change else as_of
        site = self.api.site(request)
        values = profile_of(change["evidence"].items()) if change and change["evidence"] is not None else None
        rules = []
        for r in reads.rules_as_of(db, site_id, segment, at):
            entry: dict[str, Any] = {**r, "condition": _tree(r["condition_json"])}
            del entry["condition_json"]
            if change is not None:
                entry["matched"] = r["rule_id"] in change["matched_rule_ids"]
            # the recorded values cover the matched rules (ADDED) or every rule (REMOVED)
            if values is not None and change is not None and (change["change"] == "REMOVED" or entry["matched"]):
                try:
                    cond = compile_condition(r["condition_json"], site)
                    entry["tree"] = cond.explain(values, at // 1000)
                    entry["result"] = entry["tree"]["result"]
                except (CompileError, RuleError) as err:
                    entry["note"] = f"not evaluated: the rule no longer compiles against today's fields ({err})"
            rules.append(entry)
        return _json({
            "user_id": user, "segment_id": segment, "as_of": as_of, "source": "history", "member": member,
            "complete": complete, "change": change, "values": values, "rules": rules,
            "segment_name": site.segments[segment].name if segment in site.segments else None,
            "index": reads.status(),
            **({"note": "the kept history starts after this time, or the per-user limit let older changes "
                        "go: membership then is unknown"} if member is None else {}),
        })


def _tree(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw
