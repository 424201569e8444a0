"""Guarded changes: before the API produces a command that could remove people, it computes the
command's impact over every worker and holds back a large one (docs/api.md#guarded-changes).

* :meth:`Guard.check` runs in the API's write path (``Api._submit``) after validation and the
  rate limit, before the command is produced. A command that only adds rules, or whose segments
  have fewer members than the site's ``large_change_min_removed`` (a bounded read of the
  members tab), costs no scan. Otherwise every worker evaluates its stored users against the
  rules the segment would have (:class:`ImpactRead`, ``POST /internal/sites/{site}/impact``,
  time-sliced like a preview) and the summed counts are judged (processor/catalog/guard.py).
  Large and not confirmed with the exact number it removes: ``409 LARGE_CHANGE`` with the
  counts and a sample of the people, and nothing is produced.
* :meth:`Guard.combined` is the same computation for several commands applied in order (``rules
  apply --dry-run``: ``POST /sites/{site}/rules:impact``).

Commands produced straight to the commands topic do not pass here: they are trusted automation.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Sequence

from aiohttp import web as aioweb

from processor.api.auth import READ, WRITE_RULES
from processor.api.errors import ApiError
from processor.api.requests import MAX_LIMIT, only_field, require_object, rule_payload
from processor.catalog import guard as core
from processor.catalog.model import SiteCatalog
from processor.contract.codec import decode_command, encode_command
from processor.contract.models import PAYLOAD_TYPES, Actor, Command
from processor.http.peers import InternalRead, MembersRead, _int, _q

if TYPE_CHECKING:
    from processor.http.api import Api

MAX_COMMANDS = 1000  # commands in one impact computation (a rules file)
TRIAL_ACTOR = Actor("impact", ("site_admin", "system"))  # the caller was authorized by the API already


# ------------------------------------------------------------------ the internal read
def _people(v: Any) -> bool:
    return isinstance(v, list) and all(
        isinstance(p, dict) and isinstance(p.get("user_id"), str)
        and all(p.get(k) is None or isinstance(p.get(k), str) for k in ("name", "email")) for p in v)


def impact_shape(p: dict[str, Any]) -> bool:
    segs = p.get("segments")
    return _int(p.get("evaluated")) and isinstance(segs, list) and all(
        isinstance(s, dict) and isinstance(s.get("segment_id"), str)
        and all(_int(s.get(k)) for k in ("members", "added", "removed"))
        and _people(s.get("sample_added")) and _people(s.get("sample_removed")) for s in segs)


@dataclass(frozen=True)
class ImpactRead(InternalRead):
    """Who the commands, applied in order to the site's catalog, would add to and remove from
    each segment they change, over one worker's users. ``commands``: (payload type, payload
    as JSON text)."""

    method: ClassVar[str] = "POST"
    scan: ClassVar[bool] = True
    commands: tuple[tuple[str, str], ...]

    def path(self) -> str:
        return f"/internal/sites/{_q(self.site_id)}/impact"

    def payload(self) -> Any:
        return {"commands": [{"type": t, "payload": json.loads(p)} for t, p in self.commands]}

    shape = staticmethod(impact_shape)

    @classmethod
    def of(cls, site_id: str, cmds: Iterable[Command]) -> "ImpactRead":
        return cls(site_id, tuple((c.payload_type, json.dumps(c.payload, sort_keys=True)) for c in cmds))


def trial_commands(site_id: str, items: Any) -> list[Command]:
    """The body of the internal read as commands, each checked against the Avro contract (a
    field missing or of the wrong type is a 400, never a worker error)."""
    if not isinstance(items, list) or len(items) > MAX_COMMANDS:
        raise ApiError(400, "INVALID_FIELD", f"commands must be an array of at most {MAX_COMMANDS}", "$.commands")
    out = []
    for i, item in enumerate(items):
        where = f"$.commands[{i}]"
        if not isinstance(item, dict) or item.get("type") not in PAYLOAD_TYPES or not isinstance(
                item.get("payload"), dict):
            raise ApiError(400, "INVALID_FIELD", f"each command is {{type: one of {', '.join(PAYLOAD_TYPES)}, "
                           "payload: object}", where)
        cmd = Command(f"impact-{i}", site_id, 0, TRIAL_ACTOR, item["type"], dict(item["payload"]))
        try:
            out.append(decode_command(encode_command(cmd)))
        except Exception as exc:  # noqa: BLE001 - any encoder or decoder complaint: not a valid payload
            raise ApiError(400, "INVALID_FIELD", f"not a valid {item['type']} payload ({type(exc).__name__})",
                           f"{where}.payload") from None
    return out


# ------------------------------------------------------------------- 409 LARGE_CHANGE
class LargeChange(ApiError):
    """``409 LARGE_CHANGE``: the change is held back; the body carries its impact."""

    def __init__(self, message: str, path: str, extra: dict[str, Any]) -> None:
        super().__init__(409, "LARGE_CHANGE", message, path)
        self.extra = extra

    def body(self) -> dict[str, Any]:  # type: ignore[override]
        return {**super().body(), **self.extra}


def _pct(ratio: float) -> str:
    return f"{ratio * 100:g}%"


def take_confirm(body: Any) -> tuple[Any, int | None]:
    """``body`` without its ``confirm`` member, and the number of removals it confirms (None:
    nothing confirmed). ``confirm`` is ``{"removed": N}``, N the count the 409 answer gave."""
    if not isinstance(body, dict) or "confirm" not in body:
        return body, None
    rest = {k: v for k, v in body.items() if k != "confirm"}
    c = body["confirm"]
    if not isinstance(c, dict) or set(c) != {"removed"}:
        raise ApiError(400, "INVALID_FIELD", 'confirm must be {"removed": N}, N the number of people the '
                       "409 LARGE_CHANGE answer said the change removes", "$.confirm")
    n = c["removed"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ApiError(400, "INVALID_FIELD", "confirm.removed must be a whole number of 0 or more", "$.confirm.removed")
    return rest, n


NO_BODY = object()  # a request sent without a body (JSON null is a body, and not an object)


def confirm_only(body: Any) -> tuple[None, int | None]:
    """The optional body of a DELETE: none (``NO_BODY``), or ``{"confirm": {"removed": N}}``."""
    if body is NO_BODY:
        return None, None
    rest, confirmed = take_confirm(require_object(body))
    if rest:
        extra = sorted(rest)[0]
        raise ApiError(400, "INVALID_FIELD", f'unknown field {extra!r}; a delete takes only "confirm"', f"$.{extra}")
    return None, confirmed


def impact_body(site: SiteCatalog, evaluated: int, impacts: Sequence[core.SegmentImpact]) -> dict[str, Any]:
    """The impact as the API shows it: totals, then per segment with its name and whether the
    site's threshold calls it large."""
    s = site.settings
    return {
        "members": sum(i.members for i in impacts), "removed": sum(i.removed for i in impacts),
        "added": sum(i.added for i in impacts), "evaluated": evaluated,
        "segments": [{**i.as_dict(), "name": site.segments[i.segment_id].name if i.segment_id in site.segments
                      else i.segment_id, "large": core.is_large(i.members, i.removed, s)} for i in impacts],
    }


