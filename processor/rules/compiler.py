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
import time
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from processor.contract.json_depth import exceeds
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
    """A compiled condition node. ``now`` is epoch seconds (only time-relative leaves read it)."""

    __slots__ = ()

    def evaluate(self, profile: Profile, now: int = 0) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def explain(self, profile: Profile, now: int) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def next_transition(self, profile: Profile, now: int) -> int | None:  # pragma: no cover - abstract
        raise NotImplementedError


def _min(values: Any) -> int | None:
    found = [v for v in values if v is not None]
    return min(found) if found else None


class All(Node):
    __slots__ = ("children",)

    def __init__(self, children: list[Node]) -> None:
        self.children = tuple(children)

    def evaluate(self, profile: Profile, now: int = 0) -> bool:
        return all(c.evaluate(profile, now) for c in self.children)

    def explain(self, profile: Profile, now: int) -> dict[str, Any]:
        kids = [c.explain(profile, now) for c in self.children]
        return {"all": kids, "result": all(k["result"] for k in kids)}

    def next_transition(self, profile: Profile, now: int) -> int | None:
        return _min(c.next_transition(profile, now) for c in self.children)


class Any_(Node):
    __slots__ = ("children",)

    def __init__(self, children: list[Node]) -> None:
        self.children = tuple(children)

    def evaluate(self, profile: Profile, now: int = 0) -> bool:
        return any(c.evaluate(profile, now) for c in self.children)

    def explain(self, profile: Profile, now: int) -> dict[str, Any]:
        kids = [c.explain(profile, now) for c in self.children]
        return {"any": kids, "result": any(k["result"] for k in kids)}

    def next_transition(self, profile: Profile, now: int) -> int | None:
        return _min(c.next_transition(profile, now) for c in self.children)


class Not(Node):
    __slots__ = ("child",)

    def __init__(self, child: Node) -> None:
        self.child = child

    def evaluate(self, profile: Profile, now: int = 0) -> bool:
        return not self.child.evaluate(profile, now)

    def explain(self, profile: Profile, now: int) -> dict[str, Any]:
        kid = self.child.explain(profile, now)
        return {"not": kid, "result": not kid["result"]}

    def next_transition(self, profile: Profile, now: int) -> int | None:
        return self.child.next_transition(profile, now)


class Leaf(Node):
    """``field op value``. ``field_type`` tells indexes which semantics the operator has."""

    __slots__ = ("field", "field_type", "op", "value", "raw_value", "case_sensitive", "on_missing",
                 "uses_now", "_test", "_transition", "_datetime")

    def __init__(self, field: FieldSpec, op: Operator, value: Any, raw_value: Any, case_sensitive: bool,
                 on_missing: bool) -> None:
        self.field = field.name
        self.field_type = field.type
        self.op = op.name
        self.value = value
        self.raw_value = raw_value
        self.case_sensitive = case_sensitive
        self.on_missing = on_missing
        self.uses_now = op.uses_now
        self._test = op.impl(field.type).test
        self._transition = op.transition
        self._datetime = field.type is FieldType.DATETIME

    def _missing(self, actual: Any) -> bool:
        return actual is None or (self._datetime and as_epoch(actual) is None)

    def evaluate(self, profile: Profile, now: int = 0) -> bool:
        actual = profile.get(self.field)
        if actual is None or (self._datetime and as_epoch(actual) is None):
            return self.on_missing
        if self.uses_now:
            return self._test(actual, self.value, self.case_sensitive, now)
        return self._test(actual, self.value, self.case_sensitive)

    def explain(self, profile: Profile, now: int) -> dict[str, Any]:
        actual = profile.get(self.field)
        out: dict[str, Any] = {"field": self.field, "op": self.op}
        if self.raw_value is not None:
            out["value"] = self.raw_value
        out["actual"] = actual
        out["missing"] = self._missing(actual)
        out["result"] = self.evaluate(profile, now)
        return out

    def next_transition(self, profile: Profile, now: int) -> int | None:
        if self._transition is None:
            return None
        ts = as_epoch(profile.get(self.field))
        return None if ts is None else self._transition(ts, self.value, now)


