"""The history index's environment variables (docs/contract.md's table; names are contract)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from processor.errors import ProcessorError
from processor.history.writer import Retention


def _int(name: str, default: int, low: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ProcessorError("INVALID_SETTING", f"{name} must be a whole number, got {raw!r}", name) from None
    if value < low:
        raise ProcessorError("INVALID_SETTING", f"{name} must be at least {low}, got {value}", name)
    return value


@dataclass(frozen=True, slots=True)
class HistorySettings:
    enabled: bool = True  # HISTORY_ENABLED=0: no index, the history and audit reads answer 503
    retention: Retention = Retention()
    sweep_interval_s: int = 3600  # how often the daily counts, audit and rule versions are swept
    fetch_max_wait_ms: int = 250  # the index may lag the topic by this much; nobody waits on it

    @classmethod
    def from_env(cls) -> "HistorySettings":
        d = cls()
        return cls(
            enabled=os.environ.get("HISTORY_ENABLED", "1").strip().lower() not in ("0", "false", "no"),
            retention=Retention(_int("HISTORY_RETENTION_DAYS", d.retention.max_age_days, 1),
                                _int("HISTORY_MAX_CHANGES_PER_USER", d.retention.max_changes_per_user, 1)),
            sweep_interval_s=_int("HISTORY_SWEEP_INTERVAL_S", d.sweep_interval_s, 1),
        )
