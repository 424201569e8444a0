"""How far accepted commands' backfills got, folded from the catalog log's progress entries.

An accepted command with a backfill is fanned out to every users partition; each partition
reports on the catalog log (processor/catalog/entry.py ``ProgressEntry``) while it runs and when
it is done. Every worker folds the same reports in the same order, so any worker answers:

* a command's state: ``ACCEPTED`` (no partition reported yet), ``APPLYING`` (some did), ``APPLIED``
  (every partition is done), with partitions done out of total and users evaluated, added and
  removed so far (the sum of each partition's latest report);
* a segment's ``current_as_of`` (when the last backfill that touched it finished) and the
  commands still applying to it.

Rules of the fold (reports can repeat: a partition taken over after a crash or a rebalance runs
its order again, from the start):

* a partition's latest report replaces its earlier ones (a re-run's counts restart from zero);
* once a partition is done it stays done, with the counts of its first done report;
* a command completes at the entry that makes its last partition done; from then on its
  per-partition detail is dropped and only its totals are kept.

Bounded: a command is tracked only while its record is in the command window
(processor/catalog/window.py calls :meth:`ProgressBook.forget` when it drops one); per command at
most one small record per users partition until it completes. Pure: no Kafka, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from processor.catalog.entry import ProgressEntry


@dataclass(slots=True)
class Part:
    evaluated: int = 0
    added: int = 0
    removed: int = 0
    done_offset: int = -1  # catalog offset of the partition's first done report (-1: not done)
    failed: str | None = None  # why its last run failed (None once a run finished)


@dataclass(slots=True)
class CommandProgress:
    site_id: str
    command_id: str
    catalog_offset: int  # the command's entry
    total: int  # users partitions fanned out to
    segments: tuple[str, ...]
    accepted_at: int  # epoch ms: the command's processed_at
    parts: dict[int, Part] | None  # None once complete
    evaluated: int = 0  # totals, kept once complete
    added: int = 0
    removed: int = 0
    updated_at: int | None = None  # the last report's time
    completed_at: int | None = None  # epoch ms of the report that completed it
    completed_offset: int = -1

    @property
    def complete(self) -> bool:
        return self.parts is None

    @property
    def state(self) -> str:
        if self.complete:
            return "APPLIED"
        return "APPLYING" if self.parts else "ACCEPTED"

    def totals(self) -> tuple[int, int, int, int]:
        """(partitions done, users evaluated, added, removed) so far."""
        if self.parts is None:
            return self.total, self.evaluated, self.added, self.removed
        parts = self.parts.values()
        return (sum(1 for p in parts if p.done_offset >= 0), sum(p.evaluated for p in parts),
                sum(p.added for p in parts), sum(p.removed for p in parts))

    def failed(self) -> dict[int, str]:
        """Partitions whose last run failed and has not been run again successfully."""
        return {} if self.parts is None else {n: p.failed for n, p in sorted(self.parts.items())
                                              if p.failed is not None and p.done_offset < 0}

    def as_dict(self) -> dict[str, Any]:
        """The API's ``progress`` object (docs/api.md, "Command status")."""
        done, evaluated, added, removed = self.totals()
        failed = self.failed()
        out: dict[str, Any] = {
            "partitions_done": done, "partitions_total": self.total, "users_evaluated": evaluated,
            "users_added": added, "users_removed": removed, "segments": list(self.segments),
            "updated_at": self.updated_at, "applied_at": self.completed_at,
            "failed_partitions": sorted(failed),
        }
        if failed:
            first = min(failed)
            out["code"] = "BACKFILL_FAILED"
            out["message"] = (f"the backfill of users partition(s) {', '.join(map(str, sorted(failed)))} failed "
                              f"({failed[first]}); its backfill order is a dead letter (control topic, the same "
                              "partition): replay it to finish this command")
        return out


class ProgressBook:
    """Every tracked command's progress, and each segment's last completed backfill."""

    def __init__(self) -> None:
        self._cmds: dict[tuple[str, str], CommandProgress] = {}
        self._current: dict[str, dict[str, int]] = {}  # site -> segment -> completed_at of the last backfill
        self._applying: dict[str, dict[str, dict[str, None]]] = {}  # site -> segment -> command ids (in order)

    def __len__(self) -> int:
        return len(self._cmds)

    def get(self, site_id: str, command_id: str) -> CommandProgress | None:
        return self._cmds.get((site_id, command_id))

    def track(self, site_id: str, command_id: str, catalog_offset: int, total: int, segments: tuple[str, ...],
              accepted_at: int) -> None:
        """An accepted command's backfill was fanned out to ``total`` users partitions."""
        segs = tuple(dict.fromkeys(segments))
        self._cmds[(site_id, command_id)] = CommandProgress(site_id, command_id, catalog_offset, total, segs,
                                                            accepted_at, {})
        site = self._applying.setdefault(site_id, {})
        for seg in segs:
            site.setdefault(seg, {})[command_id] = None

    def fold(self, offset: int, e: ProgressEntry) -> CommandProgress | None:
        """Fold the report at catalog ``offset``; returns the command's progress if it is tracked."""
        prog = self._cmds.get((e.site_id, e.command_id))
        if prog is None or prog.catalog_offset != e.catalog_offset or not 0 <= e.partition < prog.total:
            return None  # not tracked (forgotten, or another command that reused the id): ignored
        if prog.parts is None:
            return prog  # complete: a late re-run's report changes nothing
        part = prog.parts.setdefault(e.partition, Part())
        prog.updated_at = e.at
        if part.done_offset >= 0:
            return prog  # done stays done
        part.evaluated, part.added, part.removed = e.evaluated, e.added, e.removed
        if e.done:
            part.done_offset, part.failed = offset, None
        elif e.failed is not None:
            part.failed = e.failed
        if len(prog.parts) == prog.total and all(p.done_offset >= 0 for p in prog.parts.values()):
            self._complete(prog, offset, e.at)
        return prog

    def _complete(self, prog: CommandProgress, offset: int, at: int) -> None:
        _, prog.evaluated, prog.added, prog.removed = prog.totals()
        prog.parts = None
        prog.completed_at, prog.completed_offset = at, offset
        current = self._current.setdefault(prog.site_id, {})
        for seg in prog.segments:
            current[seg] = max(current.get(seg, 0), at)
        self._not_applying(prog)

    def _not_applying(self, prog: CommandProgress) -> None:
        site = self._applying.get(prog.site_id)
        if site is None:
            return
        for seg in prog.segments:
            cmds = site.get(seg)
            if cmds is not None:
                cmds.pop(prog.command_id, None)
                if not cmds:
                    del site[seg]
        if not site:
            del self._applying[prog.site_id]

    def forget(self, site_id: str, command_id: str) -> None:
        """The command window dropped the command's record: stop tracking it."""
        prog = self._cmds.pop((site_id, command_id), None)
        if prog is not None and not prog.complete:
            self._not_applying(prog)

    def current_as_of(self, site_id: str, segment_id: str) -> int | None:
        """When the last tracked backfill touching the segment finished (epoch ms), if any."""
        return self._current.get(site_id, {}).get(segment_id)

    def applying(self, site_id: str, segment_id: str) -> list[CommandProgress]:
        """The tracked commands whose backfill of the segment has not finished, oldest first."""
        ids = self._applying.get(site_id, {}).get(segment_id, {})
        return [p for cid in ids if (p := self._cmds.get((site_id, cid))) is not None]
