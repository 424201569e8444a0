"""Fuzz the rule compiler, the text form and command validation with hypothesis (issue 17).

Spec: whatever JSON an admin (or anyone who can reach the API or the commands topic) puts in a
condition, compiling it ends in exactly one of two ways: a compiled rule, or a rule error
(:mod:`processor.rules.exceptions`) with a code and a JSON path. Never another exception (an
``OverflowError`` for the date 9999-12-31, an ``IsADirectoryError`` for the timezone "America"
and an ``OSError`` naming a server path for a 5,000-character timezone were all seen), and no
error message shows a server path. A compiled rule then never raises while evaluated,
explained, asked for its next transition or matched through the rule index.

Every operator gets arbitrary JSON values (and values shaped like what it expects: dates,
timezones, durations, regexes, numbers incl. NaN/inf/huge ints, lists) on every field type it
accepts; whole trees are arbitrary JSON too, as Python objects, as JSON text and as rule text.

The default suite runs a short, derandomized budget; ``pytest -m fuzz`` runs the long variants
(fresh random examples every run).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import tzdata
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.catalog.commands import decide
from processor.catalog.model import ProfileField, Segment, SiteCatalog
from processor.contract.models import Actor, Command
from processor.rules.compiler import CompiledCondition, compile_condition
from processor.rules.exceptions import CompileError, RuleError
from processor.rules.fields import FieldSpec, FieldType, StaticFields
from processor.rules.index import SegmentRuleIndex
from processor.rules.operators import REGISTRY
from processor.rules.text import condition_from_any, parse_text, to_text

SHORT = int(os.environ.get("FUZZ_SHORT_EXAMPLES", "25"))
LONG = int(os.environ.get("FUZZ_LONG_EXAMPLES", "3000"))
BUDGETS = [
    pytest.param(SHORT, id="short"),
    pytest.param(LONG, id="long", marks=[pytest.mark.fuzz, pytest.mark.timeout(3600)]),
]

# One field of every type (custom ones carry options where the type has them).
FIELD_OF_TYPE = {
    FieldType.TEXT: "department",
    FieldType.TEXTAREA: "description",
    FieldType.MENU: "profile_field_level",
    FieldType.MULTISELECT: "profile_field_langs",
    FieldType.CHECKBOX: "suspended",
    FieldType.DATETIME: "lastlogin",
    FieldType.NUMBER: "profile_field_score",
}
CUSTOM = {
    "profile_field_level": FieldSpec("profile_field_level", FieldType.MENU, ("Junior", "Senior", "Lead"), True),
    "profile_field_langs": FieldSpec("profile_field_langs", FieldType.MULTISELECT, ("en", "fr", "de"), True),
    "profile_field_score": FieldSpec("profile_field_score", FieldType.NUMBER, (), True),
}
FIELDS = StaticFields(CUSTOM)
OP_TYPES = sorted((name, t) for name, op in REGISTRY.items() for t in op.field_types)
TZ_DIR = str(Path(tzdata.__file__).parent)  # the server path an OSError used to show

# ------------------------------------------------------------------ strategies

def _long(prefix: str, part: str, n: int, suffix: str = "") -> st.SearchStrategy[str]:
    """A long string built lazily (a literal would make every strategy's repr huge)."""
    return st.just(n).map(lambda k: prefix + part * k + suffix)


_surrogates = st.sampled_from(["\ud800", "a\udfff", "Europe/\ud83d"])
_text = st.text(max_size=30) | st.text(st.characters(exclude_categories=()), max_size=10) | _surrogates
_dates = st.sampled_from([
    "9999-12-31", "9999-12-30", "0001-01-01", "2026-02-29", "2024-02-29", "2026-13-01", "2026-01-31",
    " 2026-01-31 ", "20260131", "2026-W05-6", "+12026-01-01", "1970-01-01",
    "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59.999999Z",
    "2026-01-31T25:00", "2026-01-31T10:00:00+24:00", "2026-01-31T10:00:00.1234567",
]) | st.dates().map(str) | st.datetimes().map(lambda d: d.isoformat())
_timezones = st.sampled_from([
    "UTC", "Europe/Paris", "America/New_York", "Asia/Kathmandu", "Etc/GMT-14", "Pacific/Kiritimati",
    "America", "Europe", "Etc", "posix", "right", "posix/Europe/Paris", "zone.tab", "tzdata.zi", "__init__.py",
    "/etc/localtime", "../../../../etc/passwd", "Europe/../Europe/Paris", "Europe//Paris",
    "Europe/Paris\x00", "", " ", "europe/paris", "Europe/Paris ", ".", "..", "\\", "C:\\x", "~", "*",
]) | _long("", "x", 5000) | _long("", "x", 256) | _long("Europe/", "../", 100, "Paris")
_durations = st.sampled_from([
    "P30D", "PT12H", "P2W", "P1DT2H3M4S", "P", "PT", "P1M", "P1Y", "P0D", "PT0S", "p30d", " P30D ",
    "P" + "9" * 30 + "W", "P١٢D", "P30DT", "P-1D", "P1.5D", "P36600D", "P36601D", "PT" + "1" * 20 + "H", "P30D\n",
]) | _long("P", "9", 5000, "D") | _long("PT", "9", 4301, "S")
_regexes = st.sampled_from([
    "^a", "(", ")", "[", "a{1000}{1000}", "(a{999}){999}", "\\", "\\C", "(?P<n>a)(?P=n)", "(?=a)", "a++",
    "\ud800", "(?i)sales", "[[:alpha:]]", "\\p{Greek}", "\\pN", "\x00",
]) | _long("", "x", 513) | _long("", "x", 512) | _long("", ".*", 200) | _long("", "(a|b)", 100)
_numbers = (
    st.integers()
    | st.integers(min_value=-(10 ** 400), max_value=10 ** 400)
    | st.sampled_from([309, 4299, 4300, 5000]).map(lambda n: 10 ** n)  # 4300+ digits: beyond int -> str's limit
    | st.sampled_from([2 ** 63, -(2 ** 63) - 1, 2 ** 1024, -(10 ** 309)])
    | st.floats(allow_nan=True, allow_infinity=True)
)
_scalars = st.none() | st.booleans() | _numbers | _text | _dates | _timezones | _durations | _regexes
json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(["date", "timezone", "field", "op", "value"]) | _text, inner, max_size=3),
    max_leaves=12,
)
on_values = st.fixed_dictionaries({"date": _dates | json_values}, optional={"timezone": _timezones | json_values})
values_for_op = json_values | on_values | st.lists(_scalars, min_size=1, max_size=3) | st.tuples(_numbers, _numbers).map(list)

