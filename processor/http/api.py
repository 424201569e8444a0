"""The admin/query API: its routes and handlers.

Reads come from the catalog view (identical on every worker) and from the users table, which is
partitioned across workers: member lists, counts, user lookups and previews gather from every
worker (processor/http/peers.py), each answering for its own partitions, also on internal
endpoints that require the same bearer token. Writes are commands on the commands topic, so
Kafka stays the single source of truth; they answer 202 with a URL to poll. Everything comes
from the narrow read model (processor/http/model.py), never from the Faust app.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any, Awaitable, Callable

from aiohttp import http_exceptions
from aiohttp import web as aioweb

from processor.api import command_ids
from processor.api.auth import READ, WRITE_RULES, AuthConfig, authenticate, authorize
from processor.api.errors import ApiError
from processor.api.ratelimit import WriteLimiter
from processor.api.requests import (
    MAX_BODY_BYTES,
    automation_payload,
    check_path_ids,
    condition_tree,
    dry_run_param,
    nesting_exceeds,
    page_limit,
    parse_json_text,
    preview_payload,
    require_object,
    rule_payload,
    too_deep,
)
from processor.catalog.active import ActiveRuleSet
from processor.catalog.model import SiteCatalog
from processor.config import Settings
from processor.contract.codec import encode_command
from processor.contract.models import Actor, Command
from processor.http import bridges, catalog_admin, history, people, progress, scans
# guarded changes (409 LARGE_CHANGE)
from processor.http.guard import NO_BODY, Guard, ImpactRead, confirm_only, take_confirm
from processor.http.model import ReadModel
from processor.http.peers import (
    CountsRead,
    InternalRead,
    MemberSearchRead,
    MembersRead,
    Peers,
    PreviewRead,
    ProfilesRead,
    UserRead,
)
from processor.membership.decide import is_suspended
from processor.rules.compiler import compile_condition
from processor.rules.exceptions import CompileError
from processor.rules.fields import STANDARD_FIELD_INFO, STANDARD_FIELDS
from processor.rules.operators import REGISTRY, operators_for
from processor.state.people import person

Handler = Callable[[aioweb.Request], Awaitable[aioweb.StreamResponse]]
PREVIEW_SAMPLE = scans.SAMPLE


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> aioweb.Response:
    return aioweb.json_response(body, status=status, headers=headers, dumps=lambda o: json.dumps(o, default=str))


async def _no_store(request: aioweb.Request, response: aioweb.StreamResponse) -> None:
    """Every answer of the web server may carry profile data (or says whether it exists): never
    cached by a browser or a proxy. Set on the way out, so 404s and errors get it too."""
    response.headers.setdefault("Cache-Control", "no-store")


def _cursor_encode(user: str) -> str:
    return base64.urlsafe_b64encode(user.encode()).decode().rstrip("=")


def _cursor_decode(raw: str | None) -> str:
    if not raw:
        return ""
    if not raw.replace("-", "").replace("_", "").isalnum():
        raise ApiError(400, "INVALID_PARAMETER", "cursor is not valid; use next_cursor from a previous page",
                       "$query.cursor")
    try:
        return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "INVALID_PARAMETER", "cursor is not valid; use next_cursor from a previous page",
                       "$query.cursor") from None


def _user_answer(st: Any) -> dict[str, Any]:
    """A stored user state as the internal user read answers it (``found`` false when absent)."""
    if st is None:
        return {"found": False}
    return {"found": True, "deleted": st.deleted, "profile": st.profile,
            "facts": {s: {"member": f.member, "change": f.change, "cause_kind": f.cause_kind,
                          "cause_id": f.cause_id, "since": f.emitted_at,
                          "matched_rule_ids": list(f.matched_rule_ids)}
                      for s, f in st.facts.items()}}


class Api:
    def __init__(self, model: ReadModel, settings: Settings, auth: AuthConfig) -> None:
        self.model = model
        self.settings = settings
        self.auth = auth
        s = settings
        self.peers = Peers(model.self_url, model.peer_urls, self.answer, s.peer_timeout_s, s.scan_timeout_s)
        self.scanner = scans.Scanner(s.scan_concurrency, s.scan_slice_ms / 1000, s.scan_rest_ms / 1000)
        self.write_limiter = WriteLimiter(s.api_write_rate_per_minute)
        self.guard = Guard(self)
        self.people = people.People(self)  # names, member search, CSV export (processor/http/people.py)

    # ----------------------------------------------------------------- plumbing
    def routes(self) -> list[tuple[str, str, Handler]]:
        s = "/sites/{site}"
        return [
            ("GET", f"{s}/fields", self.list_fields),
            ("GET", f"{s}/segments", self.list_segments),
            ("POST", f"{s}/segments/{{segment}}/automation", self.set_automation),
            ("GET", f"{s}/segments/{{segment}}/members", self.list_members),
            ("GET", f"{s}/rules", self.list_rules),
            ("POST", f"{s}/rules", self.create_rule),
            ("POST", f"{s}/rules/preview", self.preview),
            ("PUT", f"{s}/rules/{{rule}}", self.update_rule),
            ("DELETE", f"{s}/rules/{{rule}}", self.delete_rule),
            ("GET", f"{s}/commands/{{command}}", self.command_status),
            ("GET", f"{s}/users/{{user}}/segments", self.user_segments),
            ("GET", f"{s}/users/{{user}}/segments/{{segment}}/explain", self.explain),
            ("GET", "/internal" + s + "/segments/{segment}/members", self.local_members),
            ("GET", "/internal" + s + "/counts", self.local_counts),
            ("GET", "/internal" + s + "/users/{user}", self.local_user),
            ("POST", "/internal" + s + "/preview", self.local_preview),
            *bridges.routes(self),  # ingest, catalog writes, stored profiles (processor/api/bridges.py)
            *Guard(self).routes(),  # rules:impact, internal impact (processor/http/guard.py)
            *catalog_admin.routes(self),  # site settings, segments:bulk (processor/http/catalog_admin.py)
            *people.People(self).routes(),  # members CSV export (processor/http/people.py)
            *progress.routes(self),  # bulk rule writes (processor/http/progress.py)
            *history.routes(self),  # history and audit (processor/http/history.py)
        ]

    QUERY = {"list_members": {"cursor", "limit", "q"}, "local_members": {"after", "limit", "q"},
             "create_rule": {"dry_run"}, "update_rule": {"dry_run"}, "delete_rule": {"dry_run"},
             "set_automation": {"dry_run"}, **bridges.QUERY, **catalog_admin.QUERY, **people.QUERY,
             **progress.QUERY, **history.QUERY}

    def install(self, aio_app: aioweb.Application) -> None:
        for method, path, handler in self.routes():
            aio_app.router.add_route(method, path, self._wrap(handler))
        aio_app.on_response_prepare.append(_no_store)

        async def openapi(request: aioweb.Request) -> aioweb.Response:
            from processor.api.openapi import spec

            return aioweb.json_response(spec())

        aio_app.router.add_get("/openapi.json", openapi)

        async def close_peer_client(app: aioweb.Application) -> None:
            await self.peers.close()

        aio_app.on_cleanup.append(close_peer_client)

    def _wrap(self, handler: Handler) -> Handler:
        allowed_query = self.QUERY.get(handler.__name__, set())

        async def run(request: aioweb.Request) -> aioweb.StreamResponse:
            started = time.perf_counter()
            try:
                check_path_ids(request.match_info)
                unknown = sorted(set(request.query) - allowed_query)
                if unknown:
                    raise ApiError(400, "INVALID_PARAMETER", f"unknown query parameter {unknown[0]!r}",
                                   f"$query.{unknown[0]}")
                repeated = sorted(k for k in set(request.query) if len(request.query.getall(k)) > 1)
                if repeated:  # which one would count? (each parameter takes one value)
                    raise ApiError(400, "INVALID_PARAMETER", f"query parameter {repeated[0]!r} is given more "
                                   "than once", f"$query.{repeated[0]}")
                resp = await handler(request)
            except ApiError as err:
                resp = _json(err.body(), err.status, err.headers())
            except aioweb.HTTPException:
                raise
            except Exception as exc:  # noqa: BLE001 - never a bare 500 page
                self.model.log.exception("api error on %s %s", request.method, request.path)
                resp = _json({"code": "INTERNAL", "message": f"{type(exc).__name__}"}, 500)
            self.model.metrics.observe_api(request.method, handler.__name__, resp.status,
                                          time.perf_counter() - started)
            return resp

        run.__name__ = handler.__name__
        return run

    def principal(self, request: aioweb.Request, action: str) -> Any:
        p = authenticate(request.headers, self.auth)
        authorize(p, request.match_info["site"], action)
        return p

    async def body(self, request: aioweb.Request) -> Any:
        """The JSON body: at most 256 KiB however it is sent (a chunked body has no
        Content-Length, so the reader stops past the limit), nested no deeper than a rule can be
        (checked before the recursive JSON parser runs), UTF-8."""
        too_large = ApiError(413, "BODY_TOO_LARGE", f"request body is larger than {MAX_BODY_BYTES // 1024} KiB")
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise too_large
        raw = bytearray()
        try:
            async for chunk in request.content.iter_any():
                raw += chunk
                if len(raw) > MAX_BODY_BYTES:
                    raise too_large
        except (ConnectionError, http_exceptions.HttpProcessingError):  # the client sent part of it and left
            raise ApiError(400, "INVALID_BODY", "the request body ended before it was complete", "$") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "INVALID_JSON", "request body is not UTF-8 JSON", "$") from None
        check = nesting_exceeds(text)
        while True:  # a large body is checked in steps, letting the event loop run between them
            try:
                next(check)
            except StopIteration as done:
                if done.value:
                    raise too_deep() from None
                break
            await asyncio.sleep(0)
        return parse_json_text(text)

    def site(self, request: aioweb.Request) -> SiteCatalog:
        return self.model.registry.site(request.match_info["site"])

    async def gather(self, request: aioweb.Request, read: InternalRead) -> list[dict[str, Any]]:
        """``read`` answered by every worker (see :meth:`Peers.gather`), with the caller's token."""
        return await self.peers.gather(read, request.headers.get("Authorization", ""))

    # -------------------------------------------------------------- local reads
    async def answer(self, read: InternalRead, deadline: float) -> dict[str, Any]:
        """This worker's answer to ``read``, for its own partitions (the internal endpoints'
        body, and this worker's part of a gathered read)."""
        store = self.model.store
        if isinstance(read, MemberSearchRead):
            return await self.people.search_answer(read, deadline)
        if isinstance(read, MembersRead):
            return people.members_answer(store, read)
        if isinstance(read, CountsRead):
            return await self.scanner.counts(store.scan(read.site_id), deadline)
        if isinstance(read, UserRead):
            return _user_answer(store.user(read.site_id, read.user_id))
        if isinstance(read, ProfilesRead):
            return {"users": [{"user_id": st.user_id, "deleted": st.deleted, "profile": st.profile}
                              for st in store.users(read.site_id, read.after, read.limit)]}
        if isinstance(read, PreviewRead):
            return await self._preview_local(read, deadline)
        if isinstance(read, ImpactRead):
            return await self.guard.answer(read, deadline)
        raise TypeError(f"no local answer for {type(read).__name__}")  # pragma: no cover - a programming error

    async def _preview_local(self, read: PreviewRead, deadline: float) -> dict[str, Any]:
        site = self.model.registry.site(read.site_id)
        segment, rule_id = read.segment_id, read.rule_id
        try:
            cond = compile_condition(read.condition, site)
        except CompileError as err:
            first = err.errors[0]
            raise ApiError(422, first.code, first.message, first.path) from None
        others = [(rid, c) for rid, c in site.active.get(segment, ()) if rid != rule_id]
        candidate = ActiveRuleSet.build({segment: [*others, (rule_id or "(new rule)", cond)]})
        return await self.scanner.preview(self.model.store.scan(read.site_id), candidate, segment,
                                          int(time.time()), deadline)

    async def respond_local(self, request: aioweb.Request, read: InternalRead) -> aioweb.Response:
        """An internal endpoint's answer: ``read`` for this worker's partitions."""
        return _json(await self.answer(read, time.monotonic() + self.peers.timeout_s(read)))

    # ------------------------------------------------------- internal endpoints
    async def local_members(self, request: aioweb.Request) -> aioweb.Response:
        self.principal(request, READ)
        q = request.query
        read = people.member_read(request.match_info["site"], request.match_info["segment"], q.get("after", ""),
                                  page_limit(q.get("limit")), people.query(q.get("q"), folded=True))
        return await self.respond_local(request, read)

    async def local_counts(self, request: aioweb.Request) -> aioweb.Response:
        self.principal(request, READ)
        return await self.respond_local(request, CountsRead(request.match_info["site"]))

    async def local_user(self, request: aioweb.Request) -> aioweb.Response:
        self.principal(request, READ)
        return await self.respond_local(request, UserRead(request.match_info["site"], request.match_info["user"]))

    async def local_preview(self, request: aioweb.Request) -> aioweb.Response:
        self.principal(request, READ)
        payload = preview_payload(await self.body(request))
        read = PreviewRead(request.match_info["site"], payload["segment_id"], payload["rule_id"], payload["condition"])
        return await self.respond_local(request, read)

    # ------------------------------------------------------------ public reads
    async def list_segments(self, request: aioweb.Request) -> aioweb.Response:
        self.principal(request, READ)
        site = self.site(request)
        parts = await self.gather(request, CountsRead(site.site_id))
        counts: dict[str, int] = {}
        for part in parts:
            for seg, n in part["members"].items():
                counts[seg] = counts.get(seg, 0) + n
        rules_per: dict[str, int] = {}
        for r in site.rules.values():
            rules_per[r.segment_id] = rules_per.get(r.segment_id, 0) + 1
        return _json({"segments": [
            {"segment_id": s.segment_id, "name": s.name, "managed": s.managed,
             "member_count": counts.get(s.segment_id, 0), "rule_count": rules_per.get(s.segment_id, 0),
             **progress.segment_fields(self.model.registry, site.site_id, s.segment_id)}  # current_as_of, applying
            for s in sorted(site.segments.values(), key=lambda s: s.segment_id)
        ], "users": sum(p["users"] for p in parts), "deleted_users": sum(p.get("deleted_users", 0) for p in parts)})

    async def list_fields(self, request: aioweb.Request) -> aioweb.Response:
        """The field catalog a rule can use: standard fields, the site's custom fields, and the
        operators valid for each (``operators`` says which take a value)."""
        self.principal(request, READ)
        site = self.site(request)
        fields: list[dict[str, Any]] = []
        for name, ftype in STANDARD_FIELDS.items():
            group, label = STANDARD_FIELD_INFO.get(name, ("Other", name))
            fields.append({"key": name, "label": label, "type": ftype.value, "custom": False, "group": group,
                           "options": [], "operators": operators_for(ftype)})
        for pf in sorted(site.fields.values(), key=lambda f: f.shortname):
            fields.append({"key": pf.key, "label": pf.name or pf.shortname, "type": pf.datatype.value,
                           "custom": True, "group": "Custom profile fields", "shortname": pf.shortname,
                           "options": list(pf.options), "operators": operators_for(pf.datatype)})
        return _json({"fields": fields, "operators": {
            name: {"takes_value": op.takes_value, "description": op.doc}
            for name, op in sorted(REGISTRY.items())}})

    async def list_rules(self, request: aioweb.Request) -> aioweb.Response:
        self.principal(request, READ)
        site = self.site(request)
        return _json({"rules": [
            {"rule_id": r.rule_id, "segment_id": r.segment_id, "name": r.name,
             "condition": json.loads(r.condition_json), "enabled": r.enabled,
             "status": site.rule_status(r.rule_id), "broken_reason": r.broken}
            for r in sorted(site.rules.values(), key=lambda r: r.rule_id)
        ]})

    async def list_members(self, request: aioweb.Request) -> aioweb.Response:
        self.principal(request, READ)
        site_id, segment = request.match_info["site"], request.match_info["segment"]
        if segment not in self.site(request).segments:
            raise ApiError(404, "UNKNOWN_SEGMENT", f"segment {segment!r} does not exist")
        limit = page_limit(request.query.get("limit"))
        after = _cursor_decode(request.query.get("cursor"))
        read = people.member_read(site_id, segment, after, limit, people.query(request.query.get("q")))
        parts = await self.gather(request, read)
        merged = sorted((m for p in parts for m in p["members"]), key=lambda m: m["user_id"])[:limit]
        nxt = _cursor_encode(merged[-1]["user_id"]) if len(merged) == limit else None
        return _json({"members": merged, "next_cursor": nxt})

    async def user_segments(self, request: aioweb.Request) -> aioweb.Response:
        self.principal(request, READ)
        state = await self._find_user(request)
        site = self.site(request)
        return _json({"user_id": request.match_info["user"], **person(state["profile"]),
                      "deleted": state["deleted"], "segments": [
            {"segment_id": seg, "member": f["member"], "since": f["since"], "cause_kind": f["cause_kind"],
             "cause_id": f["cause_id"], "matched_rule_ids": f["matched_rule_ids"],
             "managed": bool(site.segments.get(seg) and site.segments[seg].managed)}
            for seg, f in sorted(state["facts"].items())]})

    async def _find_user(self, request: aioweb.Request) -> dict[str, Any]:
        site_id, user = request.match_info["site"], request.match_info["user"]
        found = [p for p in await self.gather(request, UserRead(site_id, user)) if p.get("found")]
        if not found:
            raise ApiError(404, "UNKNOWN_USER", f"user {user!r} is not stored for this site")
        return found[0]

    async def explain(self, request: aioweb.Request) -> aioweb.Response:
        if "as_of" in request.query:  # as it was then, from the history (processor/http/history.py)
            return await history.History(self).explain_as_of(request)
        self.principal(request, READ)
        site = self.site(request)
        segment = request.match_info["segment"]
        seg = site.segments.get(segment)
        if seg is None:
            raise ApiError(404, "UNKNOWN_SEGMENT", f"segment {segment!r} does not exist")
        state = await self._find_user(request)
        profile = state["profile"]
        now = int(time.time())
        rules = []
        for r in sorted(site.rules.values(), key=lambda r: r.rule_id):
            if r.segment_id != segment:
                continue
            entry: dict[str, Any] = {"rule_id": r.rule_id, "name": r.name, "status": site.rule_status(r.rule_id)}
            cond = site.compiled.get(r.rule_id)
            if cond is not None:
                entry["tree"] = cond.explain(profile, now)
                entry["result"] = entry["tree"]["result"]
            rules.append(entry)
        fact = state["facts"].get(segment)
        return _json({
            "user_id": request.match_info["user"], **person(profile), "segment_id": segment, "managed": seg.managed,
            "member": bool(fact and fact["member"]), "suspended": is_suspended(profile),
            "deleted": state["deleted"], "would_match": sorted(
                rid for rid, _ in site.active.get(segment, ()) if any(
                    e["rule_id"] == rid and e.get("result") for e in rules)),
            "rules": rules,
        })

    async def command_status(self, request: aioweb.Request) -> aioweb.Response:
        self.principal(request, READ)
        site_id, command_id = request.match_info["site"], request.match_info["command"]
        rec = self.model.registry.command(site_id, command_id)
        if rec is None:
            oldest = self.model.registry.commands.oldest(site_id)
            ttl_s = self.settings.command_status_ttl_s
            if command_ids.expired(command_id, int(time.time() * 1000), ttl_s * 1000,
                                   oldest.command_id if oldest else None):
                raise ApiError(410, "COMMAND_EXPIRED",
                               f"command {command_id!r} is no longer tracked: it was issued more than {ttl_s} s "
                               "ago or before the site's oldest remembered command, and is not in the "
                               "de-duplication window. Its result was published on the command-results topic "
                               "when it was decided")
            return _json({"command_id": command_id, "status": "PENDING", "state": "PENDING"}, 200)
        return _json({"command_id": rec.command_id, "status": rec.status, "code": rec.code,
                      "message": rec.message, "processed_at": rec.processed_at,
                      **progress.command_fields(self.model.registry, site_id, rec)})  # state, progress

    async def preview(self, request: aioweb.Request) -> aioweb.Response:
        self.principal(request, READ)
        site = self.site(request)
        b = require_object(await self.body(request))
        extra = set(b) - {"segment_id", "rule_id", "condition"}
        if extra:
            raise ApiError(400, "INVALID_FIELD", f"unknown field {sorted(extra)[0]!r}", f"$.{sorted(extra)[0]}")
        seg = b.get("segment_id")
        if not isinstance(seg, str) or seg not in site.segments:
            raise ApiError(422, "UNKNOWN_SEGMENT", "segment_id must name an existing segment", "$.segment_id")
        tree = condition_tree(b)
        try:
            compile_condition(tree, site)
        except CompileError as err:
            first = err.errors[0]
            return _json({"valid": False, "code": first.code, "message": first.message, "path": first.path,
                          "errors": [e.as_dict() for e in err.errors]}, 422)
        parts = await self.gather(request, PreviewRead(site.site_id, seg, b.get("rule_id") or "", tree))
        answer = {
            # false: automation is off for the segment, so saving the rule changes nobody until it is
            # enabled; the counts say what enabling it (with this rule) would do
            "managed": site.segments[seg].managed,
            "evaluated": sum(p["evaluated"] for p in parts),
            "added": sum(p["added"] for p in parts), "removed": sum(p["removed"] for p in parts),
            "sample_added": sorted(u for p in parts for u in p["sample_added"])[:PREVIEW_SAMPLE],
            "sample_removed": sorted(u for p in parts for u in p["sample_removed"])[:PREVIEW_SAMPLE],
        }
        for k in ("sample_added", "sample_removed"):  # the same users with name and e-mail
            answer[f"{k}_users"] = people.sample_users(answer[k], parts)
        return _json(answer)

    # ------------------------------------------------------------------ writes
    async def _submit(self, request: aioweb.Request, principal: Any, ptype: str, payload: dict[str, Any],
                      dry_run: bool = False, confirmed: int | None = None) -> aioweb.Response:
        site = self.site(request)
        # COMMANDS_REQUIRE_TOKEN=1: the caller's (already verified) token goes with the command,
        # and the deciding worker verifies it again; otherwise no credential is put on the bus.
        token = request.headers.get("Authorization", "").partition(" ")[2].strip() or None
        now = int(time.time() * 1000)
        cmd = Command(command_ids.new_command_id(now), site.site_id, now,
                      Actor(principal.sub, principal.roles), ptype, payload,
                      auth_token=token if self.settings.commands_require_token else None)
        if dry_run:  # the command's own validation, against this worker's (caught-up) catalog
            from processor.catalog.commands import decide

            d = decide(site, cmd)
            if d.accepted:
                return _json({"valid": True, "errors": []})
            # also carries the first error's code/message: a 422 is an Error everywhere in the API
            return _json({"valid": False, "code": d.code, "message": d.message, "path": d.path,
                          "errors": [{"code": d.code, "path": d.path, "message": d.message}]}, 422)
        self.write_limiter.hit(site.site_id, principal.sub)
        await self.guard.check(request, site, cmd, confirmed)  # 409 LARGE_CHANGE: nothing is produced
        await self.model.send_command(site.site_id, encode_command(cmd))
        return _json({"command_id": cmd.command_id, "status": "PENDING",
                      "poll": f"/sites/{site.site_id}/commands/{cmd.command_id}"}, 202)

    async def optional_body(self, request: aioweb.Request) -> Any:
        """The JSON body of a request that may have none (a DELETE): ``NO_BODY`` without one."""
        return await self.body(request) if request.body_exists else NO_BODY

    async def create_rule(self, request: aioweb.Request) -> aioweb.Response:
        p = self.principal(request, WRITE_RULES)
        body, confirmed = take_confirm(await self.body(request))
        payload = rule_payload(body)
        return await self._submit(request, p, "CreateRule", payload, dry_run_param(request.query.get("dry_run")), confirmed)

    async def update_rule(self, request: aioweb.Request) -> aioweb.Response:
        p = self.principal(request, WRITE_RULES)
        body, confirmed = take_confirm(await self.body(request))
        payload = rule_payload(body, request.match_info["rule"])
        return await self._submit(request, p, "UpdateRule", payload, dry_run_param(request.query.get("dry_run")), confirmed)

    async def delete_rule(self, request: aioweb.Request) -> aioweb.Response:
        p = self.principal(request, WRITE_RULES)
        _, confirmed = confirm_only(await self.optional_body(request))
        return await self._submit(request, p, "DeleteRule", {"rule_id": request.match_info["rule"]},
                                  dry_run_param(request.query.get("dry_run")), confirmed)

    async def set_automation(self, request: aioweb.Request) -> aioweb.Response:
        p = self.principal(request, WRITE_RULES)
        body, confirmed = take_confirm(await self.body(request))
        ptype, payload = automation_payload(body)
        payload["segment_id"] = request.match_info["segment"]
        return await self._submit(request, p, ptype, payload, dry_run_param(request.query.get("dry_run")), confirmed)

