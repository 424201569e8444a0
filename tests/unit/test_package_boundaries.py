"""The runtime package ships without test support: nothing under ``processor/`` imports the test
tree (``tests.*``) or a dev-only dependency (Faker, pytest, hypothesis, ...), at module level or
inside a function. The worker image installs no dev extra, so such an import would fail there.

Imports are read from the source (``ast``), so an import hidden in a function body or behind a
condition is found too.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "processor"


def _extra(name: str) -> set[str]:
    """Top-level module names of an optional-dependency group of pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dists = (re.split(r"[\s<>=!~\[;]", d, maxsplit=1)[0] for d in project["optional-dependencies"][name])
    return {d.lower().replace("-", "_") for d in dists}


def dev_only_modules() -> set[str]:
    """The dev extra's modules, minus what the image may install (the embedded broker's extra)."""
    return (_extra("dev") - _extra("embedded")) | {"tests"}


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports, anywhere in the file."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
    return out


def test_the_dev_extra_is_what_this_test_thinks_it_is() -> None:
    """The forbidden list really contains the test-only libraries (a renamed extra would empty it)."""
    assert {"faker", "pytest", "hypothesis", "tests"} <= dev_only_modules()


def test_nothing_in_the_runtime_package_imports_test_support_or_dev_only_libraries() -> None:
    forbidden = dev_only_modules()
    found = sorted(
        (str(path.relative_to(ROOT)), name)
        for path in PACKAGE.rglob("*.py")
        for name in imported_modules(path)
        if name.split(".")[0] in forbidden
    )
    assert found == [], f"runtime modules importing test support or dev-only libraries: {found}"
