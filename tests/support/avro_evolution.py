"""Is a schema change one that readers of either version survive? (docs/contract.md#schema-evolution)

``problems(old, new)`` answers with a list of readable findings (empty: compatible). Two kinds
of reader must survive, in both directions:

* **Avro schema resolution** (a reader that knows the writer's schema: with a Schema Registry,
  or fastavro ``schemaless_reader(buf, writer, reader)``): records of ``old`` read with ``new``,
  and records of ``new`` read with ``old``, by fastavro.
* **Schemaless readers** (the default wire format: the value carries no schema id, so a reader
  decodes with the schema it has): bytes written with ``new`` must read with ``old`` as written,
  giving what resolution gives. That holds only if every change keeps the byte layout of what
  ``old`` knows: fields appended at the end of the top-level record, enum symbols and union
  branches appended, nothing reordered, renamed or retyped.

Records are generated from the schemas (:func:`samples`): every field, every enum symbol and
every union branch, so a data-level break shows on some record. Structural rules that data
cannot show (a removed enum symbol that reads as the enum's default, an enum without a default)
are checked on the schemas themselves.
"""

from __future__ import annotations

import io
import itertools
from collections import Counter
from typing import Any, Callable, Iterator

import fastavro

from processor.contract.schemas import _strip_logical

PRIMITIVES: dict[str, list[Any]] = {
    "null": [None],
    "boolean": [True, False],
    "int": [0, -1, 2**31 - 1, -(2**31), 300],
    "long": [0, -1, 2**63 - 1, -(2**63), 1_700_000_000_123],
    "float": [0.5, -2.0],
    "double": [0.0, -1.5, 1e300],
    "bytes": [b"", b"\x00\xff", b"k" * 200],
    "string": ["", "s", "ünï-çødé ✓", "x" * 300],
}
MAX_SAMPLES = 2_000


def _full(name: str, ns: str | None) -> str:
    return name if "." in name or not ns else f"{ns}.{name}"


class _Names:
    """Named types (records, enums, fixed) by full name, as a schema defines them."""

    def __init__(self, schema: Any) -> None:
        self.types: dict[str, dict[str, Any]] = {}
        self._collect(schema, None)

    def _collect(self, node: Any, ns: str | None) -> None:
        if isinstance(node, list):
            for n in node:
                self._collect(n, ns)
        elif isinstance(node, dict):
            t = node.get("type")
            if t in ("record", "error", "enum", "fixed"):
                full = _full(node["name"], node.get("namespace", ns))
                self.types[full] = node
                ns = full.rsplit(".", 1)[0] if "." in full else ns
                for f in node.get("fields", ()):
                    self._collect(f["type"], ns)
            elif t == "array":
                self._collect(node["items"], ns)
            elif t == "map":
                self._collect(node["values"], ns)
            elif isinstance(t, (dict, list)):
                self._collect(t, ns)

    def resolve(self, node: Any, ns: str | None) -> tuple[Any, str | None]:
        """``node`` with a named reference replaced by its definition, and that node's namespace."""
        if isinstance(node, str) and node not in PRIMITIVES:
            full = _full(node, ns)
            node = self.types.get(full) or self.types[node]
            return node, full.rsplit(".", 1)[0] if "." in full else ns
        if isinstance(node, dict) and isinstance(node.get("type"), (dict, list)) and "name" not in node:
            return self.resolve(node["type"], ns)
        if isinstance(node, dict) and node.get("type") in PRIMITIVES and len(node) == 1:
            return node["type"], ns
        if isinstance(node, dict) and "name" in node:
            full = _full(node["name"], node.get("namespace", ns))
            return node, full.rsplit(".", 1)[0] if "." in full else ns
        return node, ns


def _identity(node: Any, ns: str | None, names: _Names) -> str:
    """What a union branch is, across versions: a named type's full name, else its type."""
    node, ns2 = names.resolve(node, ns)
    if isinstance(node, str):
        return node
    if "name" in node:
        return _full(node["name"], node.get("namespace", ns))
    return str(node["type"])