def refusal(site: SiteCatalog, verdict: core.Verdict, evaluated: int, impacts: Sequence[core.SegmentImpact],
            confirmed: int | None) -> LargeChange:
    s = site.settings
    names = ", ".join(repr(site.segments[x].name if x in site.segments else x) for x in verdict.large)
    rule = (f"the site holds back changes that remove at least {s.large_change_min_removed} people and more than "
            f"{_pct(s.large_change_ratio)} of a segment's members")
    if verdict.outcome == core.CHANGED:
        msg = (f"the impact changed since it was confirmed: this change now removes {verdict.removed} people (you "
               f"confirmed {confirmed}) from {names}; {rule}. Check the new sample, then confirm "
               f'{{"removed": {verdict.removed}}}')
        path = "$.confirm.removed"
    else:
        msg = (f"this change would remove {verdict.removed} people from {names} ({verdict.members} members now); "
               f'{rule}. Check the sample, then send it again with "confirm": {{"removed": {verdict.removed}}} '
               "to apply it")
        path = "$.confirm"
    return LargeChange(msg, path, {"impact": impact_body(site, evaluated, impacts),
                                   "confirm": {"removed": verdict.removed}, "confirmed": confirmed,
                                   "threshold": s.as_dict()})


# ---------------------------------------------------------------------------- Guard
class Guard:
    def __init__(self, api: "Api") -> None:
        self.api = api

    def routes(self) -> list[tuple[str, str, Any]]:
        return [("POST", "/sites/{site}/rules:impact", self.rules_impact),
                ("POST", "/internal/sites/{site}/impact", self.local_impact)]

    # -- this worker's part
    async def answer(self, read: ImpactRead, deadline: float) -> dict[str, Any]:
        """This worker's users against the targets of ``read``'s commands (time-sliced scan)."""
        site = self.api.model.registry.site(read.site_id)
        cmds = trial_commands(read.site_id, read.payload()["commands"])
        targets, _ = core.plan_impact(site, cmds)
        scanner = self.api.scanner
        scan = self.api.model.store.scan(read.site_id)
        ev = core.Evaluator(targets, int(time.time()))
        with scanner.gate.slot():
            slicer = scanner._slicer(scan, deadline)
            if targets:
                for st in scan.users():
                    ev.add(st.user_id, st.profile, st.deleted, st.is_member)
                    if time.perf_counter() >= slicer.slice_end:
                        await slicer.pause()
        return ev.answer()

    async def local_impact(self, request: aioweb.Request) -> aioweb.Response:
        self.api.principal(request, READ)
        b = require_object(await self.api.body(request))
        extra = sorted(set(b) - {"commands"})
        if extra:
            raise ApiError(400, "INVALID_FIELD", f"unknown field {extra[0]!r}", f"$.{extra[0]}")
        site_id = request.match_info["site"]
        cmds = trial_commands(site_id, b.get("commands"))
        return await self.api.respond_local(request, ImpactRead.of(site_id, cmds))

    # -- gathered
    async def impact(self, request: aioweb.Request, site: SiteCatalog,
                     cmds: Sequence[Command]) -> tuple[int, list[core.SegmentImpact]]:
        parts = await self.api.gather(request, ImpactRead.of(site.site_id, cmds))
        return core.merge(parts)

    async def _may_be_large(self, request: aioweb.Request, site: SiteCatalog, targets: list[core.Target]) -> bool:
        """Whether some segment the change may shrink has enough members for a large change:
        one bounded page of its members from every worker (no scan)."""
        need = site.settings.large_change_min_removed
        if need == 0 or need > MAX_LIMIT:
            return True
        for t in targets:
            parts = await self.api.gather(request, MembersRead(site.site_id, t.segment_id, "", need))
            if core.could_be_large(sum(len(p["members"]) for p in parts), site.settings):
                return True
        return False

    async def check(self, request: aioweb.Request, site: SiteCatalog, cmd: Command, confirmed: int | None) -> None:
        """Return when ``cmd`` may be produced; raise :class:`LargeChange` when it is large and
        ``confirmed`` is not the number it removes. A command ``decide`` rejects passes (the
        worker rejects it with its code, as without the guard)."""
        targets, decisions = core.plan_impact(site, [cmd])
        shrinking = [t for t in targets if t.may_remove]
        if not decisions[0].accepted or not shrinking or not await self._may_be_large(request, site, shrinking):
            return
        evaluated, impacts = await self.impact(request, site, [cmd])
        verdict = core.judge(impacts, site.settings, confirmed)
        if verdict.outcome != core.PROCEED:
            raise refusal(site, verdict, evaluated, impacts, confirmed)

    async def check_all(self, request: aioweb.Request, site: SiteCatalog, cmds: Sequence[Command],
                        confirmed: int | None) -> None:
        """:meth:`check` for several commands applied in order (a Batch, processor/http/progress.py):
        their combined impact is judged once."""
        targets, decisions = core.plan_impact(site, list(cmds))
        shrinking = [t for t in targets if t.may_remove]
        if not all(d.accepted for d in decisions) or not shrinking or not await self._may_be_large(
                request, site, shrinking):
            return
        evaluated, impacts = await self.impact(request, site, cmds)
        verdict = core.judge(impacts, site.settings, confirmed)
        if verdict.outcome != core.PROCEED:
            raise refusal(site, verdict, evaluated, impacts, confirmed)

    # -- rules apply --dry-run
    async def rules_impact(self, request: aioweb.Request) -> aioweb.Response:
        """``{"rules": [rule, ...]}`` (as ``rules apply`` reads a file): each rule created or
        updated in order, then the combined impact per segment. Nothing is produced."""
        self.api.principal(request, WRITE_RULES)
        site = self.api.site(request)
        items = only_field(await self.api.body(request), "rules")
        if not isinstance(items, list) or not items or len(items) > MAX_COMMANDS:
            raise ApiError(400, "INVALID_FIELD", f"rules must be an array of 1 to {MAX_COMMANDS} rules", "$.rules")
        cmds: list[Command] = []
        results: list[dict[str, Any]] = []
        known = set(site.rules)
        for i, item in enumerate(items):
            rid = item.get("rule_id") if isinstance(item, dict) else None
            action = "update" if isinstance(rid, str) and rid in known else "create"
            try:
                payload = rule_payload(item)
            except ApiError as err:
                results.append({"index": i, "rule_id": rid, "action": action, "valid": False, "code": err.code,
                                "message": err.message, "path": f"$.rules[{i}]" + (err.path or "$")[1:]})
                continue
            known.add(payload["rule_id"])
            cmds.append(Command(f"impact-{i}", site.site_id, 0, TRIAL_ACTOR,
                                "UpdateRule" if action == "update" else "CreateRule", payload))
            results.append({"index": i, "rule_id": payload["rule_id"], "action": action, "valid": True})
        _, decisions = core.plan_impact(site, cmds)
        for r, d in zip((r for r in results if r["valid"]), decisions):
            if not d.accepted:
                r.update(valid=False, code=d.code, message=d.message,
                         path=f"$.rules[{r['index']}]" + (d.path or "$").replace("$.payload", "", 1)[1:])
        good = [c for c, d in zip(cmds, decisions) if d.accepted]
        evaluated, impacts = await self.impact(request, site, good) if good else (0, [])
        body = impact_body(site, evaluated, impacts)
        body["large"] = any(s["large"] for s in body["segments"])
        return aioweb.json_response({"rules": results, "threshold": site.settings.as_dict(), **body})
