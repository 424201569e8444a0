"""processor/runtime/catalog_log.py ``catch_up``: a decision waits for every entry written before
it, except a tail of this worker's own progress reports (a decision does not read them, and on a
broker that answers fetches only when their wait ends, waiting for them costs a fetch)."""

from __future__ import annotations

import asyncio

from processor.catalog.registry import CatalogRegistry
from processor.runtime.catalog_log import CatalogLog


def log_at(applied: int, end: int) -> tuple[CatalogLog, list[int]]:
    reg = CatalogRegistry()
    reg.applied_offset = applied
    log = CatalogLog("unused:9092", "catalog", reg)
    waited: list[int] = []

    async def end_offset() -> int:
        return end

    async def wait_for(offset: int) -> None:
        waited.append(offset)

    log.end_offset = end_offset  # type: ignore[method-assign]
    log.wait_for = wait_for  # type: ignore[method-assign]
    return log, waited


def test_a_tail_of_own_reports_is_not_waited_for_but_anything_before_it_is() -> None:
    log, waited = log_at(applied=9, end=15)  # entries 10..14 not folded yet
    for offset in (12, 13, 14):
        log.own_report(offset)
    asyncio.run(log.catch_up())
    assert waited == [11]  # 10 and 11 may be another worker's commands


def test_own_reports_inside_the_tail_do_not_shorten_it() -> None:
    log, waited = log_at(applied=9, end=15)
    log.own_report(12)  # 13 and 14 are someone else's
    asyncio.run(log.catch_up())
    assert waited == [14]


def test_without_own_reports_everything_is_waited_for() -> None:
    log, waited = log_at(applied=3, end=8)
    log.own_report(2)  # already folded: not kept
    asyncio.run(log.catch_up())
    assert waited == [7] and log._own_reports == set()
