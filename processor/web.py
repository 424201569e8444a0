"""Edge: the admin/query HTTP API on each worker's Faust web server.

Reads come from the in-memory catalog (identical on every worker) and from
the RocksDB user table, which is partitioned across workers: member lists,
counts, user lookups and previews gather from every worker (found through
Faust's assignor metadata) via internal endpoints that require the same
bearer token. Writes are commands on the commands topic, so Kafka stays the
single source of truth; they answer 202 with a URL to poll.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from aiohttp import http_exceptions
from aiohttp import web as aioweb

from processor.api import bridges, command_ids, peers, scans
from processor.api.auth import READ, WRITE_RULES, AuthConfig, authenticate, authorize
from processor.api.errors import ApiError
from processor.api.ratelimit import WriteLimiter
from processor.api.requests import (
    MAX_BODY_BYTES,
    automation_payload,
    check_path_ids,
    condition_tree,
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
from processor.contract.codec import encode_command
from processor.contract.models import Actor, Command
from processor.membership.decide import is_suspended
from processor.rules.compiler import compile_condition
from processor.rules.exceptions import CompileError
from processor.rules.fields import STANDARD_FIELD_INFO, STANDARD_FIELDS
from processor.rules.operators import REGISTRY, operators_for
from processor.state.keys import member_prefix, parse_member_key, user_key
from processor.state.user_state import decode_state

if TYPE_CHECKING:
    from processor.app import Processor

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


def _dry_run(request: aioweb.Request) -> bool:
    raw = request.query.get("dry_run")
    if raw is None or raw == "false":
        return False
    if raw == "true":
        return True
    raise ApiError(400, "INVALID_PARAMETER", "dry_run must be true or false", "$query.dry_run")


class Api:
    def __init__(self, proc: "Processor", auth: AuthConfig) -> None:
        self.proc = proc
        self.auth = auth
        s = proc.s
        self.peer_client = peers.PeerClient()
        self.scanner = scans.Scanner(s.scan_concurrency, self._db_is_current, s.scan_slice_ms / 1000,
                                     s.scan_rest_ms / 1000)
        self.write_limiter = WriteLimiter(s.api_write_rate_per_minute)

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
        ]

    QUERY = {"list_members": {"cursor", "limit"}, "local_members": {"after", "limit"},
             "create_rule": {"dry_run"}, "update_rule": {"dry_run"}, "delete_rule": {"dry_run"},
             "set_automation": {"dry_run"}, **bridges.QUERY}

    def install(self, aio_app: aioweb.Application) -> None:
        for method, path, handler in self.routes():
            aio_app.router.add_route(method, path, self._wrap(handler))
        aio_app.on_response_prepare.append(_no_store)

        async def close_peer_client(app: aioweb.Application) -> None:
            await self.peer_client.close()

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
                resp = await handler(request)
            except ApiError as err:
                resp = _json(err.body(), err.status, err.headers())
            except aioweb.HTTPException:
                raise
            except Exception as exc:  # noqa: BLE001 - never a bare 500 page
                self.proc.log.exception("api error on %s %s", request.method, request.path)
                resp = _json({"code": "INTERNAL", "message": f"{type(exc).__name__}"}, 500)
            self.proc.metrics.observe_api(request.method, handler.__name__, resp.status,
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
        return self.proc.registry.site(request.match_info["site"])

    async def peers(self) -> list[str]:
        """Base URLs of every worker owning user-table partitions (this one included)."""
        try:
            meta = self.proc.app.router.table_metadata(self.proc.users.name)
            urls = sorted({str(u).rstrip("/") for u in meta})
        except Exception:  # noqa: BLE001 - not assigned yet
            urls = []
        me = str(self.proc.app.conf.canonical_url).rstrip("/")
        return urls or [me]

    def timeout_s(self, preview: bool = False) -> float:
        """How long a gathered read waits for every worker: PEER_TIMEOUT_S, or SCAN_TIMEOUT_S
        for a preview (it decodes and evaluates every stored user: seconds on a large site;
        member counts only walk keys)."""
        return self.proc.s.scan_timeout_s if preview else self.proc.s.peer_timeout_s

    async def gather(self, request: aioweb.Request, method: str, path: str, shape: peers.Shape,
                     payload: Any = None, preview: bool = False) -> list[Any]:
        """Call an internal endpoint on every worker (this one directly). Any worker that fails,
        does not answer in time (``timeout_s``) or answers garbage makes the whole answer 503
        WORKER_UNAVAILABLE (429 SCAN_BUSY if it is busy scanning), never a partial one; the
        other calls are then cancelled."""
        me = str(self.proc.app.conf.canonical_url).rstrip("/")
        timeout = self.timeout_s(preview)
        headers = {"Authorization": request.headers.get("Authorization", "")}

        async def one(base: str) -> Any:
            if base == me:
                return await self._local(method, path, payload, time.monotonic() + timeout)
            return await self.peer_client.call(base, method, path, headers, payload, timeout, shape)

        return await peers.gather_all([lambda b=b: one(b) for b in await self.peers()])

    async def _local(self, method: str, path: str, payload: Any, deadline: float) -> Any:
        # direct call of the local handler's logic (no HTTP round trip to ourselves)
        from urllib.parse import unquote

        from yarl import URL

        url = URL(path)
        parts = [unquote(p) for p in url.raw_path.split("/")]  # an id's %2F stays inside its segment
        site = parts[3]
        if parts[4] == "segments":
            return self._members_local(site, parts[5], url.query.get("after", ""), int(url.query.get("limit", "50")))
        if parts[4] == "counts":
            return await self._counts_local(site, deadline)
        if parts[4] == "users":
            return self._user_local(site, parts[5])
        return await self._preview_local(site, payload, deadline)

    # -------------------------------------------------------------- local reads
    def _owned_dbs(self) -> list[Any]:
        return [db for _, db in self._owned_partition_dbs()]

    def _owned_partition_dbs(self) -> list[tuple[int, Any]]:
        store = self.proc.users.data
        try:
            parts = sorted(tp.partition for tp in self.proc.app.assignor.assigned_actives()
                           if tp.topic == self.proc.s.topics.user_events)
        except Exception:  # noqa: BLE001
            parts = []
        return [(p, store._db_for_partition(p)) for p in parts]

    def _db_is_current(self, partition: int, db: Any) -> bool:
        """Is ``db`` still the open handle of ``partition`` (not revoked or re-opened since)?"""
        return self.proc.users.data._dbs.get(partition) is db

    def _members_local(self, site: str, segment: str, after: str, limit: int) -> dict[str, Any]:
        prefix = member_prefix(site, segment)
        start = prefix + after.encode() + (b"\x00" if after else b"")
        out = []
        for db in self._owned_dbs():
            n = 0
            for k, v in db.items(from_key=start):
                if not k.startswith(prefix) or n >= limit:
                    break
                meta = json.loads(v) if v else {}
                out.append({"user_id": parse_member_key(k)[2], "since": meta.get("since"),
                            "matched_rule_ids": meta.get("rules", []), "cause": meta.get("cause")})
                n += 1
        return {"members": out}

    async def _counts_local(self, site: str, deadline: float) -> dict[str, Any]:
        return await self.scanner.counts(self._owned_partition_dbs(), site, deadline)

    def _user_local(self, site: str, user: str) -> dict[str, Any]:
        key = user_key(site, user)
        for db in self._owned_dbs():
            raw = db.get(key)
            if raw:
                st = decode_state(raw)
                return {"found": True, "deleted": st.deleted, "profile": st.profile,
                        "facts": {s: {"member": f.member, "change": f.change, "cause_kind": f.cause_kind,
                                      "cause_id": f.cause_id, "since": f.emitted_at,
                                      "matched_rule_ids": list(f.matched_rule_ids)}
                                  for s, f in st.facts.items()}}
        return {"found": False}

    async def _preview_local(self, site_id: str, payload: dict[str, Any], deadline: float) -> dict[str, Any]:
        site = self.proc.registry.site(site_id)
        segment = payload["segment_id"]
        rule_id = payload.get("rule_id") or ""
        try:
            cond = compile_condition(payload["condition"], site)
        except CompileError as err:
            first = err.errors[0]
            raise ApiError(422, first.code, first.message, first.path) from None
        others = [(rid, c) for rid, c in site.active.get(segment, ()) if rid != rule_id]
        candidate = ActiveRuleSet.build({segment: [*others, (rule_id or "(new rule)", cond)]})
        return await self.scanner.preview(self._owned_partition_dbs(), site_id, candidate, segment,
                                          int(time.time()), deadline)

    # ------------------------------------------------------- internal endpoints
    async def local_members(self, request: aioweb.Request) -> aioweb.Response:
        self.principal(request, READ)
        q = request.query
        return _json(self._members_local(request.match_info["site"], request.match_info["segment"],
                                         q.get("after", ""), page_limit(q.get("limit"))))

    async def local_counts(self, request: aioweb.Request) -> aioweb.Response:
        self.principal(request, READ)
        return _json(await self._counts_local(request.match_info["site"], time.monotonic() + self.timeout_s()))

    async def local_user(self, request: aioweb.Request) -> aioweb.Response:
        self.principal(request, READ)
        return _json(self._user_local(request.match_info["site"], request.match_info["user"]))

    async def local_preview(self, request: aioweb.Request) -> aioweb.Response:
        self.principal(request, READ)
        payload = preview_payload(await self.body(request))
        return _json(await self._preview_local(request.match_info["site"], payload,
                                               time.monotonic() + self.timeout_s(preview=True)))

    # ------------------------------------------------------------ public reads
    async def list_segments(self, request: aioweb.Request) -> aioweb.Response:
        self.principal(request, READ)
        site = self.site(request)
        parts = await self.gather(request, "GET", f"/internal/sites/{site.site_id}/counts", peers.counts_shape)
        counts: dict[str, int] = {}
        for part in parts:
            for seg, n in part["members"].items():
                counts[seg] = counts.get(seg, 0) + n
        rules_per: dict[str, int] = {}
        for r in site.rules.values():
            rules_per[r.segment_id] = rules_per.get(r.segment_id, 0) + 1
        return _json({"segments": [
            {"segment_id": s.segment_id, "name": s.name, "managed": s.managed,
             "member_count": counts.get(s.segment_id, 0), "rule_count": rules_per.get(s.segment_id, 0)}
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
        from urllib.parse import quote

        parts = await self.gather(
            request, "GET",
            f"/internal/sites/{quote(site_id)}/segments/{quote(segment)}/members?after={quote(after)}&limit={limit}",
            peers.members_shape)
        merged = sorted((m for p in parts for m in p["members"]), key=lambda m: m["user_id"])[:limit]
        nxt = _cursor_encode(merged[-1]["user_id"]) if len(merged) == limit else None
        return _json({"members": merged, "next_cursor": nxt})

    async def user_segments(self, request: aioweb.Request) -> aioweb.Response:
        self.principal(request, READ)
        state = await self._find_user(request)
        site = self.site(request)
        return _json({"user_id": request.match_info["user"], "deleted": state["deleted"], "segments": [
            {"segment_id": seg, "member": f["member"], "since": f["since"], "cause_kind": f["cause_kind"],
             "cause_id": f["cause_id"], "matched_rule_ids": f["matched_rule_ids"],
             "managed": bool(site.segments.get(seg) and site.segments[seg].managed)}
            for seg, f in sorted(state["facts"].items())]})

    async def _find_user(self, request: aioweb.Request) -> dict[str, Any]:
        from urllib.parse import quote

        site_id, user = request.match_info["site"], request.match_info["user"]
        path = f"/internal/sites/{quote(site_id, safe='')}/users/{quote(user, safe='')}"  # '/' cannot change it
        found = [p for p in await self.gather(request, "GET", path, peers.user_shape) if p.get("found")]
        if not found:
            raise ApiError(404, "UNKNOWN_USER", f"user {user!r} is not stored for this site")
        return found[0]

    async def explain(self, request: aioweb.Request) -> aioweb.Response:
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
            "user_id": request.match_info["user"], "segment_id": segment, "managed": seg.managed,
            "member": bool(fact and fact["member"]), "suspended": is_suspended(profile),
            "deleted": state["deleted"], "would_match": sorted(
                rid for rid, _ in site.active.get(segment, ()) if any(
                    e["rule_id"] == rid and e.get("result") for e in rules)),
            "rules": rules,
        })

    async def command_status(self, request: aioweb.Request) -> aioweb.Response:
        self.principal(request, READ)
        site_id, command_id = request.match_info["site"], request.match_info["command"]
        rec = self.proc.registry.command(site_id, command_id)
        if rec is None:
            oldest = self.proc.registry.commands.oldest(site_id)
            ttl_s = self.proc.s.command_status_ttl_s
            if command_ids.expired(command_id, int(time.time() * 1000), ttl_s * 1000,
                                   oldest.command_id if oldest else None):
                raise ApiError(410, "COMMAND_EXPIRED",
                               f"command {command_id!r} is no longer tracked: it was issued more than {ttl_s} s "
                               "ago or before the site's oldest remembered command, and is not in the "
                               "de-duplication window. Its result was published on the command-results topic "
                               "when it was decided")
            return _json({"command_id": command_id, "status": "PENDING"}, 200)
        return _json({"command_id": rec.command_id, "status": rec.status, "code": rec.code,
                      "message": rec.message, "processed_at": rec.processed_at})

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
        payload = {"segment_id": seg, "rule_id": b.get("rule_id") or "", "condition": tree}
        parts = await self.gather(request, "POST", f"/internal/sites/{site.site_id}/preview", peers.preview_shape,
                                  payload, preview=True)
        return _json({
            # false: automation is off for the segment, so saving the rule changes nobody until it is
            # enabled; the counts say what enabling it (with this rule) would do
            "managed": site.segments[seg].managed,
            "evaluated": sum(p["evaluated"] for p in parts),
            "added": sum(p["added"] for p in parts), "removed": sum(p["removed"] for p in parts),
            "sample_added": sorted(u for p in parts for u in p["sample_added"])[:PREVIEW_SAMPLE],
            "sample_removed": sorted(u for p in parts for u in p["sample_removed"])[:PREVIEW_SAMPLE],
        })

    # ------------------------------------------------------------------ writes
    async def _submit(self, request: aioweb.Request, principal: Any, ptype: str, payload: dict[str, Any],
                      dry_run: bool = False) -> aioweb.Response:
        site = self.site(request)
        # COMMANDS_REQUIRE_TOKEN=1: the caller's (already verified) token goes with the command,
        # and the deciding worker verifies it again; otherwise no credential is put on the bus.
        token = request.headers.get("Authorization", "").partition(" ")[2].strip() or None
        now = int(time.time() * 1000)
        cmd = Command(command_ids.new_command_id(now), site.site_id, now,
                      Actor(principal.sub, principal.roles), ptype, payload,
                      auth_token=token if self.proc.s.commands_require_token else None)
        if dry_run:  # the command's own validation, against this worker's (caught-up) catalog
            from processor.catalog.commands import decide

            d = decide(site, cmd)
            if d.accepted:
                return _json({"valid": True, "errors": []})
            # also carries the first error's code/message: a 422 is an Error everywhere in the API
            return _json({"valid": False, "code": d.code, "message": d.message, "path": d.path,
                          "errors": [{"code": d.code, "path": d.path, "message": d.message}]}, 422)
        self.write_limiter.hit(site.site_id, principal.sub)
        await self.proc.commands_out.send(key=site.site_id.encode(), value=encode_command(cmd))
        return _json({"command_id": cmd.command_id, "status": "PENDING",
                      "poll": f"/sites/{site.site_id}/commands/{cmd.command_id}"}, 202)

    async def create_rule(self, request: aioweb.Request) -> aioweb.Response:
        p = self.principal(request, WRITE_RULES)
        payload = rule_payload(await self.body(request))
        return await self._submit(request, p, "CreateRule", payload, _dry_run(request))

    async def update_rule(self, request: aioweb.Request) -> aioweb.Response:
        p = self.principal(request, WRITE_RULES)
        payload = rule_payload(await self.body(request), request.match_info["rule"])
        return await self._submit(request, p, "UpdateRule", payload, _dry_run(request))

    async def delete_rule(self, request: aioweb.Request) -> aioweb.Response:
        p = self.principal(request, WRITE_RULES)
        return await self._submit(request, p, "DeleteRule", {"rule_id": request.match_info["rule"]},
                                  _dry_run(request))

    async def set_automation(self, request: aioweb.Request) -> aioweb.Response:
        p = self.principal(request, WRITE_RULES)
        ptype, payload = automation_payload(await self.body(request))
        payload["segment_id"] = request.match_info["segment"]
        return await self._submit(request, p, ptype, payload, _dry_run(request))

