"""Bulk segment rows (a CSV file, ``POST /sites/{site}/segments:bulk``): each row checked on its
own, and what it asks of the catalog (pure).

A row is ``{segment_id, name, managed?}``. :func:`check_row` answers a :class:`SegmentRow` or a
:class:`RowProblem` (code, message, JSON path), so one bad row is reported and never stops the
others. :func:`row_commands` says which commands a valid row needs against the current catalog:
``UpsertSegment`` when the segment is new or renamed, ``EnableSegmentAutomation`` /
``DisableSegmentAutomation`` (members kept) when ``managed`` is given and differs; nothing when
the catalog already says so (an import can be run again). :func:`read_csv` turns a CSV file
(columns ``id``, ``name``, optionally ``managed``) into rows, keeping each row's line number.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from processor.catalog.model import SiteCatalog
from processor.contract.exceptions import ContractError
from processor.contract.ids import check_id

MAX_ROWS = 1000  # rows in one request (a CSV file is sent in requests of this many)
MAX_NAME = 255
TRUE = {"true", "yes", "1", "y", "on"}
FALSE = {"false", "no", "0", "n", "off"}
CSV_COLUMNS = ("id", "name", "managed")


@dataclass(frozen=True, slots=True)
class SegmentRow:
    index: int
    segment_id: str
    name: str
    managed: bool | None  # None: leave automation as it is


@dataclass(frozen=True, slots=True)
class RowProblem:
    index: int
    code: str
    message: str
    path: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "status": "REJECTED", "code": self.code, "message": self.message,
                "path": self.path}


def managed_value(raw: Any) -> bool | None:
    """``managed`` as given: a boolean, or a CSV cell (true/false, yes/no, 1/0; empty: not given).
    ValueError for anything else."""
    if raw is None or isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        low = raw.strip().lower()
        if low == "":
            return None
        if low in TRUE:
            return True
        if low in FALSE:
            return False
    raise ValueError(raw)


def check_row(item: Any, index: int, seen: set[str]) -> SegmentRow | RowProblem:
    """One row, checked alone (``seen``: the segment ids of the earlier valid rows; a repeat is
    refused so a file cannot rename a segment twice in one go)."""
    at = f"$.segments[{index}]"
    if not isinstance(item, Mapping):
        return RowProblem(index, "INVALID_ROW", "a row is an object {segment_id, name, managed?}", at)
    extra = sorted(set(item) - {"segment_id", "name", "managed"})
    if extra:
        return RowProblem(index, "INVALID_FIELD", f"unknown field {extra[0]!r}; a row has segment_id, name and "
                          "optionally managed", f"{at}.{extra[0]}")
    try:
        seg = check_id(item.get("segment_id"), "segment_id", f"{at}.segment_id")
    except ContractError as err:
        return RowProblem(index, err.code, err.message, err.path)
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        return RowProblem(index, "INVALID_FIELD", "name must be a non-empty text", f"{at}.name")
    if len(name) > MAX_NAME:
        return RowProblem(index, "INVALID_FIELD", f"name is {len(name)} characters long; at most {MAX_NAME}",
                          f"{at}.name")
    managed = item.get("managed")
    if managed is not None and not isinstance(managed, bool):
        return RowProblem(index, "INVALID_FIELD", f"managed must be true, false or null (leave automation as it "
                          f"is), not {managed!r}", f"{at}.managed")
    if seg in seen:
        return RowProblem(index, "DUPLICATE_ROW", f"segment {seg!r} is already in an earlier row; give each "
                          "segment once", f"{at}.segment_id")
    seen.add(seg)
    return SegmentRow(index, seg, name, managed)


def check_rows(items: Iterable[Any]) -> list[SegmentRow | RowProblem]:
    seen: set[str] = set()
    return [check_row(item, i, seen) for i, item in enumerate(items)]


def row_commands(cat: SiteCatalog, row: SegmentRow) -> list[tuple[str, dict[str, Any]]]:
    """The (payload type, payload) commands ``row`` needs, in order; empty when nothing differs."""
    old = cat.segments.get(row.segment_id)
    out: list[tuple[str, dict[str, Any]]] = []
    if old is None or old.name != row.name:
        out.append(("UpsertSegment", {"segment_id": row.segment_id, "name": row.name}))
    was_managed = bool(old and old.managed)
    if row.managed is True and not was_managed:
        out.append(("EnableSegmentAutomation", {"segment_id": row.segment_id}))
    elif row.managed is False and was_managed:
        out.append(("DisableSegmentAutomation", {"segment_id": row.segment_id, "remove_members": False}))
    return out


class CsvProblem(ValueError):
    """The file as a whole cannot be read (no header, a missing or unknown column)."""


@dataclass(frozen=True, slots=True)
class CsvRow:
    """One data line of a segments CSV: the API row, or why the line is not one."""

    line: int  # in the file; the header is line 1
    row: dict[str, Any] | None
    code: str | None = None
    message: str | None = None


def read_csv(text: str) -> list[CsvRow]:
    """The data lines of a segments CSV (header ``id,name[,managed]``, in any order; blank lines
    skipped). A line with more cells than columns, or a ``managed`` cell that is not
    true/false/yes/no/1/0/empty, is a :class:`CsvRow` with a code and message instead of a row.
    :class:`CsvProblem` when the header is not usable."""
    if text.startswith("\ufeff"):  # a spreadsheet's UTF-8 byte order mark
        text = text[1:]
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in next(reader, [])]
    if not header:
        raise CsvProblem("the file is empty: expected a header line id,name[,managed]")
    unknown = [h for h in header if h not in CSV_COLUMNS]
    missing = [c for c in ("id", "name") if c not in header]
    if unknown or missing or len(set(header)) != len(header):
        raise CsvProblem(f"the header must name the columns id, name and optionally managed, each once (found: "
                         f"{', '.join(header)})" + (f"; missing: {', '.join(missing)}" if missing else "")
                         + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
    out: list[CsvRow] = []
    line = reader.line_num + 1
    for cells in reader:
        here, line = line, reader.line_num + 1  # a quoted cell may span lines: a record starts on ``here``
        if all(c.strip() == "" for c in cells):
            continue
        if len(cells) > len(header):
            out.append(CsvRow(here, None, "INVALID_ROW", f"{len(cells)} cells but {len(header)} columns (a name "
                              "with a comma must be quoted)"))
            continue
        rec = dict(zip(header, cells))
        row: dict[str, Any] = {"segment_id": (rec.get("id") or "").strip(), "name": (rec.get("name") or "").strip()}
        if "managed" in header:
            try:
                row["managed"] = managed_value(rec.get("managed") or "")
            except ValueError:
                out.append(CsvRow(here, None, "INVALID_FIELD", f"managed must be true or false (yes/no, 1/0; empty: "
                                  f"leave automation as it is), not {rec.get('managed')!r}"))
                continue
        out.append(CsvRow(here, row))
    return out
