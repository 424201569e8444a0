"""OpenAPI for guarded changes and catalog management (processor/http/guard.py, catalog_admin.py).

:func:`extend` adds to the document of processor/api/openapi.py: the 409 ``LARGE_CHANGE`` answer
and the optional ``confirm`` member on every write the guard checks, the site settings, bulk
segments and the combined impact of a rules file.
"""

from __future__ import annotations

from typing import Any

ERROR = {"$ref": "#/components/schemas/Error"}
CONFIRM = {"type": "object", "required": ["removed"], "additionalProperties": False,
           "description": "Apply a change the guard held back: removed is the count its 409 LARGE_CHANGE gave",
           "properties": {"removed": {"type": "integer", "minimum": 0}}}
LARGE = {"description": "LARGE_CHANGE: the change would remove many people and was not confirmed with that "
                        "number (or the number changed since); nothing was done",
         "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LargeChange"}}}}
GUARDED = [("/sites/{site}/rules", "post"), ("/sites/{site}/rules/{rule}", "put"),
           ("/sites/{site}/rules/{rule}", "delete"), ("/sites/{site}/segments/{segment}/automation", "post"),
           ("/sites/{site}/segments/{segment}", "delete"), ("/sites/{site}/fields/{shortname}", "delete")]
DELETES = [("/sites/{site}/rules/{rule}", "delete"), ("/sites/{site}/segments/{segment}", "delete"),
           ("/sites/{site}/fields/{shortname}", "delete")]

_PEOPLE = {"type": "array", "items": {"$ref": "#/components/schemas/Person"}}
_INT = {"type": "integer", "minimum": 0}
# What a bulk row is (documentation: the endpoint takes any JSON per row and answers each on its own).
ROW = {"description": "one row: {segment_id, name, managed?}", "examples": [
    {"segment_id": "sales", "name": "Sales", "managed": True}]}
SETTINGS_PROPS = {
    "large_change_min_removed": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1,
                                 "description": "a change is large only if it removes at least this many people "
                                                "from a segment (default 50)"},
    "large_change_ratio": {"type": "number", "minimum": 0, "maximum": 1,
                           "description": "... and more than this share of its members (default 0.1)"},
}

SCHEMAS: dict[str, Any] = {
    "Person": {"type": "object", "required": ["user_id", "name", "email"], "properties": {
        "user_id": {"type": "string"}, "name": {"type": ["string", "null"]}, "email": {"type": ["string", "null"]}}},
    "SegmentImpact": {"type": "object", "required": ["segment_id", "name", "members", "added", "removed", "large",
                                                     "sample_added", "sample_removed"], "properties": {
        "segment_id": {"type": "string"}, "name": {"type": "string"}, "members": _INT, "added": _INT,
        "removed": _INT, "large": {"type": "boolean"}, "sample_added": _PEOPLE, "sample_removed": _PEOPLE}},
    "Impact": {"type": "object", "required": ["members", "removed", "added", "evaluated", "segments"], "properties": {
        "members": _INT, "removed": _INT, "added": _INT, "evaluated": _INT,
        "segments": {"type": "array", "items": {"$ref": "#/components/schemas/SegmentImpact"}}}},
    "Settings": {"type": "object", "required": list(SETTINGS_PROPS), "properties": dict(SETTINGS_PROPS)},
    "LargeChange": {"allOf": [ERROR, {"type": "object", "required": ["impact", "confirm", "confirmed", "threshold"],
                                      "properties": {
        "code": {"const": "LARGE_CHANGE"}, "impact": {"$ref": "#/components/schemas/Impact"},
        "confirm": {"type": "object", "required": ["removed"], "properties": {"removed": _INT},
                    "description": "send this back as confirm to apply the change"},
        "confirmed": {"type": ["integer", "null"], "description": "the count the request confirmed, if any"},
        "threshold": {"$ref": "#/components/schemas/Settings"}}}]},
    "BulkResult": {"type": "object", "required": ["dry_run", "created", "updated", "unchanged", "rejected",
                                                  "results"], "properties": {
        "dry_run": {"type": "boolean"}, "created": _INT, "updated": _INT, "unchanged": _INT, "rejected": _INT,
        "results": {"type": "array", "items": {"type": "object", "required": ["index", "status"], "properties": {
            "index": _INT, "segment_id": {"type": ["string", "null"]},
            "action": {"type": "string", "enum": ["create", "update", "none"]},
            "status": {"type": "string", "enum": ["QUEUED", "VALID", "UNCHANGED", "REJECTED"]},
            "code": {"type": "string"}, "message": {"type": "string"}, "path": {"type": "string"},
            "commands": {"type": "array", "items": {"type": "object", "required": ["type"], "properties": {
                "type": {"type": "string"}, "command_id": {"type": "string"}, "poll": {"type": "string"}}}},
            "impact": {"$ref": "#/components/schemas/Impact"}}}}}},
}


