"""docs/contract.md cannot go stale silently: its operator table is the processor's operator
registry (per field type, with the standard fields of each type), its causes table lists every
``cause_kind`` symbol of the schema, and its environment table every variable the settings read.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from processor.rules.fields import STANDARD_FIELDS, FieldType
from processor.rules.operators import REGISTRY, operators_for

ROOT = Path(__file__).resolve().parents[3]
DOC = (ROOT / "docs" / "contract.md").read_text()


def section(heading: str) -> str:
    """The text from ``heading`` (a whole line) to the next heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    start = DOC.index(f"\n{heading}\n")
    rest = DOC[start + len(heading) + 2:]
    ends = [m.start() for m in re.finditer(r"^#{1,%d} " % len(level), rest, re.M)]
    return rest[: ends[0]] if ends else rest


def table_rows(text: str, header_start: str) -> list[list[str]]:
    """Cells of each row of the table whose header line starts with ``header_start``."""
    lines = text[text.index(header_start):].splitlines()
    rows = []
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def names(cell: str) -> set[str]:
    """Identifiers inside the backticked parts of a cell (``"`a, b` (note)"`` -> {a, b})."""
    return {n.strip() for part in re.findall(r"`([^`]*)`", cell) for n in part.split(",") if n.strip()}


def test_operator_table_is_the_registry_per_field_type() -> None:
    rows = table_rows(section("### Condition trees (`condition_json`)"), "| Field type |")
    by_type = {next(iter(names(r[0]))): r for r in rows}
    assert set(by_type) == {t.value for t in FieldType}
    listed: set[str] = set()
    for ftype in FieldType:
        ops = names(by_type[ftype.value][2])
        assert ops == set(operators_for(ftype)), (ftype.value, sorted(ops ^ set(operators_for(ftype))))
        listed |= ops
    assert listed == set(REGISTRY)


def test_standard_fields_are_listed_under_their_type() -> None:
    rows = table_rows(section("### Condition trees (`condition_json`)"), "| Field type |")
    documented = {field: next(iter(names(r[0]))) for r in rows for field in names(r[1]) if field != "–"}
    assert documented == {name: t.value for name, t in STANDARD_FIELDS.items()}


def test_every_cause_kind_is_documented() -> None:
    schema = json.loads((ROOT / "schemas" / "membership_change.avsc").read_text())
    symbols = next(f for f in schema["fields"] if f["name"] == "cause_kind")["type"]["symbols"]
    rows = table_rows(section("### Causes"), "| `cause_kind` |")
    documented = [next(iter(names(r[0]))) for r in rows]
    assert documented == symbols
    assert all(r[1] and r[1] != "–" for r in rows)


def test_every_setting_read_from_the_environment_is_documented() -> None:
    source = (ROOT / "processor" / "config.py").read_text()
    variables = set(re.findall(r'(?:_env|_int_or_none|environ\.get|environ\[)\(?"([A-Z][A-Z0-9_]+)"', source))
    assert {"KAFKA_BOOTSTRAP_SERVERS", "TOPIC_CATALOG", "REPLICATION_FACTOR"} <= variables  # the scan works
    env = section("## Environment")
    documented = {n for row in table_rows(env, "| Variable |") for n in names(row[0])}
    assert variables - documented == set()


def test_nothing_emitted_is_called_reserved_and_the_api_is_served() -> None:
    assert "reserved" not in DOC.lower() and "not served" not in DOC.lower()