class _Generator:
    """Deterministic records covering every enum symbol and union branch of a schema, each in
    round robin per type (or per union position), and every field every time.

    ``allow(kind, key)`` limits enum symbols (kind ``"enum"``, key ``(full name, symbol)``) and
    union branches (kind ``"branch"``, key ``(union path, branch identity)``) to what another
    version knows."""

    def __init__(self, schema: dict[str, Any],
                 allow: Callable[[str, Any], bool] = lambda kind, key: True) -> None:
        self.schema, self.names, self.allow = schema, _Names(schema), allow
        self.turn: Counter[str] = Counter()  # round-robin position per enum / union / primitive
        self.need: dict[str, int] = {}  # choices still to cover once: key -> their count

    def _pick(self, key: str, choices: list[Any]) -> Any:
        self.need.setdefault(key, len(choices))
        i = self.turn[key]
        self.turn[key] += 1
        return choices[i % len(choices)]

    def covered(self) -> bool:
        return all(self.turn[k] >= n for k, n in self.need.items())

    def value(self, node: Any, ns: str | None, path: str) -> Any:
        node, ns = self.names.resolve(node, ns)
        if isinstance(node, str):
            return self._pick(f"primitive:{node}", PRIMITIVES[node])
        if isinstance(node, list):
            branches = [b for b in node if self.allow("branch", (path, _identity(b, ns, self.names)))]
            branch = self._pick(f"union:{path}", branches)
            got = self.value(branch, ns, f"{path}|{_identity(branch, ns, self.names)}")
            b, bns = self.names.resolve(branch, ns)
            if isinstance(b, dict) and b.get("type") in ("record", "error"):
                return (_full(b["name"], b.get("namespace", bns)), got)  # fastavro's "this branch" form
            return got
        t = node["type"]
        if t in ("record", "error"):
            return {f["name"]: self.value(f["type"], ns, f"{path}.{f['name']}") for f in node["fields"]}
        if t == "enum":
            full = _full(node["name"], node.get("namespace", ns))
            symbols = [s for s in node["symbols"] if self.allow("enum", (full, s))]
            return self._pick(f"enum:{full}", symbols)
        if t == "fixed":
            return b"\x01" * node["size"]
        if t == "array":
            n = self._pick(f"size:{path}", [0, 1, 3])
            return [self.value(node["items"], ns, f"{path}[]") for _ in range(n)]
        if t == "map":
            n = self._pick(f"size:{path}", [0, 1, 3])
            return {f"k{i}": self.value(node["values"], ns, f"{path}{{}}") for i in range(n)}
        raise ValueError(f"unsupported Avro type {t!r} at {path}")

    def records(self) -> Iterator[dict[str, Any]]:
        for i in itertools.count():
            yield self.value(self.schema, None, "$")
            if self.covered() and i >= 3:
                return
            if i >= MAX_SAMPLES:
                raise AssertionError(f"no full coverage after {MAX_SAMPLES} samples: {self.need}")


def samples(schema: dict[str, Any], allow: Callable[[str, Any], bool] = lambda kind, key: True) -> list[Any]:
    """Records of ``schema`` (logical types stripped) covering every field, enum symbol and union
    branch that ``allow`` lets through."""
    return list(_Generator(_strip_logical(schema), allow).records())


def _write(schema: Any, record: Any) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()


def _read(data: bytes, writer: Any, reader: Any = None) -> Any:
    return fastavro.schemaless_reader(io.BytesIO(data), writer, reader, return_record_name=True)