def _errors(*codes: int) -> dict[str, Any]:
    names = {400: "Invalid request", 401: "Missing, invalid or expired token", 403: "Wrong site or role",
             413: "Body too large", 429: "Too many writes (RATE_LIMITED) or scans (SCAN_BUSY); see Retry-After",
             503: "A worker is unavailable or did not answer in time; retry (see Retry-After)"}
    out: dict[str, Any] = {str(c): {"description": names[c], "content": {"application/json": {"schema": ERROR}}}
                           for c in codes}
    for c in {429, 503} & set(codes):
        out[str(c)]["headers"] = {"Retry-After": {"description": "seconds to wait before retrying",
                                                  "schema": {"type": "string", "pattern": "^[0-9]+$"}}}
    return out


def _json(desc: str, ref: str) -> dict[str, Any]:
    return {"description": desc, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


def extend(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with the guard's answers on the guarded writes, and the admin endpoints."""
    paths, schemas = doc["paths"], doc["components"]["schemas"]
    site = next(p for p in paths["/sites/{site}/rules"]["post"]["parameters"] if p["name"] == "site")
    dry = {"name": "dry_run", "in": "query", "required": False, "schema": {"type": "string", "enum": ["true", "false"]}}
    for path, method in GUARDED:
        op = paths[path][method]
        op["responses"]["409"] = LARGE
        for code, resp in _errors(503, 429).items():
            op["responses"].setdefault(code, resp)
    for path, method in DELETES:
        paths[path][method]["requestBody"] = {"required": False, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": False, "properties": {"confirm": CONFIRM}}}}}
        paths[path][method]["responses"].setdefault("400", _errors(400)["400"])
    schemas["RuleBody"]["properties"]["confirm"] = CONFIRM
    auto = paths["/sites/{site}/segments/{segment}/automation"]["post"]["requestBody"]["content"]["application/json"]
    auto["schema"]["properties"]["confirm"] = CONFIRM
    schemas.update(SCHEMAS)
    paths.update({
        "/sites/{site}/settings": {
            "get": {"summary": "The site's settings (the large-change guard's threshold) and their defaults",
                    "parameters": [site],
                    "responses": {"200": {"description": "Settings", "content": {"application/json": {"schema": {
                        "allOf": [{"$ref": "#/components/schemas/Settings"}, {"type": "object", "required": [
                            "defaults"], "properties": {"defaults": {"$ref": "#/components/schemas/Settings"}}}]}}}},
                        **_errors(400, 401, 403)}},
            "put": {"summary": "Change the site's settings (SetSiteSettings; role site_admin): a field left out "
                               "keeps its value", "parameters": [site],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {
                        "type": "object", "additionalProperties": False, "minProperties": 1,
                        "properties": dict(SETTINGS_PROPS)}}}},
                    "responses": {"202": {"description": "Command queued", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Accepted"}}}}, **_errors(400, 401, 403, 413, 429)}}},
        "/sites/{site}/segments:bulk": {"post": {
            "summary": "Create, rename and (un)manage up to 1,000 segments; every row answered on its own "
                       "(role site_admin or system)", "parameters": [site, dry],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["segments"], "additionalProperties": False, "properties": {
                    "segments": {"type": "array", "minItems": 1, "maxItems": 1000, "items": ROW,
                                 "description": "rows {segment_id, name, managed?}; a row that is not one of "
                                                "these is answered REJECTED with its code and path, and the "
                                                "other rows are still applied"}}}}}},
            "responses": {"200": _json("Per-row results (also when some rows are rejected)", "BulkResult"),
                          **_errors(400, 401, 403, 413, 429, 503)}}},
        "/sites/{site}/rules:impact": {"post": {
            "summary": "The combined impact of a rules file (rules apply --dry-run): each rule created or updated "
                       "in order, then who would be added and removed per segment; nothing changes",
            "parameters": [site],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["rules"], "additionalProperties": False, "properties": {
                    "rules": {"type": "array", "minItems": 1, "maxItems": 1000, "items": {},
                              "description": "rules as in a rules file (RuleBody each, rule_id required); a rule "
                                             "that is not valid is reported with valid false, code and path"}}}}}},
            "responses": {"200": {"description": "Per-rule validity and the combined impact", "content": {
                "application/json": {"schema": {"allOf": [{"$ref": "#/components/schemas/Impact"}, {
                    "type": "object", "required": ["rules", "large", "threshold"], "properties": {
                        "large": {"type": "boolean"}, "threshold": {"$ref": "#/components/schemas/Settings"},
                        "rules": {"type": "array", "items": {"type": "object", "required": [
                            "index", "action", "valid"], "properties": {
                            "index": _INT, "rule_id": {"type": ["string", "null"]},
                            "action": {"type": "string", "enum": ["create", "update"]}, "valid": {"type": "boolean"},
                            "code": {"type": "string"}, "message": {"type": "string"},
                            "path": {"type": "string"}}}}}}]}}}},
                **_errors(400, 401, 403, 413, 429, 503)}}},
    })
    return doc
