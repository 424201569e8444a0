"""OpenAPI 3.1 description of the admin API (served at /openapi.json, copied to docs/openapi.json)."""

from __future__ import annotations

from typing import Any

from processor.api import openapi_history
from processor.contract.ids import ID_KINDS, MAX_ID_CHARS, PATTERNS, RULES

ERROR = {"$ref": "#/components/schemas/Error"}


def _resp(desc: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": desc}
    if schema is not None:
        out["content"] = {"application/json": {"schema": schema}}
    return out


def _errors(*codes: int) -> dict[str, Any]:
    names = {400: "Invalid request", 401: "Missing, invalid or expired token",
             403: "Wrong site or role", 404: "Not found", 413: "Body too large",
             410: "No longer tracked", 422: "Rule or request rejected by validation",
             429: "Too many writes for this token (RATE_LIMITED) or full-site scans on a worker (SCAN_BUSY); "
                  "see Retry-After",
             503: "A worker is unavailable or did not answer in time; retry (see Retry-After)"}
    out = {str(c): _resp(names[c], ERROR) for c in codes}
    for c in {429, 503} & set(codes):
        out[str(c)]["headers"] = {"Retry-After": {"description": "seconds to wait before retrying",
                                                  "schema": {"type": "string", "pattern": "^[0-9]+$"}}}
    return out


def _id(param: str, name: str) -> dict[str, Any]:
    """A path parameter carrying contract id ``name``: its limits from processor/contract/ids.py."""
    kind = ID_KINDS[name]
    return {"name": param, "in": "path", "required": True,
            "description": f"{name}: 1-{MAX_ID_CHARS} characters, {RULES[kind]}; otherwise 400 INVALID_ID",
            "schema": {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS, "pattern": PATTERNS[kind]}}


SITE = _id("site", "site_id")
SEGMENT = _id("segment", "segment_id")
RULE = _id("rule", "rule_id")
USER = _id("user", "user_id")
COMMAND = _id("command", "command_id")
DRY = {"name": "dry_run", "in": "query", "required": False, "schema": {"type": "string", "enum": ["true", "false"]}}
ACCEPTED = _resp("Command queued", {"$ref": "#/components/schemas/Accepted"})
DRYRUN = _resp("Validation result (dry run)", {"$ref": "#/components/schemas/Validation"})
STD = _errors(400, 401, 403)


def _bulk_paths() -> dict[str, Any]:
    """``POST /sites/{site}/rules:bulk`` (processor/http/progress.py)."""
    return {"/sites/{site}/rules:bulk": {"post": {
        "summary": "Create or update many rules as one Batch command: decided as a whole (nothing is applied "
                   "if one rule is invalid), one backfill for all of them. ?dry_run=true lists every invalid rule",
        "parameters": [SITE, DRY],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["rules"], "additionalProperties": False, "properties": {
                "rules": {"type": "array", "minItems": 1, "maxItems": 1000,
                          "items": {"$ref": "#/components/schemas/RuleBody"}}}}}}},
        "responses": {"202": _resp("Batch command queued", {"$ref": "#/components/schemas/BulkAccepted"}),
                      "200": DRYRUN, **STD, **_errors(413, 422, 429)}}}}