@dataclass(frozen=True, slots=True)
class CompiledCondition:
    root: Node
    fields: frozenset[str]
    nodes: int
    time_relative: bool = False

    def evaluate(self, profile: Profile, now: int | None = None) -> bool:
        return self.root.evaluate(profile, _now(now) if self.time_relative else 0)

    def explain(self, profile: Profile, now: int | None = None) -> dict[str, Any]:
        """The evaluation tree: every node's result and the profile values leaves read."""
        return self.root.explain(profile, _now(now))

    def next_transition(self, profile: Profile, now: int | None = None) -> int | None:
        """Earliest instant after ``now`` at which the result may change with time alone."""
        if not self.time_relative:
            return None
        return self.root.next_transition(profile, _now(now))


def time_leaves(node: Node) -> Iterator[Leaf]:
    """The leaves of a tree that can change truth with time alone (``within_last``, ``in_past``...).

    Every combinator's ``next_transition`` is the minimum over its children, so a condition's
    next transition is the minimum over these leaves: a site can compute it over its *distinct*
    time leaves instead of walking every rule.
    """
    if isinstance(node, Leaf):
        if node._transition is not None:
            yield node
    elif isinstance(node, Not):
        yield from time_leaves(node.child)
    else:
        for child in node.children:  # type: ignore[attr-defined] - All / Any_
            yield from time_leaves(child)


def _now(now: int | None) -> int:
    return int(time.time()) if now is None else int(now)


def _suggest(word: str, choices: list[str]) -> str | None:
    hits = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return hits[0] if hits else None


class _Compiler:
    def __init__(self, resolver: FieldResolver) -> None:
        self.resolver = resolver
        self.errors: list[RuleError] = []
        self.nodes = 0
        self.fields: set[str] = set()
        self.time_relative = False

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
                    f"a {groups[0]!r} node must have no other keys; found {sorted(map(str, tree))}",
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
        unknown = sorted(map(str, tree))
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
        extra = sorted(map(str, set(tree) - LEAF_KEYS))  # str(): a Python caller may use other keys
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
                + ("; custom profile fields come from the LMS: declare it there first"
                   if name.startswith(CUSTOM_PREFIX) else ""),
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
        if not op.takes_value and "value" in tree:
            self.fail("INVALID_VALUE", f"operator {opname!r} takes no value; remove \"value\"", f"{path}.value")
            return None
        raw = tree.get("value")
        try:
            value = op.impl(spec.type).prepare(raw, spec, cs, f"{path}.value")
        except RuleError as err:
            self.errors.append(err)
            return None
        if op.uses_now:
            self.time_relative = True
        return Leaf(spec, op, value, raw, cs, on_missing)


MAX_JSON_CHARS = 64 * 1024


def parse_condition_json(text: str) -> Any:
    """JSON text -> tree; bounded in size and nesting before the JSON parser sees it."""
    if len(text) > MAX_JSON_CHARS:
        raise CompileError([RuleError("INVALID_CONDITION",
                                      f"condition_json is longer than {MAX_JSON_CHARS} characters", "$")])
    # a condition level is at most an object plus a list: 2 brackets per level (+ values)
    if exceeds(text, 2 * MAX_DEPTH + 4):
        raise CompileError([RuleError("INVALID_CONDITION",
                                      f"condition is nested deeper than {MAX_DEPTH} levels", "$")])
    try:
        return json.loads(text)
    except (ValueError, TypeError, RecursionError) as exc:
        raise CompileError([RuleError("INVALID_CONDITION", f"condition_json is not valid JSON: {exc}", "$")]) from None


def compile_condition(condition: str | Any, resolver: FieldResolver) -> CompiledCondition:
    """Compile a condition (JSON text or already-parsed tree); raise CompileError listing every problem."""
    tree = parse_condition_json(condition) if isinstance(condition, str) else condition
    comp = _Compiler(resolver)
    root = comp.node(tree, "$", 1)
    if comp.errors or root is None:
        raise CompileError(comp.errors or [RuleError("INVALID_CONDITION", "empty condition", "$")])
    return CompiledCondition(root=root, fields=frozenset(comp.fields), nodes=comp.nodes,
                             time_relative=comp.time_relative)
