"""The generic example consumer documents only options it has (its docstring once offered --course)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "segment_sync_consumer.py"


def test_every_option_in_the_docstring_exists() -> None:
    source = EXAMPLE.read_text()
    doc = source.split('"""')[1]
    mentioned = set(re.findall(r"(--[a-z][a-z-]+)", doc))
    assert mentioned, "the docstring shows how to run it"
    helptext = subprocess.run([sys.executable, str(EXAMPLE), "--help"], capture_output=True, text=True).stdout
    options = helptext.split("options:", 1)[1]  # (the help's description repeats the docstring)
    assert mentioned <= set(re.findall(r"^\s+(--[a-z][a-z-]+)", options, re.M))


def test_it_points_to_the_reference_consumer() -> None:
    assert "moodle sync" in EXAMPLE.read_text().split('"""')[1]