def _progress_schemas() -> dict[str, Any]:
    """A command's status with its backfill's progress, and the bulk answer."""
    count = {"type": "integer", "minimum": 0}
    return {
        "Progress": {"type": "object", "required": ["partitions_done", "partitions_total", "users_evaluated",
                                                    "users_added", "users_removed", "failed_partitions"],
                     "properties": {
            "partitions_done": count, "partitions_total": count, "users_evaluated": count, "users_added": count,
            "users_removed": count, "segments": {"type": "array", "items": {"type": "string"}},
            "updated_at": {"type": ["integer", "null"], "description": "epoch ms of the last report"},
            "applied_at": {"type": ["integer", "null"], "description": "epoch ms: every partition done"},
            "failed_partitions": {"type": "array", "items": {"type": "integer"}},
            "code": {"type": "string", "description": "BACKFILL_FAILED while a partition's backfill failed"},
            "message": {"type": "string"}}},
        "CommandStatus": {"type": "object", "required": ["command_id", "status", "state"], "properties": {
            "command_id": {"type": "string"},
            "status": {"enum": ["PENDING", "ACCEPTED", "REJECTED"], "description": "the decision"},
            "state": {"enum": ["PENDING", "ACCEPTED", "APPLYING", "APPLIED", "REJECTED"],
                      "description": "APPLIED: every users partition finished the command's backfill"},
            "code": {"type": ["string", "null"]}, "message": {"type": ["string", "null"]},
            "processed_at": {"type": "integer"},
            "progress": {"$ref": "#/components/schemas/Progress"}}},
        "BulkAccepted": {"type": "object", "required": ["command_id", "status", "poll", "operations"],
                         "properties": {
            "command_id": {"type": "string"}, "status": {"const": "PENDING"}, "poll": {"type": "string"},
            "operations": count, "created": count, "updated": count}},
    }


