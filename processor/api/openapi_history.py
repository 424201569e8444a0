"""OpenAPI of the history and audit reads (processor/http/history.py), merged into
processor/api/openapi.py's document in one line each (paths, schemas)."""

from __future__ import annotations

from typing import Any


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


_STR, _INT = {"type": "string"}, {"type": "integer"}
_NSTR = {"type": ["string", "null"]}
_INSTANT = {"type": "string", "description": "epoch milliseconds, a date (2026-11-20, UTC) or an ISO-8601 "
                                            "date-time; as an end (until, as_of) a date means the end of that day"}


def params(site: dict[str, Any], with_window: bool = True) -> list[dict[str, Any]]:
    out = [site, {"name": "cursor", "in": "query", "schema": _STR, "description": "next_cursor of the page before"},
           {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}}]
    if with_window:
        out += [{"name": "since", "in": "query", "schema": _INSTANT},
                {"name": "until", "in": "query", "schema": _INSTANT, "description": "inclusive"}]
    return out


AS_OF = {"name": "as_of", "in": "query", "required": False, "schema": _INSTANT,
         "description": "explain from the kept history as of that time (the change in force then, the values "
                        "recorded with it, the rules as they were); without it: the stored profile now"}

SCHEMAS: dict[str, Any] = {
    "HistoryChange": {"type": "object", "required": [
        "change_id", "site_id", "user_id", "segment_id", "change", "cause_kind", "cause_id", "matched_rule_ids",
        "occurred_at", "emitted_at", "evidence", "actor"], "properties": {
        "change_id": _STR, "site_id": _STR, "user_id": _STR, "segment_id": _STR,
        "change": {"type": "string", "enum": ["ADDED", "REMOVED", "UNKNOWN"]},
        "cause_kind": _STR, "cause_id": _STR, "matched_rule_ids": {"type": "array", "items": _STR},
        "occurred_at": _INT, "emitted_at": {"type": "integer", "description": "when the change was decided"},
        "evidence": {"type": ["object", "null"], "additionalProperties": _STR,
                     "description": "profile field -> its value as JSON text, as the decision read it"},
        "actor": {"type": ["object", "null"], "description": "who issued the command that caused it",
                  "properties": {"user_id": _STR, "roles": {"type": "array", "items": _STR}}}}},
    "HistoryIndex": {"type": "object", "description": "the worker's history index: retention and how far behind "
                                                      "the topics it is (lag: records not yet indexed)",
                     "properties": {"max_age_days": _INT, "max_changes_per_user": _INT,
                                    "lag": {"type": ["integer", "null"]}, "open": {"type": "boolean"},
                                    "read": _INT,
                                    "skipped": {"type": "integer", "description": (
                                        "records since the indexer started that it could not decode (logged; "
                                        "not in the history)")},
                                    "complete": {"type": "boolean", "description": (
                                        "the index read the changes topic from its first record")},
                                    "indexer": {"type": "boolean"}}},
    "UserHistory": {"type": "object", "required": ["user_id", "changes", "next_cursor", "pruned", "index"],
                    "properties": {"user_id": _STR, "changes": {"type": "array", "items": _ref("HistoryChange")},
                                   "next_cursor": _NSTR,
                                   "pruned": {"type": "boolean", "description": "the per-user limit let older "
                                                                                "changes go"},
                                   "index": _ref("HistoryIndex")}},
    "SegmentHistory": {"type": "object", "required": ["segment_id", "exists", "changes", "next_cursor", "series",
                                                      "index"], "properties": {
        "segment_id": _STR, "name": _NSTR, "exists": {"type": "boolean"},
        "changes": {"type": "array", "items": _ref("HistoryChange")}, "next_cursor": _NSTR,
        "series": {"type": "array", "description": "size at the end of each UTC day of the window",
                   "items": {"type": "object", "required": ["date", "added", "removed", "size"], "properties": {
                       "date": {"type": "string", "format": "date"}, "added": _INT, "removed": _INT,
                       "size": _INT}}},
        "series_basis": {"type": "string", "enum": ["live", "history"],
                         "description": "history: counted forward from the index (complete, or a "
                                        "worker could not answer); live: counted back from the member "
                                        "count now, gathered from every worker (an index that missed "
                                        "the topic's start)"},
        "index": _ref("HistoryIndex")}},
    "AuditRecord": {"type": "object", "required": [
        "catalog_offset", "command_id", "type", "actor", "issued_at", "processed_at", "status", "summary",
        "payload", "impact"], "properties": {
        "catalog_offset": _INT, "command_id": _STR, "type": _STR,
        "actor": {"type": "object", "properties": {"user_id": _STR, "roles": {"type": "array", "items": _STR}}},
        "issued_at": _INT, "processed_at": _INT, "status": {"type": "string", "enum": ["ACCEPTED", "REJECTED"]},
        "code": _NSTR, "message": _NSTR, "summary": _STR, "payload": {"type": "object"},
        "impact": {"type": "object", "required": ["added", "removed"], "description": "changes it caused so far",
                   "properties": {"added": _INT, "removed": _INT}}}},
    "AuditPage": {"type": "object", "required": ["commands", "next_cursor", "index"], "properties": {
        "commands": {"type": "array", "items": _ref("AuditRecord")}, "next_cursor": _NSTR,
        "index": _ref("HistoryIndex")}},
}


def paths(site: dict[str, Any], user: dict[str, Any], segment: dict[str, Any],
          errors: Any, resp: Any) -> dict[str, Any]:
    errs = {**errors(400, 401, 403, 503)}
    return {
        "/sites/{site}/users/{user}/history": {"get": {
            "summary": "A user's membership changes, newest first: time, segment, cause, matched rules, the "
                       "profile values recorded, and the admin behind a command cause",
            "parameters": [*params(site), user,
                           {"name": "segment", "in": "query", "schema": _STR, "description": "only this segment"}],
            "responses": {"200": resp("A page", _ref("UserHistory")), **errs}}},
        "/sites/{site}/segments/{segment}/history": {"get": {
            "summary": "A segment's membership changes in [since, until], newest first, and its size at the end "
                       "of each UTC day",
            "parameters": [*params(site), segment],
            "responses": {"200": resp("A page and the size series", _ref("SegmentHistory")), **errs}}},
        "/sites/{site}/audit": {"get": {
            "summary": "Every command from the catalog log, newest first: actor, time, summary, decision and impact",
            "parameters": params(site),
            "responses": {"200": resp("A page", _ref("AuditPage")), **errs}}},
    }
