"""Records of the internal catalog log (one JSON record per processed command).

The catalog topic is the site catalog's source of truth and its audit log:
every command, accepted or rejected, with who issued it, the decision and
the backfill it triggered. It has one partition, so every worker applies the
same entries in the same order.
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

    def encode(self) -> bytes:
        return json.dumps(
            {
                "v": 1,
                "command": self.command.to_dict(),
                "status": self.status,
                "code": self.code,
                "message": self.message,
                "processed_at": self.processed_at,
                "source": {"partition": self.source_partition, "offset": self.source_offset},
                "backfill": self.backfill.to_dict() if self.backfill else None,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, raw: bytes) -> "CatalogEntry":
        d = json.loads(raw)
        return cls(
            command=Command.from_dict(d["command"]),
            status=d["status"],
            code=d["code"],
            message=d["message"],
            processed_at=d["processed_at"],
            source_partition=d["source"]["partition"],
            source_offset=d["source"]["offset"],
            backfill=BackfillPlan.from_dict(d["backfill"]),
        )
