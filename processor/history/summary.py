"""One line saying what a command asked for (the audit log's payload summary; pure)."""

from __future__ import annotations

import json
from typing import Any

MAX_CHARS = 300


def _condition(raw: Any) -> str:
    from processor.rules.text import to_text

    try:
        tree = json.loads(raw) if isinstance(raw, str) else raw
        return to_text(tree)
    except Exception:  # noqa: BLE001 - a rejected command may carry anything: show it as sent
        return str(raw)


def summarize(payload_type: str, p: dict[str, Any]) -> str:
    """``payload_type`` with its payload ``p`` in words, at most :data:`MAX_CHARS` characters."""
    seg, rule = p.get("segment_id"), p.get("rule_id")
    if payload_type == "UpsertProfileField":
        opts = p.get("options") or []
        text = f"profile field {p.get('shortname')} ({p.get('datatype')}" + (
            f"; options {', '.join(map(str, opts))})" if opts else ")")
    elif payload_type == "DeleteProfileField":
        text = f"delete profile field {p.get('shortname')}"
    elif payload_type == "UpsertSegment":
        text = f"segment {seg} named {json.dumps(p.get('name'), ensure_ascii=False)}"
    elif payload_type == "DeleteSegment":
        text = f"delete segment {seg} and its rules"
    elif payload_type == "EnableSegmentAutomation":
        text = f"enable automation of {seg}"
    elif payload_type == "DisableSegmentAutomation":
        text = f"disable automation of {seg}" + (", removing its members" if p.get("remove_members")
                                                  else ", keeping its members")
    elif payload_type in ("CreateRule", "UpdateRule"):
        verb = "create" if payload_type == "CreateRule" else "update"
        off = "" if p.get("enabled", True) else " (disabled)"
        text = f"{verb} rule {rule} in {seg}{off}: {_condition(p.get('condition_json'))}"
    elif payload_type == "DeleteRule":
        text = f"delete rule {rule}"
    else:
        text = f"{payload_type} {json.dumps(p, sort_keys=True, ensure_ascii=False, default=str)}"
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS - 1] + "…"