# what a profile can hold: the user event's Avro map of null, string, long (64-bit), double, boolean,
# array<string> (strings decoded from UTF-8, so never a lone surrogate)
profile_values = (
    st.none() | st.booleans() | st.integers(min_value=-(2 ** 63), max_value=2 ** 63 - 1)
    | st.sampled_from([2 ** 63 - 1, -(2 ** 63), 253402300799, 253402300800, -62135596801])
    | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([1e300, -1e300, 9.3e18])
    | st.text(max_size=30) | _dates | st.sampled_from(["Junior", "en", "Sales", "0", "1e400", "9e18", "nan", "-inf"])
    | st.lists(st.text(max_size=10) | st.sampled_from(["en", "fr", "Lead"]), max_size=4)
)


def _leaf(field: str, op: str, value: object, extra: dict) -> dict:
    node = {"field": field, "op": op, **extra}
    if value is not _ABSENT:
        node["value"] = value
    return node


_ABSENT = object()
leaf_extras = st.fixed_dictionaries({}, optional={
    "case_sensitive": st.booleans() | json_values, "missing": st.sampled_from(["match", "no_match"]) | json_values,
})

_field_names = st.sampled_from(sorted({*FIELD_OF_TYPE.values(), "city", "timecreated", "interests", "nope"})) | _text
_op_names = st.sampled_from(sorted(REGISTRY)) | _text
trees = st.recursive(
    st.builds(lambda f, o, v, x: _leaf(f, o, v, x), _field_names, _op_names, values_for_op | st.just(_ABSENT),
              leaf_extras),
    lambda inner: st.builds(lambda xs: {"all": xs}, st.lists(inner, max_size=4))
    | st.builds(lambda xs: {"any": xs}, st.lists(inner, max_size=4))
    | st.builds(lambda x: {"not": x}, inner)
    | st.dictionaries(st.sampled_from(["all", "any", "not", "field", "op"]) | _text, inner | json_values, max_size=3)
    # a Python caller's tree may have keys JSON cannot
    | st.dictionaries(st.sampled_from(["all", "field", "op", "value"]) | st.integers(-3, 3) | st.none(),
                      inner | json_values, max_size=3)
    | json_values,
    max_leaves=10,
)

