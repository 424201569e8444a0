"""The internal control topic's messages: a backfill order (one per users partition for an
accepted command) and a timer tick (a worker's own "timers are due" note to one partition).

JSON bodies; the format is internal (every worker of a version reads what it writes). A message
this version cannot read is a ``ContractError`` INVALID_CONTROL (dead-lettered by the guard).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from processor.contract.exceptions import ContractError
from processor.membership.engine import Cause

TICK_KEY = b"tick"


@dataclass(frozen=True, slots=True)
class BackfillOrder:
    site_id: str
    catalog_offset: int  # the command's catalog entry: the backfill waits until it is folded
    command_id: str
    segments: list[tuple[str, str]]  # (segment id, mode)
    cause: Cause


@dataclass(frozen=True, slots=True)
class Tick:
    at: int  # epoch seconds: timers due at or before this


def backfill_order(site_id: str, catalog_offset: int, command_id: str, cause_kind: str, occurred_at: int,
                   segments: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> bytes:
    return json.dumps({"site_id": site_id, "catalog_offset": catalog_offset, "command_id": command_id,
                       "cause_kind": cause_kind, "occurred_at": occurred_at,
                       "segments": [list(s) for s in segments]}, sort_keys=True).encode()


def tick(at: int) -> bytes:
    return json.dumps({"kind": "tick", "at": at}).encode()


def parse(value: bytes | None) -> BackfillOrder | Tick:
    try:
        ctl = json.loads(value or b"")
        if ctl.get("kind") == "tick":
            return Tick(int(ctl["at"]))
        return BackfillOrder(ctl["site_id"], int(ctl["catalog_offset"]), ctl["command_id"],
                             [(s, m) for s, m in ctl["segments"]],
                             Cause(ctl["cause_kind"], ctl["command_id"], int(ctl["occurred_at"])))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ContractError("INVALID_CONTROL", f"bad control message: {exc}") from None
