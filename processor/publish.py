"""Build automation commands from a JSON/YAML file (for admins and ops without an LMS).

File format::

    site_id: demo
    actor: {user_id: admin, roles: [site_admin]}
    commands:
      - UpsertSegment: {segment_id: sales, name: Sales}
      - EnableSegmentAutomation: {segment_id: sales}
      - CreateRule:
          rule_id: sales-dept
          segment_id: sales
          name: Sales department
          condition: {field: department, op: equals, value: Sales}   # or condition_json: '...'
          enabled: true

Each command may override ``site_id``, ``actor`` and ``command_id``;
without a ``command_id`` one is generated.

For workers with ``COMMANDS_REQUIRE_TOKEN=1`` each command carries a JWT (:func:`with_tokens`):
``ADMIN_TOKEN`` as given, or one minted per command from ``ADMIN_JWT_SECRET`` for its site and
actor. The worker then takes the actor from the token.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml

from processor.contract.models import PAYLOAD_TYPES, Actor, Command
from processor.errors import ProcessorError

PAYLOAD_FIELDS: dict[str, tuple[str, ...]] = {
    "UpsertProfileField": ("shortname", "name", "datatype", "options"),
    "DeleteProfileField": ("shortname",),
    "UpsertSegment": ("segment_id", "name"),
    "DeleteSegment": ("segment_id",),
    "EnableSegmentAutomation": ("segment_id",),
    "DisableSegmentAutomation": ("segment_id", "remove_members"),
    "CreateRule": ("rule_id", "segment_id", "name", "condition_json", "enabled"),
    "UpdateRule": ("rule_id", "segment_id", "name", "condition_json", "enabled"),
    "DeleteRule": ("rule_id",),
}
DEFAULTS: dict[str, Any] = {"options": [], "enabled": True, "remove_members": False}


def build_payload(ptype: str, body: dict[str, Any], path: str) -> dict[str, Any]:
    body = dict(body)
    if "condition" in body:  # a JSON tree, or the readable text form
        cond = body.pop("condition")
        if isinstance(cond, str):
            from processor.rules.exceptions import RuleError
            from processor.rules.text import condition_from_any

            try:
                cond = condition_from_any(cond)
            except RuleError as err:
                raise ProcessorError(err.code, err.message, f"{path}.condition{err.path[1:]}") from None
        body["condition_json"] = json.dumps(cond)
    payload = {}
    for f in PAYLOAD_FIELDS[ptype]:
        if f in body:
            payload[f] = body.pop(f)
        elif f in DEFAULTS:
            payload[f] = DEFAULTS[f]
        else:
            raise ProcessorError("INVALID_COMMAND", f"{ptype} needs {f!r}", f"{path}.{f}")
    if body:
        raise ProcessorError("INVALID_COMMAND", f"{ptype} has unknown keys {sorted(body)}", path)
    return payload


def load_commands(text: str, now_ms: int | None = None, make_id: Any = None) -> list[Command]:
    """Parse a command file (YAML is a superset of JSON)."""
    import uuid

    doc = yaml.safe_load(text)
    if isinstance(doc, list):
        doc = {"commands": doc}
    if not isinstance(doc, dict) or not isinstance(doc.get("commands"), list):
        raise ProcessorError("INVALID_COMMAND", "expected a mapping with a 'commands' list", "$")
    issued = now_ms if now_ms is not None else int(time.time() * 1000)
    make_id = make_id or (lambda: uuid.uuid4().hex)
    out = []
    for i, item in enumerate(doc["commands"]):
        path = f"$.commands[{i}]"
        if not isinstance(item, dict):
            raise ProcessorError("INVALID_COMMAND", "each command is a mapping", path)
        item = dict(item)
        site = item.pop("site_id", doc.get("site_id"))
        actor = item.pop("actor", doc.get("actor")) or {}
        cid = item.pop("command_id", None) or make_id()
        kinds = [k for k in item if k in PAYLOAD_TYPES]
        if len(kinds) != 1 or len(item) != 1:
            raise ProcessorError(
                "INVALID_COMMAND", f"each command has exactly one of {', '.join(PAYLOAD_TYPES)}", path
            )
        if not site:
            raise ProcessorError("INVALID_COMMAND", "site_id is required", f"{path}.site_id")
        ptype = kinds[0]
        out.append(
            Command(
                command_id=str(cid),
                site_id=str(site),
                issued_at=issued,
                actor=Actor(str(actor.get("user_id", "cli")), tuple(actor.get("roles", ()))),
                payload_type=ptype,
                payload=build_payload(ptype, item[ptype] or {}, f"{path}.{ptype}"),
            )
        )
    return out


def load_command_file(path: Path) -> list[Command]:
    return load_commands(path.read_text())


TOKEN_TTL_S = 900  # a minted command token: long enough for a worker to decide it


def with_tokens(cmds: list[Command], env: Any = None) -> list[Command]:
    """``cmds`` with ``auth_token`` set from ``ADMIN_TOKEN``, or minted from ``ADMIN_JWT_SECRET``
    (subject = actor user id, site = the command's site, roles = the actor's roles); unchanged
    when neither is set."""
    import os
    from dataclasses import replace

    env = os.environ if env is None else env
    given = (env.get("ADMIN_TOKEN") or "").strip()
    secret = env.get("ADMIN_JWT_SECRET") or ""
    if given:
        return [replace(c, auth_token=given) for c in cmds]
    if not secret:
        return list(cmds)
    from processor.api.auth import make_token

    return [replace(c, auth_token=make_token(secret, c.actor.user_id, c.site_id, list(c.actor.roles),
                                              ttl_s=TOKEN_TTL_S)) for c in cmds]
