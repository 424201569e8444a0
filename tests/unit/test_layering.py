"""The runtime's layering (docs/architecture.md): handlers import neither Faust nor Kafka nor the
runtime, and no module of processor/ takes part in an import cycle (imports inside functions
count; ``if TYPE_CHECKING:`` imports do not)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KAFKA_OR_FAUST = ("faust", "mode", "aiokafka", "confluent_kafka", "rocksdict", "aiohttp")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str] | None = None) -> set[str]:
    """Modules ``path`` imports, at module level or in functions, outside ``if TYPE_CHECKING:``
    (``from pkg import a, b`` where ``pkg.a`` and ``pkg.b`` are among ``modules``: those two)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = {f"{node.module}.{a.name}" for a in node.names}
            out.update(names)
            if not (modules and names <= modules):  # "from pkg import submodule" depends on the submodule
                out.add(node.module)
    return out


def graph() -> dict[str, set[str]]:
    mods = {module_name(p): p for p in (ROOT / "processor").rglob("*.py")}
    return {m: {i for i in imports(p, set(mods)) if i in mods and i != m} for m, p in mods.items()}


def test_handlers_import_no_kafka_no_faust_no_runtime() -> None:
    g_paths = sorted((ROOT / "processor" / "handlers").glob("*.py"))
    assert g_paths
    for path in g_paths:
        bad = sorted(i for i in imports(path)
                     if i.split(".")[0] in KAFKA_OR_FAUST or i.startswith(("processor.runtime", "processor.http")))
        assert not bad, f"{path.name} imports {bad}"


def test_no_import_cycle_in_processor() -> None:
    g = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    assert not [c for c in cycles if any(m.startswith(("processor.runtime", "processor.handlers", "processor.http"))
                                         for m in c)], cycles


def test_the_cycle_check_sees_a_cycle() -> None:
    """The graph walker itself: two modules importing each other (one inside a function) form a
    cycle; an import under TYPE_CHECKING does not count."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        a, b = Path(d) / "a.py", Path(d) / "b.py"
        a.write_text("import b\n")
        b.write_text("def f():\n    import a\n")
        assert imports(b) == {"a"}
        b.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\n")
        assert imports(b) == {"typing", "typing.TYPE_CHECKING"}
