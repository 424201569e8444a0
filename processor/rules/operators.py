"""The operator registry: one entry per condition operator.

An operator declares which field types it applies to, how its rule value is
checked and prepared at compile time (so a stored rule can never fail at
evaluation time), its test on a present profile value, and its result when
the profile value is missing. Operators shared by several field types with
different semantics (``equals`` on text vs numbers, ``between`` on numbers vs
datetimes) carry per-type implementations in ``by_type``.

Negated operators are registered as the exact negation of their positive
twin, including on missing values, so ``not_equals`` can never drift from
``equals``. Time-relative operators read ``now`` and can say when their truth
will next flip (``transition``), so the processor can re-evaluate a user at
exactly that instant instead of polling.

Adding an operator is one ``register(...)`` call; the compiler and the
evaluator never change.
"""

from __future__ import annotations

import datetime as _dt
import functools
import math
import zoneinfo
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import re2

from processor.rules.durations import parse_duration
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
    show,
)

Prepare = Callable[[Any, FieldSpec, bool, str], Any]
Test = Callable[..., bool]  # (actual, prepared, case_sensitive[, now]) -> bool
Transition = Callable[[int, Any, int], "int | None"]  # (timestamp, prepared, now) -> next flip instant

TEXT_TYPES = frozenset({FieldType.TEXT, FieldType.TEXTAREA})
MENU = frozenset({FieldType.MENU})
MULTI = frozenset({FieldType.MULTISELECT})
NUM = frozenset({FieldType.NUMBER})
DT = frozenset({FieldType.DATETIME})
ALL_TYPES = frozenset(FieldType)
MAX_REGEX_CHARS = 512
MAX_LIST_ITEMS = 1000
MAX_TIMEZONE_CHARS = 64  # the longest IANA name is about 30 characters


@dataclass(frozen=True, slots=True)
class Impl:
    prepare: Prepare
    test: Test


@dataclass(frozen=True, slots=True)
class Operator:
    name: str
    field_types: frozenset[FieldType]
    takes_value: bool
    prepare: Prepare
    test: Test
    on_missing: bool
    doc: str
    uses_now: bool = False
    transition: Transition | None = None
    by_type: Mapping[FieldType, Impl] = field(default_factory=dict)
    negates: str | None = None

    def impl(self, ftype: FieldType) -> Impl:
        return self.by_type.get(ftype) or Impl(self.prepare, self.test)


REGISTRY: dict[str, Operator] = {}


def register(op: Operator) -> Operator:
    if op.name in REGISTRY:
        raise ValueError(f"operator {op.name} registered twice")
    REGISTRY[op.name] = op
    return op


def _negate(test: Test) -> Test:
    return lambda *args: not test(*args)


