"""A fresh Moodle web-service double (tests/support/moodle_double.py) per test."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.support.moodle_double import MoodleDouble


@pytest.fixture
def moodle() -> Iterator[MoodleDouble]:
    d = MoodleDouble().start()
    try:
        yield d
    finally:
        d.stop()