# rule text assembled from the grammar's tokens, so the parser gets past the first token
_tokens = st.sampled_from([
    "and", "or", "not", "(", ")", "all(", "any(", "==", "!=", "<", "<=", ">", ">=", "case_sensitive",
    "case_insensitive", "missing", "match", "no_match", "department", "lastlogin", "profile_field_score",
    "equals", "on", "within_last", "matches", "in", "between", "P30D", "PT12H", "true", "null", "-", "&&", "|",
]) | json_values.map(lambda v: json.dumps(v, allow_nan=True) if _dumpable(v) else "0")
rule_texts = st.lists(_tokens, max_size=12).map(" ".join) | st.text(max_size=60)


def _dumpable(v: object) -> bool:
    try:
        json.dumps(v)
        return True
    except (ValueError, TypeError, RecursionError):
        return False


# ------------------------------------------------------------------ checks


def _check_error(err: RuleError) -> None:
    assert isinstance(err, RuleError)
    assert isinstance(err.code, str) and err.code.isupper()
    assert err.path.startswith("$")
    assert TZ_DIR not in err.message and "site-packages" not in err.message


def _compile(tree: object, resolver: object = FIELDS) -> CompiledCondition | None:
    """Compile ``tree``: a compiled rule or a CompileError made of rule errors, nothing else."""
    try:
        cond = compile_condition(tree, resolver)
    except CompileError as err:
        assert err.errors
        for e in err.errors:
            _check_error(e)
        return None
    assert isinstance(cond, CompiledCondition)
    return cond


def _exercise(cond: CompiledCondition, profiles: list[dict], now: int) -> None:
    """A compiled rule never raises at evaluation time, and the index answers like evaluation."""
    index = SegmentRuleIndex()
    index.add("r", "seg", cond)
    for profile in profiles:
        result = cond.evaluate(profile, now)
        assert isinstance(result, bool)
        assert cond.explain(profile, now)["result"] is result
        nxt = cond.next_transition(profile, now)
        assert nxt is None or isinstance(nxt, int)
        assert index.match(profile, now) == ({"r"} if result else set())


def _profiles(field: str) -> st.SearchStrategy[list[dict]]:
    return st.lists(st.builds(lambda v: {field: v}, profile_values), min_size=1, max_size=3)


# ------------------------------------------------------------------ tests


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("op,ftype", OP_TYPES, ids=[f"{o}-{t.value}" for o, t in OP_TYPES])
def test_every_operator_value_compiles_or_is_a_rule_error(op: str, ftype: FieldType, budget: int) -> None:
    """Arbitrary JSON (and operator-shaped) values for one operator on one field type: a compiled rule
    that evaluates without raising, or rule errors with a code, a path and no server path."""
    field = FIELD_OF_TYPE[ftype]

    @settings(max_examples=budget, deadline=None, derandomize=budget == SHORT, database=None,
              suppress_health_check=list(HealthCheck))
    @given(value=values_for_op | st.just(_ABSENT), extra=leaf_extras, profiles=_profiles(field),
           now=st.integers(min_value=0, max_value=2 ** 40))
    def run(value: object, extra: dict, profiles: list[dict], now: int) -> None:
        cond = _compile(_leaf(field, op, value, extra))
        if cond is not None:
            _exercise(cond, profiles, now)

    run()