def register_negation(name: str, of: str, doc: str) -> Operator:
    pos = REGISTRY[of]
    return register(
        Operator(
            name=name,
            field_types=pos.field_types,
            takes_value=pos.takes_value,
            prepare=pos.prepare,
            test=_negate(pos.test),
            on_missing=not pos.on_missing,
            doc=doc,
            uses_now=pos.uses_now,
            transition=pos.transition,
            by_type={t: Impl(i.prepare, _negate(i.test)) for t, i in pos.by_type.items()},
            negates=of,
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
    if spec.type in (FieldType.MENU, FieldType.MULTISELECT) and spec.options:
        options = {norm_text(o) for o in spec.options}
        if norm_text(text) not in options:
            raise RuleError(
                "INVALID_VALUE",
                f"{show(text)} is not an option of field {spec.name!r}; valid options: "
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
    if len(value) > MAX_LIST_ITEMS:
        raise RuleError("INVALID_VALUE", f"a list may hold at most {MAX_LIST_ITEMS} values", path)
    for i, v in enumerate(value):
        _check_option(v, spec, f"{path}[{i}]")
    return frozenset(norm_text(v, cs) for v in value)


def _number_value(value: Any, spec: FieldSpec, cs: bool, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RuleError("INVALID_VALUE", f"value must be a number, got {type(value).__name__}", path)
    try:
        number = float(value)
    except OverflowError:  # an integer beyond the float range (about 1.8e308)
        raise RuleError("INVALID_VALUE", "value is too large: numbers must be within +-1.8e308", path) from None
    if not math.isfinite(number):
        raise RuleError("INVALID_VALUE", f"value must be a finite number, got {value!r}", path)
    return number


def _number_range(value: Any, spec: FieldSpec, cs: bool, path: str) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2:
        raise RuleError("INVALID_VALUE", "between takes [low, high] (inclusive)", path)
    lo = _number_value(value[0], spec, cs, f"{path}[0]")
    hi = _number_value(value[1], spec, cs, f"{path}[1]")
    if lo > hi:
        raise RuleError("INVALID_VALUE", f"between: low {value[0]} is greater than high {value[1]}", path)
    return lo, hi


def _epoch_value(value: Any, spec: FieldSpec, cs: bool, path: str) -> int:
    parsed = parse_epoch_value(value)
    if parsed is None:
        raise RuleError(
            "INVALID_VALUE",
            "value must be epoch seconds (integer) or an ISO-8601 date such as \"2026-01-31\", "
            "between 0001-01-01 and 9999-12-31",
            path,
        )
    return parsed


def _epoch_range(value: Any, spec: FieldSpec, cs: bool, path: str) -> tuple[int, int]:
    if not isinstance(value, list) or len(value) != 2:
        raise RuleError("INVALID_VALUE", "between takes [from, to] (inclusive)", path)
    lo = _epoch_value(value[0], spec, cs, f"{path}[0]")
    hi = _epoch_value(value[1], spec, cs, f"{path}[1]")
    if lo > hi:
        raise RuleError("INVALID_VALUE", "between: from is after to", path)
    return lo, hi


@functools.lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    """Every IANA zone name this installation knows (system tz database and the tzdata package)."""
    return frozenset(zoneinfo.available_timezones())


def _zone(name: Any, path: str) -> ZoneInfo:
    """An IANA timezone by name. Only names of the tz database are looked up: ZoneInfo reads a file
    named after its argument, so "America" (a directory) or a 5,000-character name raised OS errors
    whose messages showed the server's paths."""
    if not isinstance(name, str):
        raise RuleError("INVALID_VALUE", f"timezone must be an IANA name such as \"Europe/Paris\", "
                        f"got {type(name).__name__}", path)
    if len(name) > MAX_TIMEZONE_CHARS or name not in _zone_names():
        raise RuleError("INVALID_VALUE", f"unknown IANA timezone {show(name)} (e.g. \"Europe/Paris\")", path)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # listed but unreadable: same answer, no path
        raise RuleError("INVALID_VALUE", f"unknown IANA timezone {show(name)} (e.g. \"Europe/Paris\")",
                        path) from None


def _day_value(value: Any, spec: FieldSpec, cs: bool, path: str) -> tuple[int, int]:
    """``on``: "YYYY-MM-DD" or {"date": "YYYY-MM-DD", "timezone": "Europe/Paris"} -> [start, end)."""
    tz_name: Any = "UTC"
    date_path = path
    if isinstance(value, dict):
        extra = set(value) - {"date", "timezone"}
        if extra or "date" not in value:
            raise RuleError("INVALID_VALUE", "on takes \"YYYY-MM-DD\" or {\"date\": ..., \"timezone\": ...}", path)
        tz_name = value.get("timezone")
        if tz_name is None or tz_name == "":
            tz_name = "UTC"
        value = value["date"]
        date_path = f"{path}.date"
    if not isinstance(value, str):
        raise RuleError("INVALID_VALUE", "on takes a calendar date \"YYYY-MM-DD\"", date_path)
    try:
        day = _dt.date.fromisoformat(value.strip())
    except ValueError:
        raise RuleError("INVALID_VALUE", f"{show(value)} is not a date like \"2026-01-31\"", date_path) from None
    tz = _zone(tz_name, f"{path}.timezone")
    start = int(_dt.datetime.combine(day, _dt.time(), tz).timestamp())
    if day == _dt.date.max:  # no next day to start from: the last day of the calendar lasts 24 hours
        return start, start + 86400
    end = int(_dt.datetime.combine(day + _dt.timedelta(days=1), _dt.time(), tz).timestamp())
    return start, end


def _duration(value: Any, spec: FieldSpec, cs: bool, path: str) -> int:
    return parse_duration(value, path)


def re2_problem(exc: Exception) -> str:
    """RE2's compile error (bytes such as ``b'invalid perl operator: (?='``) in an admin's words."""
    raw = exc.args[0] if exc.args else ""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    kind, _, part = text.partition(": ")
    if kind == "invalid perl operator" and part.startswith(("(?=", "(?!", "(?<=", "(?<!")):
        what = "lookahead" if part[2] in "=!" else "lookbehind"
        alt = " (to exclude a pattern, use the condition 'does not match' instead)" if "!" in part else ""
        return f"{part}...) is a {what}, which RE2 does not support{alt}"
    if kind == "invalid escape sequence" and part[1:].isdigit():
        return f"{part} is a backreference, which RE2 does not support"
    explained = {
        "missing ]": "a '[' is not closed by ']' in {}",
        "missing )": "a '(' is not closed by ')' in {}",
        "unexpected )": "a ')' has no '(' to close in {}",
        "invalid escape sequence": "{} is not a valid escape (write \\\\ for a backslash)",
        "invalid repetition size": "a repetition count may be at most 1000, found {}",
        "no argument for repetition operator": "{} must follow something to repeat",
        "missing argument to repetition operator": "{} must follow something to repeat",
        "bad repetition operator": "{} is not a valid repetition",
        "invalid character class range": "{} is not a valid character class or range",
        "invalid named capture group": "{} is not a valid named group: write (?P<name>...)",
        "invalid perl operator": "{} is not a valid group: write (...), (?:...) or (?P<name>...)",
        "pattern too large - compile failed": "the regular expression is too large: make it simpler",
    }
    if kind in explained:
        return explained[kind].format(part)
    return text


def _regex(value: Any, spec: FieldSpec, cs: bool, path: str) -> Any:
    if not isinstance(value, str) or not value:
        raise RuleError("INVALID_VALUE", "matches takes a non-empty regular expression string", path)
    if len(value) > MAX_REGEX_CHARS:
        raise RuleError("INVALID_VALUE", f"regular expression is longer than {MAX_REGEX_CHARS} characters", path)
    opts = re2.Options()
    opts.case_sensitive = cs
    opts.log_errors = False
    opts.max_mem = 8 << 20
    try:
        return re2.compile(value, opts)
    except re2.error as exc:
        raise RuleError("INVALID_VALUE", f"invalid regular expression: {re2_problem(exc)}", path) from None
    except (ValueError, TypeError, OverflowError):  # e.g. a lone surrogate, which has no UTF-8 form
        raise RuleError("INVALID_VALUE", "invalid regular expression: it must be valid Unicode text", path) from None


# ---------------------------------------------------------------------- tests


def _scalar_text(pred: Callable[[str, Any], bool]) -> Test:
    """A text test; a list value (multi-valued data in a text field) matches if any item does."""

    def test(actual: Any, v: Any, cs: bool) -> bool:
        if isinstance(actual, list):
            return any(pred(norm_text(str(a), cs), v) for a in actual)
        return pred(as_text(actual, cs), v)

    return test


def _regex_test(actual: Any, rx: Any, cs: bool) -> bool:
    items = actual if isinstance(actual, list) else [actual]
    return any(rx.search(as_text(a, True)) is not None for a in items)


def _number(pred: Callable[[float, Any], bool]) -> Test:
    def test(actual: Any, v: Any, cs: bool) -> bool:
        num = as_number(actual)
        return num is not None and pred(num, v)

    return test


def _epoch(pred: Callable[[int, Any], bool]) -> Test:
    def test(actual: Any, v: Any, cs: bool) -> bool:
        ts = as_epoch(actual)
        return ts is not None and pred(ts, v)

    return test


def _epoch_now(pred: Callable[[int, Any, int], bool]) -> Test:
    def test(actual: Any, v: Any, cs: bool, now: int) -> bool:
        ts = as_epoch(actual)
        return ts is not None and pred(ts, v, now)

    return test


_TEXTISH = TEXT_TYPES | MENU


def _items(actual: Any, cs: bool) -> set[str]:
    return {i for i in as_text_items(actual, cs) if i}


# text, menu, number
register(Operator("equals", _TEXTISH | NUM, True, _text_value, _scalar_text(lambda a, v: a == v), False,
                  "Text equals the value (case-insensitive, trimmed); numbers compare numerically.",
                  by_type={FieldType.NUMBER: Impl(_number_value, _number(lambda a, v: a == v))}))
register(Operator("contains", TEXT_TYPES, True, _text_value, _scalar_text(lambda a, v: v in a), False,
                  "Text contains the value."))
register(Operator("starts_with", TEXT_TYPES, True, _text_value, _scalar_text(lambda a, v: a.startswith(v)),
                  False, "Text starts with the value."))
register(Operator("ends_with", TEXT_TYPES, True, _text_value, _scalar_text(lambda a, v: a.endswith(v)), False,
                  "Text ends with the value."))
register(Operator("in", _TEXTISH, True, _text_list, _scalar_text(lambda a, v: a in v), False,
                  "Text equals one of the listed values."))
register(Operator("matches", TEXT_TYPES, True, _regex, _regex_test, False,
                  "Text matches the regular expression (RE2 syntax, searched anywhere; anchor with ^ and $)."))
register_negation("not_equals", "equals", "Negation of equals (true when the field is missing).")
register_negation("not_contains", "contains", "Negation of contains.")
register_negation("not_starts_with", "starts_with", "Negation of starts_with.")
register_negation("not_ends_with", "ends_with", "Negation of ends_with.")
register_negation("not_in", "in", "Negation of in.")
register_negation("not_matches", "matches", "Negation of matches.")

# presence
register(Operator("is_empty", ALL_TYPES - {FieldType.CHECKBOX}, False, _no_value,
                  lambda a, v, cs: is_blank(a), True,
                  "Missing, null, blank text or empty list (datetime: 0 = unset)."))
register_negation("is_not_empty", "is_empty", "Negation of is_empty.")
register(Operator("is_defined", ALL_TYPES, False, _no_value, lambda a, v, cs: True, False,
                  "The profile has a value for the field (even blank text; datetime 0 counts as unset)."))
register_negation("is_not_defined", "is_defined", "The profile has no value for the field.")

# checkbox
register(Operator("is_checked", frozenset({FieldType.CHECKBOX}), False, _no_value,
                  lambda a, v, cs: is_truthy(a), False, "Checkbox is ticked (true, 1, \"yes\")."))
register_negation("is_not_checked", "is_checked", "Checkbox not ticked, or missing.")

# numbers
register(Operator("lt", NUM, True, _number_value, _number(lambda a, v: a < v), False, "Number < value."))
register(Operator("lte", NUM, True, _number_value, _number(lambda a, v: a <= v), False, "Number <= value."))
register(Operator("gt", NUM, True, _number_value, _number(lambda a, v: a > v), False, "Number > value."))
register(Operator("gte", NUM, True, _number_value, _number(lambda a, v: a >= v), False, "Number >= value."))
register(Operator("between", NUM | DT, True, _number_range, _number(lambda a, v: v[0] <= a <= v[1]), False,
                  "Number or datetime within [low, high], both bounds included.",
                  by_type={FieldType.DATETIME: Impl(_epoch_range, _epoch(lambda a, v: v[0] <= a <= v[1]))}))

# datetimes (epoch seconds; 0 = unset never matches)
register(Operator("before", DT, True, _epoch_value, _epoch(lambda a, v: a < v), False,
                  "Datetime strictly before the value (epoch seconds or ISO date); unset (0) never matches."))
register(Operator("after", DT, True, _epoch_value, _epoch(lambda a, v: a > v), False,
                  "Datetime strictly after the value; unset (0) never matches."))
register(Operator("on", DT, True, _day_value, _epoch(lambda a, v: v[0] <= a < v[1]), False,
                  "Datetime falls on the calendar day (in the given IANA timezone, default UTC)."))


def _t_in_past(ts: int, v: Any, now: int) -> int | None:
    return ts + 1 if now <= ts else None


def _t_in_future(ts: int, v: Any, now: int) -> int | None:
    return ts if ts > now else None


def _t_within(ts: int, d: int, now: int) -> int | None:
    if now < ts:
        return ts
    return ts + d + 1 if now <= ts + d else None


def _t_more_than(ts: int, d: int, now: int) -> int | None:
    return ts + d if now < ts + d else None


register(Operator("in_past", DT, False, _no_value, _epoch_now(lambda a, v, now: a < now), False,
                  "Datetime is before now.", uses_now=True, transition=_t_in_past))
register(Operator("in_future", DT, False, _no_value, _epoch_now(lambda a, v, now: a > now), False,
                  "Datetime is after now.", uses_now=True, transition=_t_in_future))
register(Operator("within_last", DT, True, _duration, _epoch_now(lambda a, d, now: now - d <= a <= now), False,
                  "Datetime within the last duration (\"P30D\"), bounds included; future values never match.",
                  uses_now=True, transition=_t_within))
register(Operator("more_than_ago", DT, True, _duration, _epoch_now(lambda a, d, now: a <= now - d), False,
                  "Datetime at least the duration ago (\"P30D\"), bound included.",
                  uses_now=True, transition=_t_more_than))

# multi-valued (multi-select menus, interests)
register(Operator("any_of", MULTI, True, _text_list, lambda a, v, cs: bool(_items(a, cs) & v), False,
                  "At least one listed value is present."))
register(Operator("all_of", MULTI, True, _text_list, lambda a, v, cs: v <= _items(a, cs), False,
                  "Every listed value is present."))
register_negation("none_of", "any_of", "None of the listed values is present.")
