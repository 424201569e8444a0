"""The progress fold (processor/catalog/progress.py, registry.py): catalog-log progress entries
become a command's state and counts, the same on every worker, bounded by the command window."""

from __future__ import annotations

from processor.catalog.commands import RECONCILE, BackfillPlan
from processor.catalog.entry import CatalogEntry, ProgressEntry, decode_entry
from processor.catalog.registry import CatalogRegistry
from processor.contract.models import Actor, Command

ADMIN = Actor("adm", ("site_admin",))
SITE = "pg"


def accepted(cid: str, source_offset: int, partitions: int | None = 3, segments: tuple[str, ...] = ("s",),
             source_partition: int = 0) -> CatalogEntry:
    cmd = Command(cid, SITE, 1000, ADMIN, "EnableSegmentAutomation", {"segment_id": segments[0]})
    plan = BackfillPlan("SEGMENT_AUTOMATION_ENABLED", tuple((s, RECONCILE) for s in segments))
    return CatalogEntry(cmd, "ACCEPTED", None, None, 5000, source_partition, source_offset, plan, partitions)


def report(cid: str, at_offset: int, partition: int, evaluated: int, added: int = 0, removed: int = 0,
           done: bool = False, at: int = 6000, failed: str | None = None) -> ProgressEntry:
    return ProgressEntry(SITE, cid, at_offset, partition, evaluated, added, removed, done, at, failed)


class Log:
    """A catalog log folded by two registries (two workers), entries round-tripped through bytes."""

    def __init__(self, window: int = 100) -> None:
        self.workers = [CatalogRegistry(window), CatalogRegistry(window)]
        self.offset = -1

    def append(self, entry: CatalogEntry | ProgressEntry) -> int:
        self.offset += 1
        for reg in self.workers:
            reg.apply_entry(self.offset, decode_entry(entry.encode()))
        return self.offset

    @property
    def reg(self) -> CatalogRegistry:
        return self.workers[0]


def test_a_command_goes_accepted_applying_applied_with_the_sum_of_its_partitions() -> None:
    log = Log()
    at = log.append(accepted("c1", 0, partitions=3, segments=("s", "t")))
    prog = log.reg.progress.get(SITE, "c1")
    assert prog is not None and prog.state == "ACCEPTED" and prog.totals() == (0, 0, 0, 0)
    log.append(report("c1", at, 0, 40, 3, 1))  # partition 0 running
    assert (prog.state, prog.totals()) == ("APPLYING", (0, 40, 3, 1))
    log.append(report("c1", at, 0, 100, 7, 2, done=True))
    log.append(report("c1", at, 2, 90, 5, 0, done=True))
    assert (prog.state, prog.totals()) == ("APPLYING", (2, 190, 12, 2))
    assert log.reg.progress.applying(SITE, "t") == [prog] and log.reg.progress.current_as_of(SITE, "t") is None
    last = log.append(report("c1", at, 1, 10, 0, 4, done=True, at=7777))
    assert (prog.state, prog.totals()) == ("APPLIED", (3, 200, 12, 6))
    assert (prog.completed_at, prog.completed_offset) == (7777, last)
    assert prog.as_dict()["applied_at"] == 7777 and prog.as_dict()["failed_partitions"] == []
    assert [log.reg.progress.current_as_of(SITE, s) for s in ("s", "t", "other")] == [7777, 7777, None]
    assert log.reg.progress.applying(SITE, "s") == []
    # both workers folded the same thing
    other = log.workers[1].progress.get(SITE, "c1")
    assert other is not None and (other.state, other.totals(), other.completed_offset) == (
        "APPLIED", (3, 200, 12, 6), last)


def test_a_rerun_replaces_a_partitions_counts_and_a_done_partition_stays_done() -> None:
    """A partition taken over after a crash runs its order again from the start: its latest report
    replaces the dead run's; once done, a later run (a re-delivery) changes nothing."""
    log = Log()
    at = log.append(accepted("c1", 0, partitions=2))
    prog = log.reg.progress.get(SITE, "c1")
    assert prog is not None
    log.append(report("c1", at, 0, 80, 8))  # the dead run got this far
    log.append(report("c1", at, 0, 20, 2))  # the new owner's run restarts
    assert prog.totals() == (0, 20, 2, 0)
    log.append(report("c1", at, 0, 100, 10, done=True))
    log.append(report("c1", at, 0, 30, 1))  # a late re-run of the same order
    log.append(report("c1", at, 0, 100, 99, done=True))
    assert prog.totals() == (1, 100, 10, 0) and prog.state == "APPLYING"


def test_a_failed_partition_is_shown_until_a_run_finishes_it() -> None:
    log = Log()
    at = log.append(accepted("c1", 0, partitions=2))
    prog = log.reg.progress.get(SITE, "c1")
    assert prog is not None
    log.append(report("c1", at, 1, 100, done=True))
    log.append(report("c1", at, 0, 5, failed="RuntimeError: boom"))
    d = prog.as_dict()
    assert (prog.state, d["failed_partitions"], d["code"]) == ("APPLYING", [0], "BACKFILL_FAILED")
    assert "RuntimeError: boom" in d["message"] and "dead letter" in d["message"]
    log.append(report("c1", at, 0, 50, done=True))  # the dead letter replayed
    assert prog.state == "APPLIED" and "code" not in prog.as_dict()


def test_reports_of_untracked_commands_change_nothing() -> None:
    """Entries of an earlier version (no partition count), a report naming another incarnation of
    the id (another catalog offset) and a partition outside the fan-out are ignored."""
    log = Log()
    log.append(accepted("old", 0, partitions=None))
    assert log.reg.progress.get(SITE, "old") is None
    log.append(report("old", 0, 0, 10, done=True))
    at = log.append(accepted("c1", 1, partitions=1))
    log.append(report("c1", at + 100, 0, 10, done=True))
    log.append(report("c1", at, 5, 10, done=True))
    prog = log.reg.progress.get(SITE, "c1")
    assert prog is not None and prog.state == "ACCEPTED"
    log.append(report("c1", at, 0, 10, done=True))
    assert prog.state == "APPLIED" and log.reg.applied_offset == log.offset


def test_progress_is_forgotten_with_its_command_record() -> None:
    """Bounded: the command window drops a record (a newer command of its partition pushed it
    out) and its progress goes with it, also from its segments' applying lists."""
    log = Log(window=2)
    log.append(accepted("c1", 0, partitions=2))
    assert log.reg.progress.applying(SITE, "s")[0].command_id == "c1"
    log.append(accepted("c2", 1, partitions=2, segments=("u",)))
    log.append(accepted("c3", 2, partitions=2, segments=("u",)))
    assert log.reg.command(SITE, "c1") is None
    assert log.reg.progress.get(SITE, "c1") is None and log.reg.progress.applying(SITE, "s") == []
    assert len(log.reg.progress) == 2


def test_a_catalog_entry_without_partitions_keeps_its_old_bytes() -> None:
    """Entries of commands without tracking (rejected, no backfill) are what they always were."""
    e = accepted("c1", 0, partitions=None)
    assert b"partitions" not in e.encode() and b"kinds" not in e.encode()
    assert decode_entry(e.encode()) == e
    tracked = accepted("c2", 0, partitions=4)
    assert decode_entry(tracked.encode()) == tracked
    r = report("c2", 3, 1, 5, 1, 2, done=True)
    assert decode_entry(r.encode()) == r
