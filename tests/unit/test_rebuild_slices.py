"""processor/rebuild.py ``_Slices``: the parent side of a parallel rebuild, with real spawned
processes running the doubles in tests/support/rebuild_doubles.py (no broker needed)."""

from __future__ import annotations

import pytest

from processor.config import Settings
from processor.rebuild import RebuildError, _Slices
from tests.support.rebuild_doubles import rebuild_slice_that_dies, rebuild_slice_that_fails, rebuild_slice_that_works

GROUPS = [[0, 2], [1, 3]]


def test_every_process_answers_in_turn_and_gets_the_run_id() -> None:
    """Answers come back in group order whatever the finishing order; the run id sent after the
    first answers reaches every process."""
    slices = _Slices(Settings(), GROUPS, "diff", 0, lambda phase, n: None, target=rebuild_slice_that_works)
    try:
        assert slices.gather("folded") == [{"parts": [0, 2]}, {"parts": [1, 3]}]
        slices.send("run-7")
        assert slices.gather("done") == [{"parts": g, "run_id": "run-7"} for g in GROUPS]
    finally:
        slices.close()


def test_a_failing_process_stops_the_rebuild_with_its_traceback() -> None:
    """A process that reports an error makes the parent raise RebuildError naming its partitions
    and carrying the traceback (so nothing is committed); progress sent before still arrives."""
    seen: list[tuple[str, int]] = []
    slices = _Slices(Settings(), GROUPS, "diff", 0, lambda phase, n: seen.append((phase, n)),
                     target=rebuild_slice_that_fails)
    try:
        with pytest.raises(RebuildError, match=r"rebuild of partitions \[\d, \d\] failed:[\s\S]*RuntimeError"):
            slices.gather("folded")
    finally:
        slices.close()
    assert ("read", 1) in seen


def test_a_process_that_dies_silently_stops_the_rebuild() -> None:
    """A process killed without a word (exit code 3) is noticed, not waited for forever: the
    error names its partitions and exit code and says to run the rebuild again."""
    slices = _Slices(Settings(), GROUPS, "diff", 0, lambda phase, n: None, target=rebuild_slice_that_dies)
    try:
        with pytest.raises(RebuildError, match=r"died \(exit code 3\).*run the rebuild again"):
            slices.gather("folded")
    finally:
        slices.close()
