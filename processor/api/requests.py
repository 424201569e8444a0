"""Validate API request bodies into command payloads (pure)."""

from __future__ import annotations

import json
from typing import Any, Generator

from processor.api.errors import ApiError
from processor.contract import json_depth
from processor.contract.exceptions import ContractError
from processor.contract.ids import check_id
from processor.rules.compiler import MAX_DEPTH
from processor.rules.exceptions import RuleError

MAX_LIMIT = 500
# a route's path parameters and the contract id each one carries
PATH_IDS = {"site": "site_id", "segment": "segment_id", "rule": "rule_id", "command": "command_id",
            "user": "user_id"}


def check_path_ids(match_info: Any) -> None:
    """Every id in a request's path has the contract's limits (processor/contract/ids.py), else 400
    INVALID_ID at ``$path.<param>``: a 5,000-character rule id was accepted, and ``a%2Fzzz`` (a user
    id holding '/') reached another user's internal path."""
    for param, name in PATH_IDS.items():
        if param in match_info:
            _id(match_info[param], name, f"$path.{param}")


def _id(value: Any, name: str, path: str) -> str:
    try:
        return check_id(value, name, path)
    except ContractError as err:
        raise ApiError(400, err.code, err.message, err.path) from None


MAX_BODY_BYTES = 256 * 1024
# A body holds its condition one level down, and a condition level is at most an object plus a
# list (processor/rules/compiler.py bounds condition JSON the same way): anything deeper can only
# be rejected, so it is rejected before the JSON parser (which recurses) sees it.
MAX_BODY_DEPTH = 2 * MAX_DEPTH + 5


def nesting_exceeds(text: str, limit: int = MAX_BODY_DEPTH, step: int = 8192) -> Generator[None, None, bool]:
    """Whether a request body nests deeper than the API allows (a generator: see
    :func:`processor.contract.json_depth.nesting_exceeds`)."""
    return (yield from json_depth.nesting_exceeds(text, limit, step))


def too_deep() -> ApiError:
    return ApiError(400, "JSON_TOO_DEEP", f"request body is nested deeper than {MAX_BODY_DEPTH} levels "
                    f"(a condition may nest at most {MAX_DEPTH} groups)", "$")


def parse_json_text(text: str) -> Any:
    """JSON text already checked by :func:`nesting_exceeds` -> value (400 INVALID_JSON if not JSON)."""
    try:
        return json.loads(text)
    except ValueError:
        raise ApiError(400, "INVALID_JSON", "request body is not valid JSON", "$") from None


def require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "INVALID_BODY", "request body must be a JSON object", "$")
    return body


def _str(body: dict[str, Any], key: str, required: bool = True, default: str | None = None) -> str:
    v = body.get(key, default)
    if v is None and not required:
        return ""
    if not isinstance(v, str) or not v.strip() or len(v) > 255:
        raise ApiError(400, "INVALID_FIELD", f"{key} must be a non-empty string (max 255)", f"$.{key}")
    return v


def _bool(body: dict[str, Any], key: str, default: bool) -> bool:
    v = body.get(key, default)
    if not isinstance(v, bool):
        raise ApiError(400, "INVALID_FIELD", f"{key} must be true or false", f"$.{key}")
    return v


def condition_tree(body: dict[str, Any]) -> Any:
    """``condition`` as a JSON tree or the text form."""
    if "condition" not in body:
        raise ApiError(400, "INVALID_FIELD", "condition is required (JSON tree or text form)", "$.condition")
    cond = body["condition"]
    if isinstance(cond, str):
        from processor.rules.text import condition_from_any

        try:
            return condition_from_any(cond)
        except RuleError as err:
            raise ApiError(422, err.code, err.message, "$.condition" + err.path[1:]) from None
    if not isinstance(cond, dict):
        raise ApiError(400, "INVALID_CONDITION", "condition must be an object or a string", "$.condition")
    return cond