def spec() -> dict[str, Any]:
    from processor.api.openapi_admin import extend  # guarded changes, site settings, bulk segments

    return extend({
        "openapi": "3.1.0",
        "info": {"title": "Segment automation admin API", "version": "1.0.0",
                 "description": "Served by every worker. Reads gather from all workers; writes are commands."},
        "security": [{"bearer": []}],
        "paths": {
            "/sites/{site}/fields": {"get": {
                "summary": "Field catalog: standard and custom profile fields with the operators valid for each",
                "parameters": [SITE],
                "responses": {"200": _resp("Fields", {"$ref": "#/components/schemas/FieldCatalog"}), **STD}}},
            "/sites/{site}/segments": {"get": {
                "summary": "Segments with member and rule counts", "parameters": [SITE],
                "responses": {"200": _resp("Segments", {"type": "object"}), **STD, **_errors(429, 503)}}},
            "/sites/{site}/segments/{segment}/automation": {"post": {
                "summary": "Enable or disable automation of a segment", "parameters": [SITE, SEGMENT, DRY],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["enabled"], "additionalProperties": False, "properties": {
                        "enabled": {"type": "boolean"}, "remove_members": {"type": "boolean"}}}}}},
                "responses": {"202": ACCEPTED, "200": DRYRUN, **STD, **_errors(413, 422, 429)}}},
            "/sites/{site}/segments/{segment}/members": {"get": {
                "summary": "Members of a segment with name and e-mail (cursor pagination, sorted by user id); "
                           "q: only those whose id, first name, last name, full name or e-mail starts with it "
                           "(case-insensitive)",
                "parameters": [SITE, SEGMENT,
                               {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                               {"name": "limit", "in": "query",
                                "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
                               {"name": "q", "in": "query", "description": "search term (a prefix); empty: every member",
                                "schema": {"type": "string", "maxLength": 255}}],
                "responses": {"200": _resp("A page", {"$ref": "#/components/schemas/MembersPage"}),
                              **STD, **_errors(404, 429, 503)}}},
            "/sites/{site}/segments/{segment}/members.csv": {"get": {
                "summary": "Every member of a segment as CSV (user_id, name, email, member_since_utc, "
                           "matched_rule_ids), streamed, sorted by user id; cells that a spreadsheet would run "
                           "as a formula start with a single quote",
                "parameters": [SITE, SEGMENT],
                "responses": {"200": {"description": "The CSV file (UTF-8 with a byte-order mark)",
                                      "headers": {"Content-Disposition": {"schema": {"type": "string"}}},
                                      "content": {"text/csv": {"schema": {"type": "string"}}}},
                              **STD, **_errors(404, 503)}}},
            "/sites/{site}/rules": {
                "get": {"summary": "Rules with status (enabled, disabled, broken + why)", "parameters": [SITE],
                        "responses": {"200": _resp("Rules", {"type": "object"}), **STD}},
                "post": {"summary": "Create a rule (or validate with ?dry_run=true)", "parameters": [SITE, DRY],
                         "requestBody": {"required": True, "content": {"application/json": {
                             "schema": {"$ref": "#/components/schemas/RuleBody"}}}},
                         "responses": {"202": ACCEPTED, "200": DRYRUN, **STD, **_errors(413, 422, 429)}}},
            "/sites/{site}/rules/preview": {"post": {
                "summary": "Who a candidate rule would add/remove (nothing changes)", "parameters": [SITE],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["segment_id", "condition"], "additionalProperties": False,
                    "properties": {
                        "segment_id": {"type": "string"}, "rule_id": {"type": "string"},
                        "condition": {"type": ["object", "string"]}}}}}},
                "responses": {"200": _resp("Preview", {"type": "object"}), **STD, **_errors(413, 422, 429, 503)}}},
            "/sites/{site}/rules/{rule}": {
                "put": {"summary": "Update a rule", "parameters": [SITE, RULE, DRY],
                        "requestBody": {"required": True, "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/RuleBody"}}}},
                        "responses": {"202": ACCEPTED, "200": DRYRUN, **STD, **_errors(413, 422, 429)}},
                "delete": {"summary": "Delete a rule", "parameters": [SITE, RULE, DRY],
                           "responses": {"202": ACCEPTED, "200": DRYRUN, **STD, **_errors(422, 429)}}},
            "/sites/{site}/commands/{command}": {"get": {
                "summary": "Outcome of a command: status (the decision: PENDING until processed, then ACCEPTED "
                           "or REJECTED), state (PENDING, ACCEPTED, APPLYING, APPLIED or REJECTED) and the "
                           "backfill's progress; 410 COMMAND_EXPIRED once an API command is past the "
                           "de-duplication window and the status TTL",
                "parameters": [SITE, COMMAND],
                "responses": {"200": _resp("Status", {"$ref": "#/components/schemas/CommandStatus"}), **STD,
                              **_errors(410)}}},
            **_bulk_paths(),
            "/sites/{site}/users/{user}/segments": {"get": {
                "summary": "Segments the automation put a user in", "parameters": [SITE, USER],
                "responses": {"200": _resp("Segments", {"type": "object"}), **STD, **_errors(404, 503)}}},
            "/sites/{site}/users/{user}/segments/{segment}/explain": {"get": {
                "summary": "Why is (or isn't) this user in this segment: every rule's evaluation tree "
                           "(with as_of: as it was then, from the history)",
                "parameters": [SITE, USER, SEGMENT, openapi_history.AS_OF],
                "responses": {"200": _resp("Explanation", {"type": "object"}), **STD, **_errors(404, 503)}}},
            **_bridge_paths(),
            **openapi_history.paths(SITE, USER, SEGMENT, _errors, _resp),  # history and audit
            "/healthz": {"get": {"security": [], "responses": {"200": _resp("Alive")}}},
            "/readyz": {"get": {"security": [], "responses": {"200": _resp("Ready"), "503": _resp("Not ready")}}},
            "/metrics": {"get": {"security": [], "responses": {"200": _resp("Prometheus metrics")}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {
                "Error": {"type": "object", "required": ["code", "message"], "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"}, "path": {"type": "string"}}},
                "Accepted": {"type": "object", "required": ["command_id", "status", "poll"], "properties": {
                    "command_id": {"type": "string"}, "status": {"const": "PENDING"}, "poll": {"type": "string"}}},
                **_progress_schemas(),
                "Validation": {"type": "object", "required": ["valid", "errors"], "properties": {
                    "valid": {"type": "boolean"}, "errors": {"type": "array", "items": {"type": "object"}}}},
                "RuleBody": {"type": "object", "required": ["segment_id", "condition"],
                             "additionalProperties": False, "properties": {
                    "rule_id": {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS,
                                "pattern": PATTERNS[ID_KINDS["rule_id"]]},
                    "segment_id": {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS,
                                   "pattern": PATTERNS[ID_KINDS["segment_id"]]},
                    "name": {"type": "string"},
                    "condition": {"type": ["object", "string"], "description": "JSON tree or text form"},
                    "enabled": {"type": "boolean"}}},
                "FieldCatalog": {"type": "object", "required": ["fields", "operators"], "properties": {
                    "fields": {"type": "array", "items": {
                        "type": "object", "required": ["key", "label", "type", "custom", "group", "options",
                                                       "operators"], "properties": {
                            "key": {"type": "string", "description": "name in profiles and rules "
                                                                     "(custom: profile_field_<shortname>)"},
                            "label": {"type": "string"},
                            "type": {"type": "string", "enum": ["TEXT", "TEXTAREA", "MENU", "MULTISELECT",
                                                                "CHECKBOX", "DATETIME", "NUMBER"]},
                            "custom": {"type": "boolean"},
                            "group": {"type": "string"},
                            "shortname": {"type": "string"},
                            "options": {"type": "array", "items": {"type": "string"}},
                            "operators": {"type": "array", "items": {"type": "string"}}}}},
                    "operators": {"type": "object", "additionalProperties": {
                        "type": "object", "required": ["takes_value", "description"], "properties": {
                            "takes_value": {"type": "boolean"}, "description": {"type": "string"}}}}}},
                **_BRIDGE_SCHEMAS,
                **openapi_history.SCHEMAS,
                "MembersPage": {"type": "object", "required": ["members", "next_cursor"], "properties": {
                    "members": {"type": "array", "items": {"type": "object", "properties": {
                        "user_id": {"type": "string"}, "since": {"type": ["integer", "null"]},
                        "name": {"type": ["string", "null"], "description": "firstname lastname"},
                        "email": {"type": ["string", "null"]},
                        "matched_rule_ids": {"type": "array", "items": {"type": "string"}}}}},
                    "next_cursor": {"type": ["string", "null"]}}},
            },
        },
    })


