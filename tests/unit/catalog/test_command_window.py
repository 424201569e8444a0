"""The command-id de-duplication window (processor/catalog/window.py, registry.py).

Every command, rejected ones included, used to stay in memory on every worker forever. The
registry now keeps a command's record while its source offset is among the last N offsets
decided on its commands partition. These tests fold the catalog log as a worker does and prove:
memory stops growing once the window is full (one site, many sites), every worker forgets the
same records, a duplicate is answered inside the window and processed again after it, the
crash replay's records survive floods elsewhere, and kept records are compact.
"""

from __future__ import annotations

import gc
import tracemalloc

from processor.catalog.commands import RECONCILE, BackfillPlan
from processor.catalog.entry import CatalogEntry
from processor.catalog.registry import MAX_KEPT_MESSAGE, CatalogRegistry
from processor.catalog.window import DEFAULT_SIZE
from processor.contract.models import Actor, Command

ADMIN = Actor("adm", ("site_admin",))


def rejected(i: int, site: str, partition: int, source_offset: int) -> CatalogEntry:
    """The entry a worker writes for a DeleteRule of a rule that does not exist."""
    cmd = Command(f"flood-{i:07d}", site, 1000, ADMIN, "DeleteRule", {"rule_id": f"r{i}"})
    return CatalogEntry(cmd, "REJECTED", "NOT_FOUND", f"rule 'r{i}' does not exist", 5000, partition,
                        source_offset, None)


def fold(reg: CatalogRegistry, entries: list[CatalogEntry], start: int = 0) -> int:
    for off, e in enumerate(entries, start):
        reg.apply_entry(off, e)
    return start + len(entries)


def traced(fn) -> int:  # type: ignore[no-untyped-def]
    """Bytes still allocated after ``fn`` ran (what it left behind)."""
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    fn()
    gc.collect()
    return tracemalloc.get_traced_memory()[0] - before


def test_fifty_thousand_rejected_commands_of_one_site_keep_one_window() -> None:
    """50,000 rejected commands of one site (one partition): exactly the last DEFAULT_SIZE records
    are kept, and folding the 30,000 after the window filled leaves (almost) nothing behind."""
    n = 50_000
    entries = [rejected(i, "acme", 0, i) for i in range(n)]
    reg = CatalogRegistry()
    tracemalloc.start()
    try:
        first = traced(lambda: fold(reg, entries[:20_000]))
        rest = traced(lambda: fold(reg, entries[20_000:], 20_000))
    finally:
        tracemalloc.stop()
    assert len(reg.commands) == DEFAULT_SIZE
    kept = sorted(rec.command_id for _, rec in reg.commands)
    assert kept == [f"flood-{i:07d}" for i in range(n - DEFAULT_SIZE, n)]
    assert reg.command("acme", "flood-0000000") is None
    assert reg.command("acme", f"flood-{n - 1:07d}").code == "NOT_FOUND"  # type: ignore[union-attr]
    # the first 20,000 filled the window; the next 30,000 replaced records, they did not add any
    assert first > DEFAULT_SIZE * 100
    assert rest < first / 20, (first, rest)


