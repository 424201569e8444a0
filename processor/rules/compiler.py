"""Compile a JSON condition tree into an evaluable predicate, type-checked up front.

Grammar::

    condition := {"all": [condition, ...]} | {"any": [condition, ...]}
               | {"not": condition}
               | {"field": NAME, "op": OP, "value"?: ANY,
                  "case_sensitive"?: bool, "missing"?: "match" | "no_match"}

Every problem is reported with a code, a JSON path and (where it helps) a
"did you mean" suggestion; all problems are collected, not just the first.
A compiled rule never raises at evaluation time.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any, Mapping

from processor.rules.exceptions import CompileError, RuleError
from processor.rules.fields import CUSTOM_PREFIX, FieldResolver, FieldSpec, FieldType
from processor.rules.operators import REGISTRY, Operator, operators_for
from processor.rules.values import as_epoch

MAX_DEPTH = 16
MAX_NODES = 256
LEAF_KEYS = frozenset({"field", "op", "value", "case_sensitive", "missing"})
GROUP_KEYS = ("all", "any", "not")

Profile = Mapping[str, Any]


class Node:
    __slots__ = ()

    def evaluate(self, profile: Profile) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError


class All(Node):
    __slots__ = ("children",)

    def __init__(self, children: list[Node]) -> None:
        self.children = tuple(children)

    def evaluate(self, profile: Profile) -> bool:
        return all(c.evaluate(profile) for c in self.children)


class Any_(Node):
    __slots__ = ("children",)

    def __init__(self, children: list[Node]) -> None:
        self.children = tuple(children)

    def evaluate(self, profile: Profile) -> bool:
        return any(c.evaluate(profile) for c in self.children)


class Not(Node):
    __slots__ = ("child",)

    def __init__(self, child: Node) -> None:
        self.child = child

    def evaluate(self, profile: Profile) -> bool:
        return not self.child.evaluate(profile)


class Leaf(Node):
    __slots__ = ("field", "op", "value", "case_sensitive", "on_missing", "_test", "_datetime")

    def __init__(self, field: FieldSpec, op: Operator, value: Any, case_sensitive: bool, on_missing: bool) -> None:
        self.field = field.name
        self.op = op.name
        self.value = value
        self.case_sensitive = case_sensitive
        self.on_missing = on_missing
        self._test = op.test
        self._datetime = field.type is FieldType.DATETIME

    def evaluate(self, profile: Profile) -> bool:
        actual = profile.get(self.field)
        if actual is None or (self._datetime and as_epoch(actual) is None):
            return self.on_missing
        return self._test(actual, self.value, self.case_sensitive)


@dataclass(frozen=True, slots=True)
class CompiledCondition:
    root: Node
    fields: frozenset[str]
    nodes: int

    def evaluate(self, profile: Profile) -> bool:
        return self.root.evaluate(profile)


def _suggest(word: str, choices: list[str]) -> str | None:
    hits = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return hits[0] if hits else None


class _Compiler:
    def __init__(self, resolver: FieldResolver) -> None:
        self.resolver = resolver
        self.errors: list[RuleError] = []
        self.nodes = 0
        self.fields: set[str] = set()

    def fail(self, code: str, message: str, path: str, suggestion: str | None = None) -> None:
        self.errors.append(RuleError(code, message, path, suggestion))

    def node(self, tree: Any, path: str, depth: int) -> Node | None:
        self.nodes += 1
        if depth > MAX_DEPTH:
            self.fail("INVALID_CONDITION", f"condition is nested deeper than {MAX_DEPTH} levels", path)
            return None
        if self.nodes > MAX_NODES:
            if self.nodes == MAX_NODES + 1:
                self.fail("INVALID_CONDITION", f"condition has more than {MAX_NODES} nodes", path)
            return None
        if not isinstance(tree, dict):
            self.fail("INVALID_CONDITION", f"expected an object, got {type(tree).__name__}", path)
            return None
        groups = [k for k in GROUP_KEYS if k in tree]
        if groups:
            if len(tree) != 1:
                self.fail(
                    "INVALID_CONDITION",
                    f"a {groups[0]!r} node must have no other keys; found {sorted(tree)}",
                    path,
                )
                return None
            key = groups[0]
            if key == "not":
                child = self.node(tree["not"], f"{path}.not", depth + 1)
                return Not(child) if child else None
            items = tree[key]
            if not isinstance(items, list) or not items:
                self.fail("INVALID_CONDITION", f"{key!r} takes a non-empty list of conditions", f"{path}.{key}")
                return None
            children = [self.node(c, f"{path}.{key}[{i}]", depth + 1) for i, c in enumerate(items)]
            if any(c is None for c in children):
                return None
            return All(children) if key == "all" else Any_(children)  # type: ignore[arg-type]
        if "field" in tree or "op" in tree:
            return self.leaf(tree, path)
        unknown = sorted(tree)
        hint = _suggest(unknown[0], [*GROUP_KEYS, "field"]) if unknown else None
        self.fail(
            "INVALID_CONDITION",
            "expected {\"all\": [...]}, {\"any\": [...]}, {\"not\": ...} or a leaf "
            "{\"field\", \"op\", \"value\"}" + (f"; found keys {unknown}" if unknown else ""),
            path,
            hint,
        )
        return None

    def leaf(self, tree: dict[str, Any], path: str) -> Node | None:
        extra = sorted(set(tree) - LEAF_KEYS)
        if extra:
            self.fail(
                "INVALID_CONDITION",
                f"unknown key {extra[0]!r} in condition",
                f"{path}.{extra[0]}",
                _suggest(extra[0], sorted(LEAF_KEYS)),
            )
            return None
        name, opname = tree.get("field"), tree.get("op")
        if not isinstance(name, str) or not name:
            self.fail("INVALID_CONDITION", "\"field\" must be a non-empty string", f"{path}.field")
            return None
        if not isinstance(opname, str) or not opname:
            self.fail("INVALID_CONDITION", "\"op\" must be a non-empty string", f"{path}.op")
            return None
        spec = self.resolver.resolve_field(name)
        if spec is None:
            known = self.resolver.known_field_names()
            hint = f"{CUSTOM_PREFIX}{name}" if f"{CUSTOM_PREFIX}{name}" in known else _suggest(name, known)
            kind = "custom profile field" if name.startswith(CUSTOM_PREFIX) else "profile field"
            self.fail(
                "UNKNOWN_FIELD",
                f"unknown {kind} {name!r}"
                + ("; define it with UpsertProfileField first" if name.startswith(CUSTOM_PREFIX) else ""),
                f"{path}.field",
                hint,
            )
            return None
        self.fields.add(spec.name)
        op = REGISTRY.get(opname)
        valid = operators_for(spec.type)
        if op is None:
            self.fail("INVALID_OPERATOR", f"unknown operator {opname!r}; valid for {spec.type.value} "
                      f"field {name!r}: {', '.join(valid)}", f"{path}.op", _suggest(opname, valid))
            return None
        if spec.type not in op.field_types:
            self.fail(
                "INVALID_OPERATOR",
                f"operator {opname!r} is not valid for {spec.type.value} field {name!r}; "
                f"valid: {', '.join(valid)}",
                f"{path}.op",
            )
            return None
        cs = tree.get("case_sensitive", False)
        if not isinstance(cs, bool):
            self.fail("INVALID_CONDITION", "\"case_sensitive\" must be true or false", f"{path}.case_sensitive")
            return None
        missing = tree.get("missing")
        if missing not in (None, "match", "no_match"):
            self.fail("INVALID_CONDITION", "\"missing\" must be \"match\" or \"no_match\"", f"{path}.missing")
            return None
        on_missing = op.on_missing if missing is None else missing == "match"
        if op.takes_value and "value" not in tree:
            self.fail("INVALID_VALUE", f"operator {opname!r} needs a \"value\"", f"{path}.value")
            return None
        try:
            value = op.prepare(tree.get("value"), spec, cs, f"{path}.value")
        except RuleError as err:
            self.errors.append(err)
            return None
        return Leaf(spec, op, value, cs, on_missing)


def parse_condition_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, TypeError) as exc:
        raise CompileError([RuleError("INVALID_CONDITION", f"condition_json is not valid JSON: {exc}", "$")]) from None


def compile_condition(condition: str | Any, resolver: FieldResolver) -> CompiledCondition:
    """Compile a condition (JSON text or already-parsed tree); raise CompileError listing every problem."""
    tree = parse_condition_json(condition) if isinstance(condition, str) else condition
    comp = _Compiler(resolver)
    root = comp.node(tree, "$", 1)
    if comp.errors or root is None:
        raise CompileError(comp.errors or [RuleError("INVALID_CONDITION", "empty condition", "$")])
    return CompiledCondition(root=root, fields=frozenset(comp.fields), nodes=comp.nodes)
