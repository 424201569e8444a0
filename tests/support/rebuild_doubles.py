"""Targets for ``processor.rebuild._Slices`` in tests: slice processes that fail, die or work.

Module level, so the spawned processes can import them by name.
"""

from __future__ import annotations

import os
from typing import Any

from processor.config import Settings

def rebuild_slice_that_fails(conn: Any, s: Settings, parts: list[int], mode: str, now_ms: int) -> None:
    """Reports a failure the way ``_slice_main`` does when its work raises."""
    conn.send(("progress", ("read", 1)))
    conn.send(("error", f"Traceback (most recent call last):\nRuntimeError: partitions {parts} failed"))
    conn.close()


def rebuild_slice_that_dies(conn: Any, s: Settings, parts: list[int], mode: str, now_ms: int) -> None:
    """Dies without a word (as under kill -9 or an out-of-memory kill)."""
    os._exit(3)


def rebuild_slice_that_works(conn: Any, s: Settings, parts: list[int], mode: str, now_ms: int) -> None:
    """Folds nothing, then answers the run id it receives."""
    conn.send(("folded", {"parts": parts}))
    run_id = conn.recv()
    conn.send(("done", {"parts": parts, "run_id": run_id}))
    conn.close()
