"""Catalog management for admins: the site's settings and bulk segments.

* ``GET``/``PUT /sites/{site}/settings``: the large-change guard's threshold
  (processor/catalog/settings.py); a change is a ``SetSiteSettings`` command (role site_admin).
* ``POST /sites/{site}/segments:bulk``: create, rename and (un)manage up to 1,000 segments in one
  request (``segments import FILE.csv``). Each row is checked on its own
  (processor/catalog/bulk.py) and answered on its own: a bad row is REJECTED with its code,
  message and path and never stops the good ones. A row produces only the commands it needs
  (none when the catalog already says so), through the same commands, role checks and
  large-change guard as single writes; ``?dry_run=true`` says what each row would do. The
  good rows' commands go as ``Batch`` commands (one backfill per partition for all of them).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aiohttp import web as aioweb

from processor.api import command_ids
from processor.api.auth import READ, WRITE_CATALOG, WRITE_SETTINGS
from processor.api.errors import ApiError
from processor.api.requests import dry_run_param, only_field, require_object
from processor.catalog import bulk
from processor.catalog.authorize import authorize as command_allowed
from processor.catalog.settings import DEFAULTS, FIELDS, check_payload
from processor.contract.codec import encode_command
from processor.contract.models import Actor, Command
from processor.errors import ProcessorError
from processor.http.guard import LargeChange

if TYPE_CHECKING:
    from processor.http.api import Api

QUERY = {"bulk_segments": {"dry_run"}}  # merged into Api.QUERY


def routes(api: "Api") -> list[tuple[str, str, Any]]:
    admin = CatalogAdmin(api)
    return [("GET", "/sites/{site}/settings", admin.get_settings),
            ("PUT", "/sites/{site}/settings", admin.put_settings),
            ("POST", "/sites/{site}/segments:bulk", admin.bulk_segments)]


def settings_payload(body: Any) -> dict[str, Any]:
    """``{large_change_min_removed?, large_change_ratio?}`` -> a SetSiteSettings payload, or 400."""
    b = require_object(body)
    extra = sorted(set(b) - set(FIELDS))
    if extra:
        raise ApiError(400, "INVALID_FIELD", f"unknown field {extra[0]!r}; settings are {', '.join(FIELDS)}",
                       f"$.{extra[0]}")
    payload = {k: b.get(k) for k in FIELDS}
    try:
        check_payload(payload, "$")
    except ProcessorError as err:
        raise ApiError(400, err.code, err.message, err.path) from None
    return payload


class CatalogAdmin:
    def __init__(self, api: "Api") -> None:
        self.api = api

    async def get_settings(self, request: aioweb.Request) -> aioweb.Response:
        self.api.principal(request, READ)
        return aioweb.json_response({**self.api.site(request).settings.as_dict(), "defaults": DEFAULTS.as_dict()})

    async def put_settings(self, request: aioweb.Request) -> aioweb.Response:
        p = self.api.principal(request, WRITE_SETTINGS)
        payload = settings_payload(await self.api.body(request))
        return await self.api._submit(request, p, "SetSiteSettings", payload)

    def _command(self, request: aioweb.Request, principal: Any, site_id: str, ptype: str,
                 payload: dict[str, Any]) -> Command:
        """A command as ``Api._submit`` makes one (the caller's token on it with COMMANDS_REQUIRE_TOKEN=1)."""
        token = request.headers.get("Authorization", "").partition(" ")[2].strip() or None
        now = int(time.time() * 1000)
        return Command(command_ids.new_command_id(now), site_id, now, Actor(principal.sub, principal.roles), ptype,
                       payload, auth_token=token if self.api.settings.commands_require_token else None)

    async def bulk_segments(self, request: aioweb.Request) -> aioweb.Response:
        p = self.api.principal(request, WRITE_CATALOG)
        dry = dry_run_param(request.query.get("dry_run"))
        site = self.api.site(request)
        items = only_field(await self.api.body(request), "segments")
        if not isinstance(items, list) or not items or len(items) > bulk.MAX_ROWS:
            raise ApiError(400, "INVALID_FIELD", f"segments must be an array of 1 to {bulk.MAX_ROWS} rows "
                           "{segment_id, name, managed?}", "$.segments")
        if not dry:
            self.api.write_limiter.hit(site.site_id, p.sub)  # one bulk request counts as one write
        results: list[dict[str, Any]] = []
        queued: list[tuple[dict[str, Any], list[Command]]] = []  # rows to send: their result, their commands
        counts = {"created": 0, "updated": 0, "unchanged": 0, "rejected": 0}
        for row in bulk.check_rows(items):
            if isinstance(row, bulk.RowProblem):
                results.append({**row.as_dict(), "segment_id": _seg(items[row.index])})
                counts["rejected"] += 1
                continue
            action = "update" if row.segment_id in site.segments else "create"
            out: dict[str, Any] = {"index": row.index, "segment_id": row.segment_id, "action": action}
            cmds = [self._command(request, p, site.site_id, t, pl) for t, pl in bulk.row_commands(site, row)]
            try:
                for i, c in enumerate(cmds):
                    denied = command_allowed(c)
                    if denied:
                        raise ApiError(403, denied.code, f"{denied.message}; managed needs role site_admin",
                                       f"$.segments[{row.index}].managed")
                    if c.payload_type == "EnableSegmentAutomation" and action == "update":
                        await self.api.guard.check(request, site, c, None)
            except LargeChange as err:
                results.append({**out, "status": "REJECTED", "code": err.code,
                                "path": f"$.segments[{row.index}].managed",
                                "message": f"{err.message}. Turn automation on for this segment on its own "
                                           f"(console, or `segments manage {row.segment_id}`) to confirm it",
                                "impact": err.extra["impact"]})
                counts["rejected"] += 1
                continue
            except ApiError as err:
                results.append({**out, "status": "REJECTED", "code": err.code, "message": err.message,
                                "path": err.path})
                counts["rejected"] += 1
                continue
            if not cmds:
                results.append({**out, "action": "none", "status": "UNCHANGED", "commands": []})
                counts["unchanged"] += 1
                continue
            result = {**out, "status": "VALID" if dry else "QUEUED",
                      "commands": [{"type": c.payload_type} for c in cmds]}
            results.append(result)
            if not dry:
                queued.append((result, cmds))
            counts["created" if action == "create" else "updated"] += 1
        if queued:  # the rows' commands as Batch commands: one backfill per partition for them all
            counts["rejected"] += await send_batches(self, request, p, site, queued)
            counts["created"] -= sum(r["status"] == "REJECTED" and r["action"] == "create" for r, _ in queued)
            counts["updated"] -= sum(r["status"] == "REJECTED" and r["action"] == "update" for r, _ in queued)
        return aioweb.json_response({"dry_run": dry, **counts, "results": results})


async def send_batches(admin: CatalogAdmin, request: aioweb.Request, principal: Any, site: Any,
                       queued: list[tuple[dict[str, Any], list[Command]]]) -> int:
    """Send the rows' commands as ``Batch`` commands of up to 1,000 operations (processor/catalog/
    batch.py; one catalog entry and one backfill per users partition each, instead of one per
    command). A batch is all or nothing, so a row whose operation this catalog would reject is
    answered REJECTED here, with that operation's code, and left out (it never sinks the others).
    Each row's commands then name the batch's command id. Returns how many rows were left out."""
    from processor.catalog.batch import MAX_OPERATIONS, batch_payload, check_batch
    from processor.contract.models import BATCH

    dropped = 0
    chunks: list[list[tuple[dict[str, Any], list[Command]]]] = [[]]
    for row in queued:
        if sum(len(c) for _, c in chunks[-1]) + len(row[1]) > MAX_OPERATIONS:
            chunks.append([])
        chunks[-1].append(row)
    for chunk in chunks:
        while chunk:
            batch = admin._command(request, principal, site.site_id, BATCH,
                                   batch_payload([(c.payload_type, c.payload) for _, cmds in chunk for c in cmds]))
            decisions, _ = check_batch(site, batch)
            owner = [row for row in chunk for _ in row[1]]  # the row of each operation, in order
            bad = next(((i, d) for i, d in enumerate(decisions) if not d.accepted), None)
            if bad is None:
                break
            result = owner[bad[0]][0]
            result.update(status="REJECTED", code=bad[1].code, message=bad[1].message,
                          path=f"$.segments[{result['index']}]")
            result.pop("commands", None)
            chunk.remove(owner[bad[0]])
            dropped += 1
        if not chunk:
            continue
        await admin.api.model.send_command(site.site_id, encode_command(batch))
        for result, _ in chunk:
            for c in result["commands"]:
                c.update(command_id=batch.command_id, poll=f"/sites/{site.site_id}/commands/{batch.command_id}")
    return dropped


def _seg(item: Any) -> str | None:
    v = item.get("segment_id") if isinstance(item, dict) else None
    return v if isinstance(v, str) else None
