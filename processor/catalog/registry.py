"""In-memory view of every site's catalog, folded from the catalog log (commands, and the
progress of their backfills: processor/catalog/progress.py)."""

from __future__ import annotations

import sys

from processor.catalog.commands import apply
from processor.catalog.entry import CatalogEntry, ProgressEntry
from processor.catalog.model import CommandRecord, SiteCatalog
from processor.catalog.progress import ProgressBook
from processor.catalog.window import DEFAULT_SIZE, CommandWindow

# A kept record's message is cut to this many characters (the log keeps the whole one): the
# first result is published from the kept record, so every answer for the command is the same.
MAX_KEPT_MESSAGE = 1_000


class CatalogRegistry:
    """Folds catalog entries in log order. Idempotent per command_id within the de-duplication
    window (processor/catalog/window.py): first entry wins; after the window an id counts as new."""

    def __init__(self, command_window: int = DEFAULT_SIZE) -> None:
        self.sites: dict[str, SiteCatalog] = {}  # sites with at least one accepted command
        self.progress = ProgressBook()  # accepted commands' backfills, while their records are kept
        self.commands = CommandWindow(command_window, on_forget=self.progress.forget)
        self.applied_offset = -1  # offset of the last entry folded

    def site(self, site_id: str) -> SiteCatalog:
        """The site's catalog (an empty one for a site never seen; not stored)."""
        return self.sites.get(site_id) or SiteCatalog(site_id)

    def command(self, site_id: str, command_id: str) -> CommandRecord | None:
        """The record of a processed command still in the window, else None."""
        return self.commands.get(site_id, command_id)

    def apply_entry(self, offset: int, entry: CatalogEntry | ProgressEntry) -> bool:
        """Fold one entry; returns False when it duplicates a command still in the window."""
        if offset <= self.applied_offset:
            return False
        self.applied_offset = offset
        if isinstance(entry, ProgressEntry):
            self.progress.fold(offset, entry)
            return True
        cmd = entry.command
        if self.commands.get(cmd.site_id, cmd.command_id) is not None:
            return False
        self.commands.add(cmd.site_id, record_of(entry, offset))
        if (entry.status == "ACCEPTED" and entry.backfill is not None and entry.partitions
                and self.commands.get(cmd.site_id, cmd.command_id) is not None):
            self.progress.track(cmd.site_id, cmd.command_id, offset, entry.partitions,
                                tuple(s for s, _ in entry.backfill.segments), entry.processed_at)
        if entry.status == "ACCEPTED":
            cat = self.sites.get(cmd.site_id)
            if cat is None:
                cat = self.sites[cmd.site_id] = SiteCatalog(cmd.site_id)
            apply(cat, cmd)
        return True


def record_of(entry: CatalogEntry, offset: int) -> CommandRecord:
    """The compact record kept for an entry: what answers a duplicate, a status poll and a crash
    replay. Status and code come from a small set (interned); the backfill only for accepted ones."""
    message = entry.message
    if message is not None and len(message) > MAX_KEPT_MESSAGE:
        message = message[:MAX_KEPT_MESSAGE - 1] + "…"
    return CommandRecord(
        entry.command.command_id, sys.intern(entry.status), sys.intern(entry.code) if entry.code else None,
        message, entry.processed_at, entry.source_partition, entry.source_offset, offset,
        entry.backfill if entry.status == "ACCEPTED" else None,
    )
