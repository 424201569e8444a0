"""The operator registry: one entry per condition operator.

An operator declares which field types it applies to, how its rule value is
checked and prepared at compile time, its test on a present profile value,
and its result when the profile value is missing. Negated operators are
registered as the exact negation of their positive twin (including on
missing values), so ``not_equals`` can never drift from ``equals``.

Adding an operator is one ``register(...)`` call; the compiler and the
evaluator never change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from processor.rules.exceptions import RuleError
from processor.rules.fields import FieldSpec, FieldType
from processor.rules.values import (
    as_epoch,
    as_number,
    as_text,
    as_text_items,
    is_blank,
    is_truthy,
    norm_text,
    parse_epoch_value,
)

Prepare = Callable[[Any, FieldSpec, bool, str], Any]
Test = Callable[[Any, Any, bool], bool]

TEXT_TYPES = frozenset({FieldType.TEXT, FieldType.TEXTAREA})
MENU = frozenset({FieldType.MENU})
MULTI = frozenset({FieldType.MULTISELECT})
ALL_TYPES = frozenset(FieldType)


@dataclass(frozen=True, slots=True)
class Operator:
    name: str
    field_types: frozenset[FieldType]
    takes_value: bool
    prepare: Prepare
    test: Test  # (present profile value, prepared rule value, case_sensitive) -> bool
    on_missing: bool
    doc: str


REGISTRY: dict[str, Operator] = {}


def register(op: Operator) -> Operator:
    if op.name in REGISTRY:
        raise ValueError(f"operator {op.name} registered twice")
    REGISTRY[op.name] = op
    return op


def register_negation(name: str, of: str, doc: str) -> Operator:
    pos = REGISTRY[of]
    ptest = pos.test
    return register(
        Operator(
            name=name,
            field_types=pos.field_types,
            takes_value=pos.takes_value,
            prepare=pos.prepare,
            test=lambda a, v, cs: not ptest(a, v, cs),
            on_missing=not pos.on_missing,
            doc=doc,
        )
    )


def operators_for(ftype: FieldType) -> list[str]:
    return sorted(n for n, op in REGISTRY.items() if ftype in op.field_types)


# ------------------------------------------------------------------ preparers


def _no_value(value: Any, spec: FieldSpec, cs: bool, path: str) -> None:
    if value is not None:
        raise RuleError("INVALID_VALUE", "this operator takes no value; remove \"value\"", path)
    return None


def _check_option(text: str, spec: FieldSpec, path: str) -> None:
    if spec.type is FieldType.MENU and spec.options:
        options = {norm_text(o) for o in spec.options}
        if norm_text(text) not in options:
            raise RuleError(
                "INVALID_VALUE",
                f"{text!r} is not an option of menu field {spec.name!r}; valid options: "
                + ", ".join(repr(o) for o in spec.options),
                path,
            )


def _text_value(value: Any, spec: FieldSpec, cs: bool, path: str) -> str:
    if not isinstance(value, str):
        raise RuleError("INVALID_VALUE", f"value must be a string, got {type(value).__name__}", path)
    _check_option(value, spec, path)
    return norm_text(value, cs)


def _text_list(value: Any, spec: FieldSpec, cs: bool, path: str) -> frozenset[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise RuleError("INVALID_VALUE", "value must be a non-empty list of strings", path)
    for i, v in enumerate(value):
        _check_option(v, spec, f"{path}[{i}]")
    return frozenset(norm_text(v, cs) for v in value)


def _number_value(value: Any, spec: FieldSpec, cs: bool, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RuleError("INVALID_VALUE", f"value must be a number, got {type(value).__name__}", path)
    return float(value)


def _epoch_value(value: Any, spec: FieldSpec, cs: bool, path: str) -> int:
    parsed = parse_epoch_value(value)
    if parsed is None:
        raise RuleError(
            "INVALID_VALUE",
            "value must be epoch seconds (integer) or an ISO-8601 date such as \"2026-01-31\"",
            path,
        )
    return parsed


# ---------------------------------------------------------------------- tests


def _scalar_text(pred: Callable[[str, Any], bool]) -> Test:
    """A text test; a list value (multi-valued data in a text field) matches if any item does."""

    def test(actual: Any, v: Any, cs: bool) -> bool:
        if isinstance(actual, list):
            return any(pred(norm_text(str(a), cs), v) for a in actual)
        return pred(as_text(actual, cs), v)

    return test


def _number(pred: Callable[[float, float], bool]) -> Test:
    def test(actual: Any, v: float, cs: bool) -> bool:
        num = as_number(actual)
        return num is not None and pred(num, v)

    return test


def _epoch(pred: Callable[[int, int], bool]) -> Test:
    def test(actual: Any, v: int, cs: bool) -> bool:
        ts = as_epoch(actual)
        return ts is not None and pred(ts, v)

    return test


_TEXTISH = TEXT_TYPES | MENU

register(Operator("equals", _TEXTISH, True, _text_value, _scalar_text(lambda a, v: a == v), False,
                  "Text equals the value (case-insensitive, trimmed)."))
register(Operator("contains", TEXT_TYPES, True, _text_value, _scalar_text(lambda a, v: v in a), False,
                  "Text contains the value."))
register(Operator("starts_with", TEXT_TYPES, True, _text_value, _scalar_text(lambda a, v: a.startswith(v)),
                  False, "Text starts with the value."))
register(Operator("ends_with", TEXT_TYPES, True, _text_value, _scalar_text(lambda a, v: a.endswith(v)), False,
                  "Text ends with the value."))
register(Operator("in", _TEXTISH, True, _text_list, _scalar_text(lambda a, v: a in v), False,
                  "Text equals one of the listed values."))
register_negation("not_equals", "equals", "Negation of equals (true when the field is missing).")
register_negation("not_contains", "contains", "Negation of contains.")
register_negation("not_starts_with", "starts_with", "Negation of starts_with.")
register_negation("not_ends_with", "ends_with", "Negation of ends_with.")
register_negation("not_in", "in", "Negation of in.")

register(Operator("is_empty", ALL_TYPES - {FieldType.CHECKBOX}, False, _no_value,
                  lambda a, v, cs: is_blank(a), True, "Missing, null, blank text or empty list (datetime: 0 = unset)."))
register_negation("is_not_empty", "is_empty", "Negation of is_empty.")

register(Operator("is_checked", frozenset({FieldType.CHECKBOX}), False, _no_value,
                  lambda a, v, cs: is_truthy(a), False, "Checkbox is ticked (true, 1, \"yes\")."))
register_negation("is_not_checked", "is_checked", "Checkbox not ticked, or missing.")

_NUM = frozenset({FieldType.NUMBER})
register(Operator("lt", _NUM, True, _number_value, _number(lambda a, v: a < v), False, "Number < value."))
register(Operator("lte", _NUM, True, _number_value, _number(lambda a, v: a <= v), False, "Number <= value."))
register(Operator("gt", _NUM, True, _number_value, _number(lambda a, v: a > v), False, "Number > value."))
register(Operator("gte", _NUM, True, _number_value, _number(lambda a, v: a >= v), False, "Number >= value."))

_DT = frozenset({FieldType.DATETIME})
register(Operator("before", _DT, True, _epoch_value, _epoch(lambda a, v: a < v), False,
                  "Datetime strictly before the value (epoch seconds); unset (0) never matches."))
register(Operator("after", _DT, True, _epoch_value, _epoch(lambda a, v: a > v), False,
                  "Datetime strictly after the value; unset (0) never matches."))


def _items(actual: Any, cs: bool) -> set[str]:
    return {i for i in as_text_items(actual, cs) if i}


register(Operator("any_of", MULTI, True, _text_list, lambda a, v, cs: bool(_items(a, cs) & v), False,
                  "At least one listed value is present."))
register(Operator("all_of", MULTI, True, _text_list, lambda a, v, cs: v <= _items(a, cs), False,
                  "Every listed value is present."))
register_negation("none_of", "any_of", "None of the listed values is present.")
