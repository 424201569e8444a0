"""processor/http/members_csv.py: cells a spreadsheet cannot run, rows as a CSV reader reads them
back, the download's file name, and the merge of every worker's pages (order, completeness, one
page per worker held, a rebalance or a disordered peer is an error, never a partial file)."""

from __future__ import annotations

import csv
import io
import random
from typing import Any

import pytest

from processor.api.errors import ApiError
from processor.http.members_csv import HEADER, MergedPages, content_disposition, neutralise, row, utc
from processor.http.peers import gather_all

DANGEROUS = ["=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx", "\x00x", "'=already quoted"]
HARMLESS = ["", "Ada", "a=b", "ada@example.org", "1-2", " =x", "Ünïcode", 'say "hi", ok', "two\nlines"]


@pytest.mark.parametrize("cell", DANGEROUS)
def test_a_cell_a_spreadsheet_would_run_starts_with_a_quote(cell: str) -> None:
    assert neutralise(cell) == "'" + cell


@pytest.mark.parametrize("cell", HARMLESS)
def test_other_cells_are_kept(cell: str) -> None:
    assert neutralise(cell) == cell


def test_rows_read_back_with_a_csv_reader_and_one_quote_dropped_gives_the_stored_values() -> None:
    members = [{"user_id": uid, "name": name, "email": mail, "since": 1_764_930_000_123,
                "matched_rule_ids": ["r-1", "r.2"]}
               for uid, name, mail in zip(DANGEROUS + HARMLESS, reversed(DANGEROUS + HARMLESS),
                                          HARMLESS + DANGEROUS)]
    members.append({"user_id": "u-none", "name": None, "email": None, "since": None, "matched_rule_ids": []})
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\r\n")
    out.writerow(HEADER)
    for m in members:
        out.writerow(row(m))
    back = list(csv.reader(io.StringIO(buf.getvalue(), newline="")))
    assert back[0] == ["user_id", "name", "email", "member_since_utc", "matched_rule_ids"]
    for m, cells in zip(members, back[1:]):
        for cell in cells:  # no cell starts the way a formula does
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r", "\x00"))
        restored = [c[1:] if c.startswith("'") else c for c in cells]
        assert restored[:3] == [m["user_id"], m["name"] or "", m["email"] or ""]
    assert back[1][3:] == ["2025-12-05 10:20:00", "r-1;r.2"]
    assert back[-1][1:] == ["", "", "", ""]


def test_time_is_utc_to_the_second() -> None:
    assert utc(0) == "1970-01-01 00:00:00" and utc(1_764_930_000_999) == "2025-12-05 10:20:00" and utc(None) == ""


def test_the_file_name_is_site_segment_members_with_an_ascii_fallback() -> None:
    assert content_disposition("demo", "sales") == (
        "attachment; filename=\"demo-sales-members.csv\"; filename*=UTF-8''demo-sales-members.csv")
    assert content_disposition("démo", "ventes.été") == (
        "attachment; filename=\"d_mo-ventes._t_-members.csv\"; "
        "filename*=UTF-8''d%C3%A9mo-ventes.%C3%A9t%C3%A9-members.csv")


class Workers:
    """Workers answering pages of their sorted member lists, as the internal endpoint does."""

    def __init__(self, lists: dict[str, list[str]], partitions: dict[str, list[int]]) -> None:
        self.lists = {b: sorted(ids) for b, ids in lists.items()}
        self.partitions = partitions
        self.calls: list[tuple[str, str]] = []
        self.held = 0  # pages fetched and not yet consumed
        self.max_held = 0

    async def fetch(self, base: str, after: str, page: int) -> dict[str, Any]:
        self.calls.append((base, after))
        rows = [u for u in self.lists[base] if u > after][:page]
        return {"members": [{"user_id": u, "name": f"N {u}", "email": None, "since": 1, "matched_rule_ids": []}
                            for u in rows], "partitions": self.partitions[base]}


async def merged(w: Workers, page: int) -> list[str]:
    pages = MergedPages(sorted(w.lists), lambda b, a: w.fetch(b, a, page), page)
    await pages.start(gather_all)
    return [m["user_id"] async for m in pages]


@pytest.mark.parametrize("page", [1, 2, 3, 500])
async def test_pages_of_every_worker_merge_into_the_whole_sorted_list(page: int) -> None:
    rng = random.Random(page)
    ids = [f"u{i:04d}" for i in range(200)]
    rng.shuffle(ids)
    w = Workers({"a": ids[:70], "b": ids[70:190], "c": ids[190:]}, {"a": [0, 3], "b": [1], "c": [2]})
    assert await merged(w, page) == sorted(ids)
    # each worker was asked for its next page only after its previous one was used up
    for base in "abc":
        afters = [a for b, a in w.calls if b == base]
        assert afters == sorted(afters) and len(afters) == len(set(afters))
        assert len(afters) == len(w.lists[base]) // page + 1


async def test_at_most_one_page_per_worker_is_held() -> None:
    ids = [f"u{i:04d}" for i in range(300)]
    w = Workers({"a": ids[::2], "b": ids[1::2]}, {"a": [0], "b": [1]})
    pages = MergedPages(["a", "b"], lambda b, a: w.fetch(b, a, 10), 10)
    await pages.start(gather_all)
    seen = 0
    async for _ in pages:
        seen += 1
        held = sum(len(members) - index for _, _, index, members in pages.heap)
        assert held <= 2 * 10
    assert seen == 300


async def test_a_worker_whose_partitions_change_mid_way_stops_the_export() -> None:
    ids = [f"u{i:03d}" for i in range(30)]
    w = Workers({"a": ids[:15], "b": ids[15:]}, {"a": [0], "b": [1]})
    pages = MergedPages(["a", "b"], lambda b, a: w.fetch(b, a, 5), 5)
    await pages.start(gather_all)
    got = []
    with pytest.raises(ApiError) as err:
        async for m in pages:
            got.append(m["user_id"])
            if len(got) == 3:
                w.partitions["a"] = [0, 1]  # a rebalance gave "a" a partition of "b"
    assert (err.value.status, err.value.code) == (503, "WORKER_UNAVAILABLE")
    assert len(got) == 5


async def test_two_workers_answering_for_one_partition_or_out_of_order_is_an_error() -> None:
    w = Workers({"a": ["u1"], "b": ["u2"]}, {"a": [0, 1], "b": [1]})
    with pytest.raises(ApiError, match="moved"):
        await merged(w, 5)

    async def disordered(base: str, after: str) -> dict[str, Any]:
        return {"members": [{"user_id": u} for u in (["u2", "u1"] if base == "a" else [])], "partitions": []}

    pages = MergedPages(["a", "b"], disordered, 5)
    with pytest.raises(ApiError, match="out of order"):
        await pages.start(gather_all)
        [m async for m in pages]
