"""Command progress and bulk rule writes over HTTP.

* ``GET /sites/{site}/commands/{id}`` gains ``state`` (``PENDING``, ``ACCEPTED``, ``APPLYING``,
  ``APPLIED``, ``REJECTED``) and, for an accepted command, ``progress``: its backfill's users
  partitions done out of total and the users evaluated, added and removed so far, folded from
  the catalog log (processor/catalog/progress.py), so any worker answers. ``status`` keeps its
  meaning (the decision: ``PENDING``, ``ACCEPTED`` or ``REJECTED``), so clients that wait for
  ``ACCEPTED`` keep working.
* ``GET /sites/{site}/segments`` gains, per segment, ``current_as_of`` (when the last backfill
  that touched it finished) and ``applying`` (the commands whose backfill of it is running).
* ``POST /sites/{site}/rules:bulk`` creates or updates many rules as one ``Batch`` command
  (processor/catalog/batch.py): decided as a whole, one backfill per users partition for all of
  them. ``?dry_run=true`` lists every invalid rule without sending anything. Guarded like a
  single rule write, on the batch's combined impact (``409 LARGE_CHANGE``; ``"confirm"``).

Hooked into processor/http/api.py with one line each.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aiohttp import web as aioweb

from processor.api import command_ids
from processor.api.auth import WRITE_RULES
from processor.api.errors import ApiError
from processor.api.requests import dry_run_param, only_field, rule_payload
from processor.catalog.batch import MAX_OPERATIONS, batch_payload, check_batch
from processor.catalog.model import CommandRecord
from processor.catalog.registry import CatalogRegistry
from processor.contract.codec import encode_command
from processor.contract.limits import DEFAULT_LIMITS
from processor.contract.models import BATCH, Actor, Command
from processor.http.guard import take_confirm

if TYPE_CHECKING:
    from processor.http.api import Api

QUERY = {"bulk_rules": {"dry_run"}}


def command_fields(registry: CatalogRegistry, site_id: str, rec: CommandRecord) -> dict[str, Any]:
    """``state`` and, once accepted, ``progress`` of a decided command (docs/api.md)."""
    if rec.status != "ACCEPTED":
        return {"state": rec.status}
    if rec.backfill is None:  # nothing to backfill: applied when it was folded
        return {"state": "APPLIED", "progress": {
            "partitions_done": 0, "partitions_total": 0, "users_evaluated": 0, "users_added": 0,
            "users_removed": 0, "segments": [], "updated_at": rec.processed_at, "applied_at": rec.processed_at,
            "failed_partitions": []}}
    prog = registry.progress.get(site_id, rec.command_id)
    if prog is None or prog.catalog_offset != rec.catalog_offset:
        return {"state": "ACCEPTED"}  # decided by a worker of an earlier version: no progress is reported
    return {"state": prog.state, "progress": prog.as_dict()}


def segment_fields(registry: CatalogRegistry, site_id: str, segment_id: str) -> dict[str, Any]:
    """A segment's ``current_as_of`` and the commands still ``applying`` to it."""
    applying = []
    for p in registry.progress.applying(site_id, segment_id):
        done, evaluated, added, removed = p.totals()
        applying.append({"command_id": p.command_id, "state": p.state, "partitions_done": done,
                         "partitions_total": p.total, "users_evaluated": evaluated, "users_added": added,
                         "users_removed": removed})
    return {"current_as_of": registry.progress.current_as_of(site_id, segment_id), "applying": applying}


def routes(api: "Api") -> list[tuple[str, str, Any]]:
    return [("POST", "/sites/{site}/rules:bulk", BulkRules(api).bulk_rules)]


class BulkRules:
    """``POST /sites/{site}/rules:bulk``: ``{"rules": [{rule_id, segment_id, name?, condition,
    enabled?}, ...]}``, each created (new id) or updated (existing id), as one Batch command."""

    def __init__(self, api: "Api") -> None:
        self.api = api

    def _operations(self, body: Any, site_rules: set[str]) -> list[tuple[str, dict[str, Any]]]:
        rules = only_field(body, "rules")  # ("confirm" was taken off: processor/http/guard.py)
        if not isinstance(rules, list) or not rules:
            raise ApiError(400, "INVALID_FIELD", "rules must be a non-empty array of rules", "$.rules")
        if len(rules) > MAX_OPERATIONS:
            raise ApiError(400, "LIMIT_EXCEEDED", f"at most {MAX_OPERATIONS} rules per request ({len(rules)} "
                           "sent): split the file (the CLI's rules apply does)", "$.rules")
        ops: list[tuple[str, dict[str, Any]]] = []
        seen: set[str] = set()
        for i, item in enumerate(rules):
            try:
                payload = rule_payload(item)
            except ApiError as err:
                raise ApiError(err.status, err.code, err.message,
                               f"$.rules[{i}]" + (err.path or "$")[1:]) from None
            if payload["rule_id"] in seen:
                raise ApiError(400, "INVALID_FIELD", f"rule {payload['rule_id']!r} appears twice",
                               f"$.rules[{i}].rule_id")
            seen.add(payload["rule_id"])
            ops.append(("UpdateRule" if payload["rule_id"] in site_rules else "CreateRule", payload))
        return ops

    async def bulk_rules(self, request: aioweb.Request) -> aioweb.Response:
        api = self.api
        principal = api.principal(request, WRITE_RULES)
        site = api.site(request)
        body, confirmed = take_confirm(await api.body(request))
        ops = self._operations(body, set(site.rules))
        token = request.headers.get("Authorization", "").partition(" ")[2].strip() or None
        now = int(time.time() * 1000)
        cmd = Command(command_ids.new_command_id(now), site.site_id, now, Actor(principal.sub, principal.roles),
                      BATCH, batch_payload(ops), auth_token=token if api.settings.commands_require_token else None)
        created = sum(t == "CreateRule" for t, _ in ops)
        counts = {"operations": len(ops), "created": created, "updated": len(ops) - created}
        if dry_run_param(request.query.get("dry_run")):  # every operation's own validation, against this worker's catalog
            decisions, _ = check_batch(site, cmd)
            errors = [{"index": i, "rule_id": ops[i][1]["rule_id"], "code": d.code,
                       "path": (d.path or "").replace("$.payload.operations", "$.rules", 1), "message": d.message}
                      for i, d in enumerate(decisions) if not d.accepted]
            if not errors:
                return aioweb.json_response({"valid": True, "errors": [], **counts})
            first = errors[0]
            return aioweb.json_response({"valid": False, "code": first["code"], "message": first["message"],
                                         "path": first["path"], "errors": errors, **counts}, status=422)
        # the large-change guard over the batch's combined impact (409 LARGE_CHANGE: nothing is produced)
        await api.guard.check_all(request, site, [Command(cmd.command_id, site.site_id, now, cmd.actor, t, p)
                                                  for t, p in ops], confirmed)
        value = encode_command(cmd)
        if len(value) > DEFAULT_LIMITS.max_message_bytes:
            raise ApiError(413, "BODY_TOO_LARGE", f"these rules make a {len(value)}-byte command; the limit is "
                           f"{DEFAULT_LIMITS.max_message_bytes} bytes: send fewer rules per request", "$.rules")
        api.write_limiter.hit(site.site_id, principal.sub)
        await api.model.send_command(site.site_id, value)
        return aioweb.json_response({"command_id": cmd.command_id, "status": "PENDING",
                                     "poll": f"/sites/{site.site_id}/commands/{cmd.command_id}", **counts},
                                    status=202)
