"""Bulk segment rows (processor/catalog/bulk.py): every row checked on its own with a code, a
message and a path; the commands a valid row needs; a CSV file read with its line numbers."""

from __future__ import annotations

import pytest

from processor.catalog.bulk import CsvProblem, RowProblem, SegmentRow, check_rows, read_csv, row_commands
from processor.catalog.model import Segment, SiteCatalog


def test_good_and_bad_rows_are_answered_each() -> None:
    out = check_rows([
        {"segment_id": "sales", "name": "Sales"},
        {"segment_id": "bad id", "name": "X"},
        {"segment_id": "hr", "name": "  "},
        {"segment_id": "ops", "name": "Ops", "managed": "yes"},
        {"segment_id": "sales", "name": "Again"},
        "not an object",
        {"segment_id": "it", "name": "IT", "manged": True},
        {"segment_id": "lab", "name": "x" * 256},
        {"segment_id": "it", "name": "IT", "managed": True},
        {"name": "no id"},
    ])
    assert out[0] == SegmentRow(0, "sales", "Sales", None)
    assert out[8] == SegmentRow(8, "it", "IT", True)
    problems = {p.index: (p.code, p.path) for p in out if isinstance(p, RowProblem)}
    assert problems == {
        1: ("INVALID_ID", "$.segments[1].segment_id"),
        2: ("INVALID_FIELD", "$.segments[2].name"),
        3: ("INVALID_FIELD", "$.segments[3].managed"),
        4: ("DUPLICATE_ROW", "$.segments[4].segment_id"),
        5: ("INVALID_ROW", "$.segments[5]"),
        6: ("INVALID_FIELD", "$.segments[6].manged"),
        7: ("INVALID_FIELD", "$.segments[7].name"),
        9: ("INVALID_ID", "$.segments[9].segment_id"),
    }
    assert all(isinstance(p.message, str) and p.message for p in out if isinstance(p, RowProblem))


def test_a_row_asks_only_for_what_differs() -> None:
    cat = SiteCatalog("s", segments={"a": Segment("a", "A", False), "b": Segment("b", "B", True)})
    assert row_commands(cat, SegmentRow(0, "a", "A", None)) == []
    assert row_commands(cat, SegmentRow(0, "a", "A", False)) == []
    assert row_commands(cat, SegmentRow(0, "b", "B", True)) == []
    assert row_commands(cat, SegmentRow(0, "a", "A2", None)) == [("UpsertSegment", {"segment_id": "a", "name": "A2"})]
    assert row_commands(cat, SegmentRow(0, "n", "New", True)) == [
        ("UpsertSegment", {"segment_id": "n", "name": "New"}), ("EnableSegmentAutomation", {"segment_id": "n"})]
    assert row_commands(cat, SegmentRow(0, "b", "B", False)) == [
        ("DisableSegmentAutomation", {"segment_id": "b", "remove_members": False})]  # members stay
    assert row_commands(cat, SegmentRow(0, "n", "New", False)) == [
        ("UpsertSegment", {"segment_id": "n", "name": "New"})]


def test_csv_rows_keep_their_line_numbers() -> None:
    text = ("\ufeffId, Name ,MANAGED\r\n"
            "sales,Sales,yes\r\n"
            "\r\n"
            '"hr","Human\nResources",no\r\n'
            "ops,Ops,maybe\r\n"
            "a,b,true,extra\r\n"
            "lab,Lab,\r\n"
            " it , IT \r\n")
    rows = read_csv(text)
    assert [(r.line, r.row, r.code) for r in rows] == [
        (2, {"segment_id": "sales", "name": "Sales", "managed": True}, None),
        (4, {"segment_id": "hr", "name": "Human\nResources", "managed": False}, None),
        (6, None, "INVALID_FIELD"),
        (7, None, "INVALID_ROW"),
        (8, {"segment_id": "lab", "name": "Lab", "managed": None}, None),
        (9, {"segment_id": "it", "name": "IT", "managed": None}, None),
    ]
    assert "maybe" in (rows[2].message or "") and "quoted" in (rows[3].message or "")


def test_csv_without_managed_column_leaves_automation_alone() -> None:
    assert [r.row for r in read_csv("name,id\nSales,sales\n")] == [{"segment_id": "sales", "name": "Sales"}]


@pytest.mark.parametrize("text,word", [("", "empty"), ("id\nsales\n", "missing: name"),
                                        ("id,name,managd\n", "unknown: managd"), ("id,name,id\n", "each once")])
def test_a_bad_header_is_a_whole_file_problem(text: str, word: str) -> None:
    with pytest.raises(CsvProblem) as err:
        read_csv(text)
    assert word in str(err.value)
