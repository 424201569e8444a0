"""Load the Avro schemas shipped in ``schemas/``.

``timestamp-millis`` logical types are stripped before parsing so fastavro
reads and writes plain ``int`` epoch milliseconds: no datetime round trips on
the hot path, and the bytes on the wire are identical (a logical type only
annotates a ``long``).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import fastavro


def _schema_dir() -> Path:
    """Installed from a wheel, the schemas are package data (``processor/contract/_schemas/``,
    mapped from ``schemas/`` by setup.py); in a source checkout they are the repository's
    ``schemas/``. The packaged copy wins, so a stray ``schemas`` directory next to
    site-packages is never picked up."""
    here = Path(__file__).resolve().parent
    candidates = (here / "_schemas", here.parent.parent / "schemas")
    for d in candidates:
        if (d / "user_event.avsc").is_file():
            return d
    raise FileNotFoundError(f"Avro schemas not found in {' nor in '.join(map(str, candidates))}: "
                            "reinstall the package (its wheel ships them)")


SCHEMA_DIR = _schema_dir()


def _strip_logical(node: Any) -> Any:
    if isinstance(node, dict):
        if node.get("logicalType") in ("timestamp-millis", "timestamp-micros"):
            return {k: _strip_logical(v) for k, v in node.items() if k != "logicalType"}
        return {k: _strip_logical(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_strip_logical(v) for v in node]
    return node


@cache
def raw_schema(name: str) -> dict[str, Any]:
    """The schema file ``schemas/<name>.avsc`` as JSON (logical types kept)."""
    return json.loads((SCHEMA_DIR / f"{name}.avsc").read_text())


@cache
def parsed_schema(name: str) -> Any:
    """The fastavro-parsed schema with timestamp logical types stripped."""
    return fastavro.parse_schema(_strip_logical(raw_schema(name)))


@cache
def parsed_schema_split(name: str, added: tuple[str, ...]) -> tuple[Any, Any]:
    """``(before, added)``: the schema without the top-level fields ``added`` (appended later,
    each with a default) and a record of just those fields. Schemaless Avro carries no writer
    schema, so a record written before the fields existed is read with ``before`` alone, and
    a newer one with ``before`` then ``added`` (its fields follow in the same byte stream)."""
    raw = _strip_logical(raw_schema(name))
    before = {**raw, "fields": [f for f in raw["fields"] if f["name"] not in added]}
    tail = {"type": "record", "name": f"{raw['name']}Added", "namespace": raw.get("namespace", ""),
            "fields": [f for f in raw["fields"] if f["name"] in added]}
    return fastavro.parse_schema(before), fastavro.parse_schema(tail)


USER_EVENT = "user_event"
AUTOMATION_COMMAND = "automation_command"
MEMBERSHIP_CHANGE = "membership_change"
COMMAND_RESULT = "command_result"
DEAD_LETTER = "dead_letter"
USER_STATE = "internal/user_state"  # read-only: state format 2, written by workers before format 3
USER_STATE_V1 = "internal/user_state_v1"  # read-only: state written by workers before format 2
