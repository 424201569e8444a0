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
without a ``command_id`` one is generated. A file is checked whole before anything is sent:
:class:`CommandFileError` lists every problem of every entry (type, value, id, missing or unknown
key), each at its JSON path.

For workers with ``COMMANDS_REQUIRE_TOKEN=1`` each command carries a JWT (:func:`with_tokens`):
``ADMIN_TOKEN`` as given, or one minted per command from ``ADMIN_JWT_SECRET`` for its site and
actor. The worker then takes the actor from the token.
"""

from __future__ import annotations

import difflib
import json
import re
import time
from pathlib import Path
from typing import Any

import yaml

from processor.contract.exceptions import ContractError
from processor.contract.ids import ID_KINDS, check_id
from processor.contract.models import PAYLOAD_TYPES, Actor, Command
from processor.errors import ProcessorError
from processor.rules.fields import FieldType

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
    "SetSiteSettings": ("large_change_min_removed", "large_change_ratio"),
}
DEFAULTS: dict[str, Any] = {"options": [], "enabled": True, "remove_members": False,
                            "large_change_min_removed": None, "large_change_ratio": None}
DATATYPES = tuple(t.value for t in FieldType)
# what people call them elsewhere (Moodle's "dropdown menu", JSON Schema's types)
DATATYPE_SYNONYMS = {"DROPDOWN": "MENU", "SELECT": "MENU", "CHOICE": "MENU", "BOOL": "CHECKBOX", "BOOLEAN": "CHECKBOX",
                     "DATE": "DATETIME", "TIMESTAMP": "DATETIME", "INT": "NUMBER", "INTEGER": "NUMBER",
                     "FLOAT": "NUMBER", "DECIMAL": "NUMBER", "STRING": "TEXT", "MULTI": "MULTISELECT"}


class CommandFileError(ProcessorError):
    """Every problem found in a command file (``errors``), not only the first."""

    def __init__(self, errors: list[ProcessorError]) -> None:
        first = errors[0]
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        super().__init__(first.code, first.message + more, first.path)
        self.errors = errors


def _value_problem(key: str, value: Any) -> str | None:
    """Why ``value`` cannot be the payload field ``key`` (None when it can)."""
    if key == "datatype":
        if value in DATATYPES:
            return None
        key_ = str(value).upper()
        close = [DATATYPE_SYNONYMS[key_]] if key_ in DATATYPE_SYNONYMS else difflib.get_close_matches(
            key_, DATATYPES, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        return f"datatype {value!r} is not one of {', '.join(DATATYPES)}{hint}"
    if key == "options":
        ok = isinstance(value, list) and all(isinstance(o, str) for o in value)
        return None if ok else "options must be a list of texts"
    if key in ("enabled", "remove_members"):
        return None if isinstance(value, bool) else f"{key} must be true or false"
    if key in ("large_change_min_removed", "large_change_ratio"):  # SetSiteSettings (ranges: the worker checks)
        whole = key == "large_change_min_removed"
        ok = value is None or (not isinstance(value, bool) and isinstance(value, int if whole else (int, float)))
        return None if ok else f"{key} must be {'a whole number' if whole else 'a number'} (or null: unchanged)"
    if key in ID_KINDS:
        try:
            check_id(value, key, "$")
        except ContractError as err:
            return err.message
        return None
    return None if isinstance(value, str) else f"{key} must be a text"


def _text_error_path(path: str, rule_path: str) -> tuple[str, str]:
    """(path, suffix) of an error in a condition: the text form's ``$text[col N]`` as a column."""
    m = re.fullmatch(r"\$text\[col (\d+)\]", rule_path)
    if m:
        return f"{path}.condition", f" (column {m.group(1)} of the text form)"
    return f"{path}.condition{rule_path[1:]}", ""