def rule_payload(body: Any, rule_id: str | None = None) -> dict[str, Any]:
    """Body of create/update -> CreateRule/UpdateRule payload (condition_json serialized)."""
    b = require_object(body)
    extra = set(b) - {"rule_id", "segment_id", "name", "condition", "enabled"}
    if extra:
        raise ApiError(400, "INVALID_FIELD", f"unknown field {sorted(extra)[0]!r}", f"$.{sorted(extra)[0]}")
    rid = rule_id or _id(_str(b, "rule_id"), "rule_id", "$.rule_id")
    if rule_id and "rule_id" in b and b["rule_id"] != rule_id:
        raise ApiError(400, "INVALID_FIELD", "rule_id in the body must match the URL", "$.rule_id")
    return {
        "rule_id": rid,
        "segment_id": _id(_str(b, "segment_id"), "segment_id", "$.segment_id"),
        "name": _str(b, "name", required=False, default=rid) or rid,
        "condition_json": json.dumps(condition_tree(b), separators=(",", ":")),
        "enabled": _bool(b, "enabled", True),
    }


def preview_payload(body: Any) -> dict[str, Any]:
    """Body of the internal preview a worker sends its peers: ``{segment_id, rule_id?, condition}``."""
    b = require_object(body)
    extra = set(b) - {"segment_id", "rule_id", "condition"}
    if extra:
        raise ApiError(400, "INVALID_FIELD", f"unknown field {sorted(extra)[0]!r}", f"$.{sorted(extra)[0]}")
    _str(b, "segment_id")
    if b.get("rule_id") is not None and not isinstance(b["rule_id"], str):
        raise ApiError(400, "INVALID_FIELD", "rule_id must be a string", "$.rule_id")
    return {"segment_id": b["segment_id"], "rule_id": b.get("rule_id") or "", "condition": condition_tree(b)}


def automation_payload(body: Any) -> tuple[str, dict[str, Any]]:
    b = require_object(body)
    extra = set(b) - {"enabled", "remove_members"}
    if extra:
        raise ApiError(400, "INVALID_FIELD", f"unknown field {sorted(extra)[0]!r}", f"$.{sorted(extra)[0]}")
    enabled = _bool(b, "enabled", True) if "enabled" in b else None
    if enabled is None:
        raise ApiError(400, "INVALID_FIELD", "enabled (true/false) is required", "$.enabled")
    remove = _bool(b, "remove_members", False)  # validated even when enabling
    if enabled:
        return "EnableSegmentAutomation", {}
    return "DisableSegmentAutomation", {"remove_members": remove}


def only_field(body: Any, key: str) -> Any:
    """The value of ``key`` in a body that must be ``{key: [...]}``: a body that is not an object
    or has any other field is a 400 INVALID_FIELD at that field."""
    b = require_object(body)
    extra = sorted(set(b) - {key})
    if extra:
        raise ApiError(400, "INVALID_FIELD", f"unknown field {extra[0]!r}; the body is {{\"{key}\": [...]}}",
                       f"$.{extra[0]}")
    return b.get(key)


def dry_run_param(raw: str | None) -> bool:
    """``?dry_run=``: absent or ``false`` is False, ``true`` is True, anything else a 400."""
    if raw not in (None, "true", "false"):
        raise ApiError(400, "INVALID_PARAMETER", "dry_run must be true or false", "$query.dry_run")
    return raw == "true"


def page_limit(raw: str | None, default: int = 50) -> int:
    if raw is None:
        return default
    try:
        n = int(raw)  # (an empty limit= is not an integer: 400, as the OpenAPI document says)
    except ValueError:
        raise ApiError(400, "INVALID_PARAMETER", "limit must be an integer", "$query.limit") from None
    if not 1 <= n <= MAX_LIMIT:
        raise ApiError(400, "INVALID_PARAMETER", f"limit must be between 1 and {MAX_LIMIT}", "$query.limit")
    return n