def _short(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def _enums(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: t for n, t in _Names(schema).types.items() if t["type"] == "enum"}


def structural_problems(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Rules on the schemas themselves: every enum of ``new`` has a default among its symbols, and
    an enum of both versions only gained symbols, at the end (its indexes are the wire format)."""
    out = []
    old_enums = _enums(old)
    for name, enum in _enums(new).items():
        if enum.get("default") not in enum["symbols"]:
            out.append(f"enum {name} has no default symbol (a reader of this version would fail on a "
                       "symbol added later)")
        before = old_enums.get(name)
        if before is not None and enum["symbols"][: len(before["symbols"])] != before["symbols"]:
            gone = [s for s in before["symbols"] if s not in enum["symbols"]]
            out.append(f"enum {name}: symbols {before['symbols']} became {enum['symbols']}"
                       + (f" ({', '.join(gone)} removed)" if gone else " (reordered)")
                       + "; symbols may only be appended")
    for name in old_enums.keys() - _enums(new).keys():
        out.append(f"enum {name} is gone from the new version")
    return out


def data_problems(old: dict[str, Any], new: dict[str, Any], limit: int = 5) -> list[str]:
    """Generated records, both ways (see the module docstring); at most ``limit`` findings each."""
    o, n = _strip_logical(old), _strip_logical(new)
    po, pn = fastavro.parse_schema(o), fastavro.parse_schema(n)
    out: list[str] = []
    # old data -> new reader, and back: every value the old record had must survive
    for rec in samples(o):
        try:
            resolved = _read(_write(po, rec), po, pn)
        except Exception as exc:  # noqa: BLE001 - the finding is the point
            out.append(f"old data -> new reader fails: {_short(exc)}")
        else:
            try:
                back = _read(_write(pn, resolved), pn, po)
            except Exception as exc:  # noqa: BLE001
                out.append(f"old data -> new reader -> old reader fails: {_short(exc)}")
            else:
                if back != rec:
                    out.append(f"old data -> new reader changes values: {_diff(rec, back)}")
        if len(out) >= limit:
            return out
    # new data (what the old version knows of enums and unions) -> old reader
    old_unions = _union_paths(o)
    old_enums = _enums(o)

    def allow(kind: str, key: Any) -> bool:
        where, what = key
        if kind == "enum":
            return where not in old_enums or what in old_enums[where]["symbols"]
        return where not in old_unions or what in old_unions[where]

    for rec in samples(n, allow):
        data = _write(pn, rec)
        try:
            resolved = _read(data, pn, po)
        except Exception as exc:  # noqa: BLE001
            out.append(f"new data -> old reader fails: {_short(exc)}")
        else:
            try:
                plain = _read(data, po)
            except Exception as exc:  # noqa: BLE001
                out.append(f"new data -> old schemaless reader fails: {_short(exc)}")
            else:
                if plain != resolved:
                    out.append("new data -> old schemaless reader reads other values than schema resolution "
                               f"(the byte layout of the old fields changed): {_diff(resolved, plain)}")
        if len(out) >= limit:
            return out
    return out


def _union_paths(schema: dict[str, Any]) -> dict[str, set[str]]:
    """Every union of ``schema`` by its path (as :class:`_Generator` names it) -> branch identities."""
    names = _Names(schema)
    found: dict[str, set[str]] = {}

    def walk(node: Any, ns: str | None, path: str, seen: frozenset[str]) -> None:
        node, ns = names.resolve(node, ns)
        if isinstance(node, list):
            found[path] = {_identity(b, ns, names) for b in node}
            for b in node:
                walk(b, ns, f"{path}|{_identity(b, ns, names)}", seen)
        elif isinstance(node, dict):
            t = node["type"]
            if t in ("record", "error"):
                full = _full(node["name"], node.get("namespace", ns))
                if full not in seen:
                    for f in node["fields"]:
                        walk(f["type"], ns, f"{path}.{f['name']}", seen | {full})
            elif t == "array":
                walk(node["items"], ns, f"{path}[]", seen)
            elif t == "map":
                walk(node["values"], ns, f"{path}{{}}", seen)

    walk(schema, None, "$", frozenset())
    return found


def _diff(a: Any, b: Any, path: str = "$") -> str:
    """The first place two decoded values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            if a.get(k, "<absent>") != b.get(k, "<absent>"):
                return _diff(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{path}.{k}")
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _diff(x, y, f"{path}[{i}]")
    return f"{path}: {a!r:.80} != {b!r:.80}"


def problems(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Everything that breaks a reader of ``old`` or of ``new`` (empty: the change is compatible)."""
    return list(dict.fromkeys(structural_problems(old, new) + data_problems(old, new)))
