"""In-memory view of every site's catalog, folded from the catalog log."""

from __future__ import annotations

from processor.catalog.commands import apply
from processor.catalog.entry import CatalogEntry
from processor.catalog.model import CommandRecord, SiteCatalog


class CatalogRegistry:
    """Folds catalog entries in log order. Idempotent per command_id: first entry wins."""

    def __init__(self) -> None:
        self.sites: dict[str, SiteCatalog] = {}
        self.applied_offset = -1  # offset of the last entry folded

    def site(self, site_id: str) -> SiteCatalog:
        """The site's catalog (an empty one for a site never seen; not stored)."""
        return self.sites.get(site_id) or SiteCatalog(site_id)

    def apply_entry(self, offset: int, entry: CatalogEntry) -> bool:
        """Fold one entry; returns False when it duplicates an already-applied command."""
        if offset <= self.applied_offset:
            return False
        self.applied_offset = offset
        cmd = entry.command
        cat = self.sites.get(cmd.site_id)
        if cat is None:
            cat = self.sites[cmd.site_id] = SiteCatalog(cmd.site_id)
        if cmd.command_id in cat.commands:
            return False
        cat.commands[cmd.command_id] = CommandRecord(
            cmd.command_id, entry.status, entry.code, entry.message, entry.processed_at,
            entry.source_partition, entry.source_offset, offset, entry.backfill,
        )
        if entry.status == "ACCEPTED":
            apply(cat, cmd)
        return True