@pytest.mark.parametrize("budget", BUDGETS)
def test_reported_values_are_rule_errors_or_rules(budget: int) -> None:
    """The values from the report, on the ``on`` operator: never OverflowError / OSError."""

    @settings(max_examples=budget, deadline=None, derandomize=budget == SHORT, database=None,
              suppress_health_check=list(HealthCheck))
    @given(date=_dates, tz=_timezones | json_values)
    def run(date: str, tz: object) -> None:
        for value in (date, {"date": date, "timezone": tz}):
            cond = _compile({"field": "lastlogin", "op": "on", "value": value})
            if cond is not None:
                _exercise(cond, [{"lastlogin": 1_700_000_000}, {"lastlogin": 253402300799}], 0)

    run()


@pytest.mark.parametrize("budget", BUDGETS)
def test_arbitrary_trees_compile_or_are_rule_errors(budget: int) -> None:
    """Whole arbitrary trees (Python objects and their JSON text) compile or are rule errors."""

    @settings(max_examples=budget * 8, deadline=None, derandomize=budget == SHORT, database=None,
              suppress_health_check=list(HealthCheck))
    @given(tree=trees, profile=st.dictionaries(_field_names, profile_values, max_size=4))
    def run(tree: object, profile: dict) -> None:
        cond = _compile(tree)
        if cond is not None:
            _exercise(cond, [profile], 1_700_000_000)
        try:
            text = json.dumps(tree)
        except (ValueError, TypeError):
            return
        cond = _compile(text)
        if cond is not None:
            _exercise(cond, [profile], 1_700_000_000)

    run()


@pytest.mark.parametrize("budget", BUDGETS)
def test_arbitrary_rule_text_parses_or_is_a_rule_error(budget: int) -> None:
    """Rule text (processor/rules/text.py): a tree or a RuleError; a parsed tree compiles or is a rule
    error; a tree the printer accepts prints to text that parses back to the same tree."""

    @settings(max_examples=budget * 8, deadline=None, derandomize=budget == SHORT, database=None,
              suppress_health_check=list(HealthCheck))
    @given(text=rule_texts, tree=trees)
    def run(text: str, tree: object) -> None:
        for parse in (parse_text, condition_from_any):
            try:
                parsed = parse(text)
            except RuleError as err:
                _check_error(err)
            else:
                assert isinstance(parsed, dict)
                _compile(parsed)
        try:
            printed = to_text(tree)
        except RuleError as err:
            _check_error(err)
        else:
            assert parse_text(printed) == tree

    run()


def _site() -> SiteCatalog:
    site = SiteCatalog("site-a")
    site.segments["s"] = Segment("s", "S", managed=True)
    site.fields["level"] = ProfileField("level", "Level", FieldType.MENU, ("Junior", "Senior"))
    site.fields["score"] = ProfileField("score", "Score", FieldType.NUMBER)
    return site


@pytest.mark.parametrize("budget", BUDGETS)
def test_create_rule_with_any_condition_is_decided(budget: int) -> None:
    """The worker's decide() on a CreateRule with any condition_json returns ACCEPTED or REJECTED with a
    code and a path; it never raises (a raise used to leave the command PENDING forever)."""
    site = _site()

    @settings(max_examples=budget * 8, deadline=None, derandomize=budget == SHORT, database=None,
              suppress_health_check=list(HealthCheck))
    @given(tree=trees | json_values, text=rule_texts)
    def run(tree: object, text: str) -> None:
        for cj in (json.dumps(tree) if _dumpable(tree) else "null", text):
            cmd = Command("c1", "site-a", 1, Actor("admin", ("site_admin",)), "CreateRule",
                          {"rule_id": "r1", "segment_id": "s", "name": "r", "condition_json": cj, "enabled": True})
            d = decide(site, cmd, "site-a")
            assert d.status in ("ACCEPTED", "REJECTED")
            if d.status == "REJECTED":
                assert d.code and d.path and d.path.startswith("$")
                assert TZ_DIR not in (d.message or "")

    run()

