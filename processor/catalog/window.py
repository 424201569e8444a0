"""The command-id de-duplication window: which processed commands every worker remembers.

A command's record is kept while its source offset is among the last ``size`` offsets decided
on its commands partition; older records are forgotten (their entries stay in the catalog log,
the audit). Why this rule (docs/operations.md, "Command de-duplication window"):

* It reads nothing but the catalog log (each entry's source partition and offset, in log
  order), so every worker folding the log forgets the same records at the same entry.
* The crash replay in ``processor.handlers.commands`` recognises its own record by source offset: the
  messages re-delivered after a crash are those after the partition's last committed offset,
  and their records stay as long as the partition's owner was fewer than ``size`` messages past
  that commit. Floods on other partitions or of other sites do not count against it.
* Memory is at most ``size`` records per commands partition, whatever the number of sites.
"""

from __future__ import annotations

from collections import deque
from typing import Iterator

from processor.catalog.model import CommandRecord

DEFAULT_SIZE = 10_000


class CommandWindow:
    """Records of processed commands by (site, command_id), bounded per source partition."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        if size < 1:
            raise ValueError("the command window must hold at least one command")
        self.size = size
        self._sites: dict[str, dict[str, CommandRecord]] = {}  # per site, in fold order
        # per source partition: (source offset, site, command id) in fold order
        self._order: dict[int, deque[tuple[int, str, str]]] = {}
        self._high: dict[int, int] = {}  # highest source offset folded per partition
        self.forgotten = 0  # records evicted so far

    def get(self, site_id: str, command_id: str) -> CommandRecord | None:
        site = self._sites.get(site_id)
        return site.get(command_id) if site else None

    def oldest(self, site_id: str) -> CommandRecord | None:
        """The site's oldest record still kept (first folded), if any."""
        site = self._sites.get(site_id)
        return next(iter(site.values())) if site else None

    def add(self, site_id: str, rec: CommandRecord) -> None:
        """Remember ``rec`` (its id must not be kept already) and forget what falls out.

        A record already out of the window (a partition's message decided again after more than
        ``size`` later ones, e.g. by a stale owner) is not kept at all."""
        p = rec.source_partition
        high = self._high[p] = max(self._high.get(p, rec.source_offset), rec.source_offset)
        floor = high - self.size  # offsets at or below it are out of the window
        if rec.source_offset <= floor:
            self.forgotten += 1
            return
        self._sites.setdefault(site_id, {})[rec.command_id] = rec
        order = self._order.setdefault(p, deque())
        order.append((rec.source_offset, site_id, rec.command_id))
        while order[0][0] <= floor or len(order) > self.size:
            _, sid, cid = order.popleft()
            site = self._sites[sid]
            del site[cid]
            if not site:
                del self._sites[sid]
            self.forgotten += 1

    def __len__(self) -> int:
        return sum(len(o) for o in self._order.values())

    def __iter__(self) -> Iterator[tuple[str, CommandRecord]]:
        for sid, recs in self._sites.items():
            for rec in recs.values():
                yield sid, rec
