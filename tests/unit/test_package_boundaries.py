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


def imported_modules(path: Path, with_names: bool = False) -> set[str]:
    """Every absolute module name ``path`` imports, anywhere in the file; ``with_names``: plus
    ``module.name`` for each ``from module import name``."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
            if with_names:
                out.update(f"{node.module}.{a.name}" for a in node.names)
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


# ----------------------------------------------------------------- the HTTP layer's dependencies
RUNTIME_SIDE = ("processor.app", "processor.runtime", "processor.handlers", "processor.read_model",
                "processor.worker", "processor.web")
KAFKA_SIDE = ("faust", "mode", "aiokafka", "confluent_kafka", "rocksdict")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(name: str, modules: set[str]) -> str | None:
    """The processor module ``name`` names (``from processor import http`` names a package)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def test_the_http_layer_reaches_neither_the_runtime_nor_kafka() -> None:
    """processor/http depends on its read model (processor/http/model.py), the API contract and
    the pure core only: nothing it imports, directly or through other processor modules (type-
    checking imports included), is the runtime or a Kafka/Faust/RocksDB library. So the runtime
    can import it to wire it, and no import cycle can form."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    start = sorted(m for m in modules if m == "processor.http" or m.startswith("processor.http."))
    assert "processor.http.api" in start and "processor.http.model" in start
    seen: set[str] = set()
    third_party: dict[str, str] = {}
    todo = list(start)
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        for name in imported_modules(files[mod], with_names=True):
            if name.split(".")[0] != "processor":
                third_party.setdefault(name.split(".")[0], mod)
                continue
            target = _resolve(name, modules)
            if target is not None and target not in seen:
                todo.append(target)
    runtime = sorted(m for m in seen if m.startswith(RUNTIME_SIDE))
    assert runtime == [], f"processor/http reaches runtime modules: {runtime}"
    kafka = sorted((lib, via) for lib, via in third_party.items() if lib in KAFKA_SIDE)
    assert kafka == [], f"processor/http reaches Kafka-side libraries (library, through module): {kafka}"
