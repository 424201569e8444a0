"""Records of the internal catalog log (one JSON record per processed command, and the
progress of accepted commands' backfills).

The catalog topic is the site catalog's source of truth and its audit log:
every command, accepted or rejected, with who issued it, the decision and
the backfill it triggered. It has one partition, so every worker applies the
same entries in the same order.

A :class:`ProgressEntry` (``"kind": "progress"``) is one users partition's report on a
command's backfill: how far it got, and whether it finished. Every worker folds them
(processor/catalog/progress.py), so any worker answers a command's progress. A worker of an
earlier version skips them as corrupt entries (logged and counted, nothing else).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from processor.catalog.commands import BackfillPlan
from processor.contract.models import Command


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    command: Command
    status: str
    code: str | None
    message: str | None
    processed_at: int
    source_partition: int
    source_offset: int
    backfill: BackfillPlan | None
    partitions: int | None = None  # users partitions the backfill was fanned out to (None: no tracking)

    def encode(self) -> bytes:
        d = {
            "v": 1,
            "command": self.command.to_dict(),
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "processed_at": self.processed_at,
            "source": {"partition": self.source_partition, "offset": self.source_offset},
            "backfill": self.backfill.to_dict() if self.backfill else None,
        }
        if self.partitions is not None:
            d["partitions"] = self.partitions
        return json.dumps(d, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> "CatalogEntry":
        return cls.from_dict(json.loads(raw))

    @classmethod
    def from_dict(cls, d: dict) -> "CatalogEntry":  # type: ignore[type-arg]
        return cls(
            command=Command.from_dict(d["command"]),
            status=d["status"],
            code=d["code"],
            message=d["message"],
            processed_at=d["processed_at"],
            source_partition=d["source"]["partition"],
            source_offset=d["source"]["offset"],
            backfill=BackfillPlan.from_dict(d["backfill"]),
            partitions=d.get("partitions"),
        )


@dataclass(frozen=True, slots=True)
class ProgressEntry:
    """One users partition's report on the backfill of command ``command_id`` (whose catalog entry
    is at ``catalog_offset``): users evaluated, added and removed so far by this run, ``done`` when
    the partition finished, ``failed`` (a message) when its order failed and was dead-lettered."""

    site_id: str
    command_id: str
    catalog_offset: int
    partition: int
    evaluated: int
    added: int
    removed: int
    done: bool
    at: int  # epoch ms, the reporting worker's clock
    failed: str | None = None

    def encode(self) -> bytes:
        d = {"v": 1, "kind": "progress", "site_id": self.site_id, "command_id": self.command_id,
             "catalog_offset": self.catalog_offset, "partition": self.partition, "evaluated": self.evaluated,
             "added": self.added, "removed": self.removed, "done": self.done, "at": self.at}
        if self.failed is not None:
            d["failed"] = self.failed
        return json.dumps(d, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, d: dict) -> "ProgressEntry":  # type: ignore[type-arg]
        return cls(str(d["site_id"]), str(d["command_id"]), int(d["catalog_offset"]), int(d["partition"]),
                   int(d["evaluated"]), int(d["added"]), int(d["removed"]), bool(d["done"]), int(d["at"]),
                   d.get("failed"))


def decode_entry(raw: bytes) -> "CatalogEntry | ProgressEntry":
    """Any record of the catalog log."""
    d = json.loads(raw)
    if d.get("kind") == "progress":
        return ProgressEntry.from_dict(d)
    return CatalogEntry.from_dict(d)