def test_fifty_thousand_rejected_commands_across_sites_stay_bounded() -> None:
    """50,000 rejected commands, each for its own site, spread over 4 partitions: at most
    DEFAULT_SIZE records per partition, no catalog object for a site that only had rejections,
    and at most ~1 KiB of memory per kept record."""
    n = 50_000
    entries = [rejected(i, f"site-{i}", i % 4, i // 4) for i in range(n)]
    reg = CatalogRegistry()
    tracemalloc.start()
    try:
        used = traced(lambda: fold(reg, entries))
    finally:
        tracemalloc.stop()
    assert len(reg.commands) == 4 * DEFAULT_SIZE
    assert reg.sites == {}
    assert used / len(reg.commands) < 1024, used / len(reg.commands)


def test_every_worker_forgets_the_same_records() -> None:
    """Two workers folding the same log (one from its encoded bytes) keep the same records."""
    entries = [rejected(i, f"s{i % 7}", i % 3, i // 3) for i in range(3_000)]
    a, b = CatalogRegistry(500), CatalogRegistry(500)
    fold(a, entries)
    fold(b, [CatalogEntry.decode(e.encode()) for e in entries])
    assert [(s, r) for s, r in a.commands] == [(s, r) for s, r in b.commands]
    assert len(a.commands) == 3 * 500


def test_duplicate_inside_the_window_is_answered_after_it_processed_again() -> None:
    """A re-sent command_id within the window is a duplicate (first entry wins); once its
    partition decided more than the window's worth of later messages, it counts as new."""
    reg = CatalogRegistry(100)
    original = rejected(0, "acme", 0, 0)
    nxt = fold(reg, [original])
    nxt = fold(reg, [rejected(i, "acme", 0, i) for i in range(1, 100)], nxt)
    assert reg.apply_entry(nxt, CatalogEntry(original.command, "ACCEPTED", None, None, 6000, 0, 100, None)) is False
    assert reg.command("acme", "flood-0000000").status == "REJECTED"  # type: ignore[union-attr]
    nxt += 1
    nxt = fold(reg, [rejected(i, "acme", 0, i) for i in range(101, 102)], nxt)  # offset 101: 0 falls out
    assert reg.command("acme", "flood-0000000") is None
    assert reg.apply_entry(nxt, CatalogEntry(original.command, "REJECTED", "NOT_FOUND", "again", 7000, 0, 102,
                                             None)) is True
    assert reg.command("acme", "flood-0000000").message == "again"  # type: ignore[union-attr]


def test_crash_replay_records_survive_floods_elsewhere() -> None:
    """The records the crash replay looks up (the last messages of its partition) stay while
    other partitions and other sites flood the log: eviction counts per source partition."""
    reg = CatalogRegistry(1_000)
    mine = [rejected(i, "acme", 0, 5_000 + i) for i in range(50)]  # partition 0, offsets 5000..5049
    nxt = fold(reg, mine)
    flood = [rejected(100_000 + i, f"other-{i}", 1 + i % 3, i) for i in range(60_000)]
    flood += [rejected(200_000 + i, "acme", 1, 20_000 + i) for i in range(5_000)]  # acme, wrong partition
    fold(reg, flood, nxt)
    for e in mine:
        rec = reg.command("acme", e.command.command_id)
        assert rec is not None and (rec.source_partition, rec.source_offset) == (0, e.source_offset)


def test_a_straggler_out_of_offset_order_cannot_grow_a_partition_past_the_window() -> None:
    """Entries of a partition folded out of source-offset order still leave at most N records."""
    reg = CatalogRegistry(10)
    nxt = fold(reg, [rejected(i, "acme", 0, 1_000 + i) for i in range(10)])
    nxt = fold(reg, [rejected(100 + i, "acme", 0, 995 - i) for i in range(5)], nxt)  # older offsets, later
    assert len(reg.commands) <= 10
    fold(reg, [rejected(200 + i, "acme", 0, 2_000 + i) for i in range(30)], nxt)
    assert len(reg.commands) == 10


def test_kept_records_are_compact() -> None:
    """A kept record holds what answers a duplicate and a poll: a rejected one no backfill, and a
    message cut to MAX_KEPT_MESSAGE characters (the log keeps the whole message)."""
    reg = CatalogRegistry()
    cmd = Command("c-1", "acme", 1000, ADMIN, "CreateRule", {"rule_id": "x" * 255})
    long = "rule " + "x" * 5_000 + " is invalid"
    plan = BackfillPlan("RULE_CREATED", (("s", RECONCILE),))
    reg.apply_entry(0, CatalogEntry(cmd, "REJECTED", "INVALID_CONDITION", long, 5000, 0, 0, plan))
    rec = reg.command("acme", "c-1")
    assert rec is not None
    assert rec.backfill is None
    assert len(rec.message) == MAX_KEPT_MESSAGE and rec.message.startswith("rule xxx")  # type: ignore[arg-type]
    ok = Command("c-2", "acme", 1000, ADMIN, "UpsertSegment", {"segment_id": "s", "name": "S"})
    reg.apply_entry(1, CatalogEntry(ok, "ACCEPTED", None, None, 5000, 0, 1, plan))
    assert reg.command("acme", "c-2").backfill == plan  # type: ignore[union-attr]