# ------------------------------------------------------------------ bridge endpoints
# processor/http/ingest.py, catalog_writes.py, user_profiles.py (registered by processor/http/bridges.py)

SHORTNAME = {"name": "shortname", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
_NAME = {"type": "string", "minLength": 1, "maxLength": 255}
_VALUE = {"type": ["string", "number", "boolean", "null", "array"], "items": {"type": "string"}}

_BRIDGE_SCHEMAS: dict[str, Any] = {
    "IngestRecord": {"type": "object", "required": ["op", "user_id", "event_id", "occurred_at"],
                     "additionalProperties": False, "properties": {
        "op": {"type": "string", "enum": ["upsert", "delete"]},
        "user_id": {"type": "string", "minLength": 1, "maxLength": 255},
        "event_id": {"type": "string", "minLength": 1, "maxLength": 255,
                     "description": "unique per change (de-duplication), e.g. moodle-<siteid>-<queueid>"},
        "occurred_at": {"type": "integer", "minimum": 0, "description": "epoch milliseconds"},
        "event_type": {"type": "string", "enum": ["USER_CREATED", "USER_UPDATED", "USER_DELETED"],
                       "description": "upsert: USER_CREATED or USER_UPDATED (default); delete: USER_DELETED"},
        "profile": {"type": "object", "additionalProperties": _VALUE,
                    "description": "upsert: the full snapshot (Moodle field names, custom fields as "
                                   "profile_field_<shortname>, datetimes epoch seconds); delete: none"}}},
    "IngestResult": {"type": "object", "required": ["accepted", "rejected", "results"], "properties": {
        "accepted": {"type": "integer"}, "rejected": {"type": "integer"},
        "results": {"type": "array", "items": {"type": "object", "required": ["index", "status"], "properties": {
            "index": {"type": "integer"}, "event_id": {"type": ["string", "null"]},
            "status": {"type": "string", "enum": ["ACCEPTED", "REJECTED"]},
            "code": {"type": "string"}, "path": {"type": "string"}, "message": {"type": "string"}}}}}},
    "ProfilesPage": {"type": "object", "required": ["users", "next_cursor"], "properties": {
        "users": {"type": "array", "items": {"type": "object", "required": ["user_id", "deleted", "profile"],
                                             "properties": {"user_id": {"type": "string"},
                                                            "deleted": {"type": "boolean"},
                                                            "profile": {"type": "object"}}}},
        "next_cursor": {"type": ["string", "null"]}}},
}


def _bridge_paths() -> dict[str, Any]:
    catalog_errors = _errors(400, 401, 403, 413, 429)  # catalog writes are commands: rate limited like rules
    return {
        "/sites/{site}/ingest/users": {"post": {
            "summary": "User snapshots and deletions from an LMS bridge (role system or ingest); each record is "
                       "ACCEPTED only once Kafka acknowledged it",
            "parameters": [SITE],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["records"], "additionalProperties": False, "properties": {
                    "records": {"type": "array", "maxItems": 500,
                                "items": {"$ref": "#/components/schemas/IngestRecord"}}}}}}},
            "responses": {"200": _resp("Per-record results (also when some are rejected)",
                                       {"$ref": "#/components/schemas/IngestResult"}),
                          **_errors(400, 401, 403, 413, 429),
                          "503": {**_resp("Kafka did not acknowledge the records: nothing was accepted, resend",
                                          ERROR),
                                  "headers": {"Retry-After": {"schema": {"type": "string"}}}}}}},
        "/sites/{site}/segments/{segment}": {
            "put": {"summary": "Create or rename a segment (UpsertSegment; role site_admin or system)",
                    "parameters": [SITE, SEGMENT],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {
                        "type": "object", "required": ["name"], "additionalProperties": False,
                        "properties": {"name": _NAME}}}}},
                    "responses": {"202": ACCEPTED, **catalog_errors}},
            "delete": {"summary": "Delete a segment and its rules (DeleteSegment; role site_admin or system)",
                       "parameters": [SITE, SEGMENT], "responses": {"202": ACCEPTED, **STD, **_errors(429)}}},
        "/sites/{site}/fields/{shortname}": {
            "put": {"summary": "Declare a custom profile field (UpsertProfileField; role site_admin or system)",
                    "parameters": [SITE, SHORTNAME],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {
                        "type": "object", "required": ["datatype"], "additionalProperties": False, "properties": {
                            "name": _NAME,
                            "datatype": {"type": "string", "enum": ["TEXT", "TEXTAREA", "MENU", "MULTISELECT",
                                                                    "CHECKBOX", "DATETIME", "NUMBER"]},
                            "options": {"type": "array", "maxItems": 1000,
                                        "items": {"type": "string", "maxLength": 255}}}}}}},
                    "responses": {"202": ACCEPTED, **catalog_errors}},
            "delete": {"summary": "Delete a custom profile field (DeleteProfileField; role site_admin or system)",
                       "parameters": [SITE, SHORTNAME], "responses": {"202": ACCEPTED, **STD, **_errors(429)}}},
        "/sites/{site}/users": {"get": {
            "summary": "Stored user profiles (what the processor holds), sorted by user id, cursor pagination",
            "parameters": [SITE, {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                           {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                                       "maximum": 500}}],
            "responses": {"200": _resp("A page", {"$ref": "#/components/schemas/ProfilesPage"}),
                          **STD, **_errors(503)}}},
    }


if __name__ == "__main__":  # regenerate docs/openapi.json
    import json
    import sys

    sys.stdout.write(json.dumps(spec(), indent=1) + "\n")