def payload_and_problems(ptype: str, body: dict[str, Any], path: str) -> tuple[dict[str, Any], list[ProcessorError]]:
    """The payload of one command entry and every problem in it."""
    body = dict(body)
    problems: list[ProcessorError] = []
    if "condition" in body:  # a JSON tree, or the readable text form
        cond = body.pop("condition")
        if isinstance(cond, str):
            from processor.rules.exceptions import RuleError
            from processor.rules.text import condition_from_any

            try:
                cond = condition_from_any(cond)
            except RuleError as err:
                where, suffix = _text_error_path(path, err.path)
                problems.append(ProcessorError(err.code, err.message + suffix, where))
        body["condition_json"] = json.dumps(cond)
    payload = {}
    for f in PAYLOAD_FIELDS[ptype]:
        if f in body:
            payload[f] = body.pop(f)
            why = _value_problem(f, payload[f])
            if why:
                problems.append(ProcessorError("INVALID_COMMAND", why, f"{path}.{f}"))
        elif f in DEFAULTS:
            payload[f] = DEFAULTS[f]
        else:
            problems.append(ProcessorError("INVALID_COMMAND", f"{ptype} needs {f!r}", f"{path}.{f}"))
    for k in sorted(body):
        close = difflib.get_close_matches(k, PAYLOAD_FIELDS[ptype], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" ({ptype} has {', '.join(PAYLOAD_FIELDS[ptype])})"
        problems.append(ProcessorError("INVALID_COMMAND", f"unknown key {k!r}{hint}", f"{path}.{k}"))
    return payload, problems


def build_payload(ptype: str, body: dict[str, Any], path: str) -> dict[str, Any]:
    """The payload of one command entry; CommandFileError with every problem in it."""
    payload, problems = payload_and_problems(ptype, body, path)
    if problems:
        raise CommandFileError(problems)
    return payload


def load_commands(text: str, now_ms: int | None = None, make_id: Any = None) -> list[Command]:
    """Parse a command file (YAML is a superset of JSON)."""
    import uuid

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise CommandFileError([ProcessorError("INVALID_COMMAND", f"not valid YAML or JSON{where}: "
                                               f"{getattr(err, 'problem', None) or err}", "$")]) from None
    if isinstance(doc, list):
        doc = {"commands": doc}
    if not isinstance(doc, dict) or not isinstance(doc.get("commands"), list):
        raise CommandFileError([ProcessorError("INVALID_COMMAND", "expected a mapping with a 'commands' list", "$")])
    issued = now_ms if now_ms is not None else int(time.time() * 1000)
    make_id = make_id or (lambda: uuid.uuid4().hex)
    out = []
    problems: list[ProcessorError] = []
    for i, item in enumerate(doc["commands"]):
        path = f"$.commands[{i}]"
        if not isinstance(item, dict):
            problems.append(ProcessorError("INVALID_COMMAND", "each command is a mapping", path))
            continue
        item = dict(item)
        site = item.pop("site_id", doc.get("site_id"))
        actor = item.pop("actor", doc.get("actor")) or {}
        cid = item.pop("command_id", None) or make_id()
        kinds = [k for k in item if k in PAYLOAD_TYPES]
        if len(kinds) != 1 or len(item) != 1:
            unknown = [k for k in item if k not in PAYLOAD_TYPES]
            close = difflib.get_close_matches(str(unknown[0]), PAYLOAD_TYPES, n=1) if unknown else []
            hint = f"; did you mean {close[0]}?" if close else ""
            problems.append(ProcessorError(
                "INVALID_COMMAND", f"each command has exactly one of {', '.join(PAYLOAD_TYPES)}"
                + (f"; found {', '.join(map(repr, item))}" if item else "") + hint, path))
            continue
        if not site:
            problems.append(ProcessorError("INVALID_COMMAND", "site_id is required", f"{path}.site_id"))
            continue
        ptype = kinds[0]
        body = item[ptype] or {}
        if not isinstance(body, dict):
            problems.append(ProcessorError("INVALID_COMMAND", f"{ptype} takes a mapping of its fields",
                                           f"{path}.{ptype}"))
            continue
        payload, found = payload_and_problems(ptype, body, f"{path}.{ptype}")
        problems += found
        out.append(
            Command(
                command_id=str(cid),
                site_id=str(site),
                issued_at=issued,
                actor=Actor(str(actor.get("user_id", "cli")), tuple(actor.get("roles", ()))),
                payload_type=ptype,
                payload=payload,
            )
        )
    if problems:
        raise CommandFileError(problems)
    return out


def encoded_commands(cmds: list[Command]) -> list[bytes]:
    """Each command's Avro bytes; CommandFileError listing every command the contract cannot carry
    (a value of the wrong type that got past :func:`load_commands`), never a codec traceback."""
    from processor.contract.codec import encode_command

    out: list[bytes] = []
    problems: list[ProcessorError] = []
    for i, c in enumerate(cmds):
        try:
            out.append(encode_command(c))
        except (ValueError, TypeError, OverflowError) as exc:
            problems.append(ProcessorError("INVALID_COMMAND", f"{c.payload_type} cannot be sent: a value does not "
                                           f"fit the contract ({exc})", f"$.commands[{i}].{c.payload_type}"))
    if problems:
        raise CommandFileError(problems)
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
