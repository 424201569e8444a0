"""Offline rule evaluation (``python -m processor rules eval``): same compiler, same evaluator.

Input: JSON lines ``{"condition": <tree or text>, "profile": {...}, "now": <epoch s, optional>,
"explain": <bool, optional>}``. Output: one JSON line each, ``{"match": bool}`` (plus
``"explain"`` and ``"next_transition"`` when asked) or ``{"error": {"code", "path", "message"}}``.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Iterator

from processor.errors import ProcessorError
from processor.rules.compiler import compile_condition
from processor.rules.exceptions import CompileError, RuleError
from processor.rules.fields import CUSTOM_PREFIX, FieldSpec, FieldType, StaticFields


def load_catalog(doc: Any) -> StaticFields:
    """``[{"shortname", "datatype", "options"?}]`` -> a field resolver (standard + these custom fields)."""
    if isinstance(doc, dict):
        doc = doc.get("fields", doc.get("profile_fields", []))
    if not isinstance(doc, list):
        raise ProcessorError("INVALID_CATALOG", "catalog must be a list of {shortname, datatype, options}", "$")
    custom = {}
    for i, f in enumerate(doc):
        try:
            name = CUSTOM_PREFIX + str(f["shortname"])
            custom[name] = FieldSpec(name, FieldType(str(f["datatype"]).upper()), tuple(f.get("options") or ()), True)
        except (KeyError, ValueError, TypeError) as exc:
            raise ProcessorError("INVALID_CATALOG", f"bad field definition: {exc}", f"$[{i}]") from None
    return StaticFields(custom)


def _condition(obj: Any) -> Any:
    if isinstance(obj, str):
        from processor.rules.text import condition_from_any

        return condition_from_any(obj)
    return obj


def evaluate_line(line: str, fields: StaticFields) -> dict[str, Any]:
    try:
        req = json.loads(line)
        if not isinstance(req, dict) or "condition" not in req:
            raise RuleError("INVALID_REQUEST", "each line is {\"condition\": ..., \"profile\": {...}}", "$")
        profile = req.get("profile") or {}
        if not isinstance(profile, dict):
            raise RuleError("INVALID_REQUEST", "profile must be an object", "$.profile")
        now = req.get("now")
        if now is not None and (isinstance(now, bool) or not isinstance(now, (int, float))):
            raise RuleError("INVALID_REQUEST", "now must be epoch seconds", "$.now")
        cond = compile_condition(_condition(req["condition"]), fields)
        out: dict[str, Any] = {"match": cond.evaluate(profile, now)}
        if req.get("explain"):
            out["explain"] = cond.explain(profile, now)
            out["next_transition"] = cond.next_transition(profile, now)
        return out
    except CompileError as err:
        return {"error": err.errors[0].as_dict()}
    except ProcessorError as err:
        return {"error": err.as_dict()}
    except ValueError as exc:
        return {"error": {"code": "INVALID_REQUEST", "path": "$", "message": f"not a JSON line: {exc}"}}


def evaluate_lines(lines: Iterable[str], fields: StaticFields) -> Iterator[str]:
    for line in lines:
        if line.strip():
            yield json.dumps(evaluate_line(line, fields), sort_keys=True, default=str)
