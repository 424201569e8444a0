"""Unit tests for the operator registry (processor/rules/operators.py), exercised through compiled leaves.

Spec (issue 2): text/menu operators are case-insensitive and ignore
surrounding whitespace; a missing field makes every positive operator false;
each ``not_*`` operator is exactly the negation of its positive twin;
``is_empty`` is true for a missing, null or blank value; checkbox, number and
datetime operators exist; datetime values are epoch seconds, 0 = unset.
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.rules.compiler import compile_condition
from processor.rules.fields import FieldSpec, FieldType, StaticFields
from processor.rules.operators import REGISTRY, operators_for

CUSTOM = {
    "profile_field_level": FieldSpec("profile_field_level", FieldType.MENU, ("Junior", "Senior", "Lead"), True),
    "profile_field_score": FieldSpec("profile_field_score", FieldType.NUMBER, (), True),
    "profile_field_hired": FieldSpec("profile_field_hired", FieldType.DATETIME, (), True),
    "profile_field_mentor": FieldSpec("profile_field_mentor", FieldType.CHECKBOX, (), True),
    "profile_field_langs": FieldSpec("profile_field_langs", FieldType.MULTISELECT, (), True),
    "profile_field_bio": FieldSpec("profile_field_bio", FieldType.TEXTAREA, (), True),
}
FIELDS = StaticFields(CUSTOM)

_NO_VALUE = object()


def check(field: str, op: str, value=_NO_VALUE, profile: dict | None = None, **extra) -> bool:
    """Compile one leaf and evaluate it against ``profile``."""
    leaf = {"field": field, "op": op, **extra}
    if value is not _NO_VALUE:
        leaf["value"] = value
    return compile_condition(leaf, FIELDS).evaluate(profile or {})


SPEC_OPS = [
    "equals", "not_equals", "contains", "not_contains", "starts_with", "ends_with", "in", "not_in",
    "is_empty", "is_not_empty", "is_checked", "is_not_checked", "lt", "lte", "gt", "gte", "before", "after",
]


# ---------------------------------------------------------------- registry


def test_registry_has_every_operator_the_contract_names():
    """Every leaf operator issue 2 requires is registered."""
    assert set(SPEC_OPS) <= set(REGISTRY)


def test_every_negated_operator_has_a_positive_twin():
    """Each not_X / is_not_X operator has a registered positive twin X / is_X with the same field types."""
    for name, op in REGISTRY.items():
        if name.startswith("not_"):
            twin = name[len("not_"):]
        elif name.startswith("is_not_"):
            twin = "is_" + name[len("is_not_"):]
        else:
            continue
        assert twin in REGISTRY, name
        assert REGISTRY[twin].field_types == op.field_types, name
        assert REGISTRY[twin].takes_value == op.takes_value, name


@pytest.mark.parametrize("ftype", [FieldType.TEXT, FieldType.TEXTAREA])
def test_text_types_offer_the_text_operators(ftype):
    """Text fields accept the text operators and none of the number/datetime/checkbox ones."""
    ops = set(operators_for(ftype))
    assert {"equals", "not_equals", "contains", "not_contains", "starts_with", "ends_with", "in", "not_in",
            "is_empty", "is_not_empty"} <= ops
    assert not ops & {"lt", "lte", "gt", "gte", "before", "after", "is_checked", "is_not_checked"}


def test_menu_offers_equality_and_membership():
    """Menu fields accept equals/not_equals/in/not_in/is_empty/is_not_empty."""
    ops = set(operators_for(FieldType.MENU))
    assert {"equals", "not_equals", "in", "not_in", "is_empty", "is_not_empty"} <= ops
    assert not ops & {"lt", "gt", "before", "after", "is_checked"}


def test_checkbox_number_datetime_operator_sets():
    """Checkbox gets is_checked/is_not_checked, number lt..gte, datetime before/after; no substring ops."""
    assert {"is_checked", "is_not_checked"} <= set(operators_for(FieldType.CHECKBOX))
    assert {"lt", "lte", "gt", "gte"} <= set(operators_for(FieldType.NUMBER))
    assert {"before", "after"} <= set(operators_for(FieldType.DATETIME))
    for ftype in (FieldType.CHECKBOX, FieldType.NUMBER, FieldType.DATETIME):
        assert not set(operators_for(ftype)) & {"contains", "starts_with", "ends_with", "not_contains"}
    assert not set(operators_for(FieldType.CHECKBOX)) & {"equals", "in", "lt", "before"}
    assert not set(operators_for(FieldType.DATETIME)) & {"lt", "gt", "is_checked"}


def test_operators_for_is_sorted():
    """operators_for lists names in a stable (sorted) order, used in error messages."""
    names = operators_for(FieldType.TEXT)
    assert names == sorted(names)


# ------------------------------------------------------------------- text


@pytest.mark.parametrize(
    "actual,value,expected",
    [
        ("Sales", "Sales", True),
        ("sales", "SALES", True),
        ("  Sales  ", "sales", True),
        ("Sales", "  sales ", True),
        ("Sales Team", "Sales", False),
        ("Marketing", "Sales", False),
        ("", "Sales", False),
    ],
)
def test_equals_case_insensitive_and_trimmed(actual, value, expected):
    """equals ignores case and surrounding whitespace on both sides, but not inner text."""
    assert check("department", "equals", value, {"department": actual}) is expected
    assert check("department", "not_equals", value, {"department": actual}) is (not expected)


def test_equals_case_sensitive_flag():
    """With case_sensitive true, case matters but surrounding whitespace is still ignored."""
    assert check("department", "equals", "Sales", {"department": "sales"}, case_sensitive=True) is False
    assert check("department", "equals", "Sales", {"department": " Sales "}, case_sensitive=True) is True


def test_equals_unicode_case_folding():
    """Case-insensitivity applies to non-ASCII text too."""
    assert check("city", "equals", "MÜNCHEN", {"city": "münchen"}) is True


@pytest.mark.parametrize(
    "op,value,actual,expected",
    [
        ("contains", "sales", "Global SALES emea", True),
        ("contains", "sales", "Marketing", False),
        ("contains", " les ", "Sales", True),
        ("starts_with", "glo", "Global Sales", True),
        ("starts_with", "sales", "Global Sales", False),
        ("ends_with", "SALES", "Global Sales  ", True),
        ("ends_with", "global", "Global Sales", False),
    ],
)
def test_substring_operators(op, value, actual, expected):
    """contains/starts_with/ends_with are case-insensitive and trimmed; their not_ twins negate."""
    assert check("department", op, value, {"department": actual}) is expected
    assert check("department", "not_" + op, value, {"department": actual}) is (not expected)


def test_textarea_supports_text_operators():
    """TEXTAREA fields (description, custom textarea) support contains."""
    assert check("description", "contains", "python", {"description": "I like Python."}) is True
    assert check("profile_field_bio", "contains", "java", {"profile_field_bio": "I like Python."}) is False


@pytest.mark.parametrize(
    "actual,expected",
    [("Sales", True), (" marketing ", True), ("HR", False), ("Sales Ops", False)],
)
def test_in_and_not_in(actual, expected):
    """in matches when the value equals (case-insensitively, trimmed) one of the listed values."""
    values = ["SALES", "Marketing"]
    assert check("department", "in", values, {"department": actual}) is expected
    assert check("department", "not_in", values, {"department": actual}) is (not expected)


POSITIVE_TEXT = [
    ("equals", "Sales"),
    ("contains", "a"),
    ("starts_with", ""),
    ("ends_with", ""),
    ("in", ["Sales"]),
    ("is_not_empty", _NO_VALUE),
]


@pytest.mark.parametrize("op,value", POSITIVE_TEXT)
@pytest.mark.parametrize("profile", [{}, {"department": None}], ids=["absent", "null"])
def test_positive_text_operators_false_on_missing(op, value, profile):
    """A missing (or null) field makes every positive operator false, even ones a blank value would satisfy."""
    assert check("department", op, value, profile) is False


@pytest.mark.parametrize(
    "op,value",
    [("not_equals", "Sales"), ("not_contains", "a"), ("not_starts_with", "x"), ("not_ends_with", "x"),
     ("not_in", ["Sales"]), ("is_empty", _NO_VALUE)],
)
@pytest.mark.parametrize("profile", [{}, {"department": None}], ids=["absent", "null"])
def test_negated_text_operators_true_on_missing(op, value, profile):
    """The not_* twins (and is_empty) are true when the field is missing or null."""
    assert check("department", op, value, profile) is True


@pytest.mark.parametrize("actual", [None, "", "   ", "\t\n"])
def test_is_empty_for_missing_null_blank(actual):
    """is_empty is true for null and blank strings; is_not_empty is false for them."""
    assert check("department", "is_empty", profile={"department": actual}) is True
    assert check("department", "is_not_empty", profile={"department": actual}) is False


def test_is_empty_false_for_content():
    """is_empty is false for a non-blank value."""
    assert check("department", "is_empty", profile={"department": " x "}) is False
    assert check("department", "is_not_empty", profile={"department": " x "}) is True


def test_missing_override():
    """'missing': 'match' makes a positive operator match a missing field; 'no_match' the opposite."""
    assert check("department", "equals", "Sales", {}, missing="match") is True
    assert check("department", "not_equals", "Sales", {}, missing="no_match") is False
    # present values are unaffected by the override
    assert check("department", "equals", "Sales", {"department": "HR"}, missing="match") is False


# ------------------------------------------------------------------- menu


def test_menu_equals_and_in():
    """Menu fields compare like text: case-insensitive, trimmed."""
    assert check("profile_field_level", "equals", "Senior", {"profile_field_level": " senior"}) is True
    assert check("profile_field_level", "equals", "Senior", {"profile_field_level": "Junior"}) is False
    assert check("profile_field_level", "in", ["Senior", "Lead"], {"profile_field_level": "LEAD"}) is True
    assert check("profile_field_level", "not_in", ["Senior", "Lead"], {"profile_field_level": "Junior"}) is True
    assert check("profile_field_level", "equals", "Senior", {}) is False


def test_menu_is_empty():
    """is_empty on a menu is true when the field is missing or blank."""
    assert check("profile_field_level", "is_empty", profile={}) is True
    assert check("profile_field_level", "is_empty", profile={"profile_field_level": ""}) is True
    assert check("profile_field_level", "is_empty", profile={"profile_field_level": "Lead"}) is False


# --------------------------------------------------------------- checkbox


@pytest.mark.parametrize(
    "actual,checked",
    [(True, True), (1, True), (False, False), (0, False)],
)
def test_checkbox(actual, checked):
    """is_checked is true for a ticked checkbox (true/1); is_not_checked is its negation."""
    assert check("profile_field_mentor", "is_checked", profile={"profile_field_mentor": actual}) is checked
    assert check("profile_field_mentor", "is_not_checked", profile={"profile_field_mentor": actual}) is (not checked)


def test_checkbox_missing():
    """A missing checkbox is not checked: is_checked false, is_not_checked true."""
    assert check("profile_field_mentor", "is_checked", profile={}) is False
    assert check("profile_field_mentor", "is_not_checked", profile={}) is True
    assert check("suspended", "is_checked", profile={"suspended": True}) is True


# ----------------------------------------------------------------- number


@pytest.mark.parametrize(
    "op,actual,expected",
    [
        ("lt", 9, True), ("lt", 10, False), ("lt", 11, False),
        ("lte", 9, True), ("lte", 10, True), ("lte", 11, False),
        ("gt", 9, False), ("gt", 10, False), ("gt", 11, True),
        ("gte", 9, False), ("gte", 10, True), ("gte", 11, True),
        ("lt", 9.99, True), ("gt", 10.01, True), ("gte", 10.0, True),
        ("lt", -5, True),
    ],
)
def test_number_comparisons(op, actual, expected):
    """lt/lte/gt/gte compare the profile number with the rule value (10), with correct boundaries."""
    assert check("profile_field_score", op, 10, {"profile_field_score": actual}) is expected


@pytest.mark.parametrize("op", ["lt", "lte", "gt", "gte"])
def test_number_missing_is_false(op):
    """Number comparisons are false when the field is missing, null or not a number."""
    for profile in ({}, {"profile_field_score": None}, {"profile_field_score": "abc"}):
        assert check("profile_field_score", op, 10, profile) is False


def test_number_float_rule_value():
    """Rule values may be floats."""
    assert check("profile_field_score", "gte", 2.5, {"profile_field_score": 2.5}) is True
    assert check("profile_field_score", "lt", 2.5, {"profile_field_score": 2}) is True


def test_number_is_empty_zero_is_a_value():
    """For a number field, 0 is a value (not empty); missing is empty."""
    assert check("profile_field_score", "is_empty", profile={"profile_field_score": 0}) is False
    assert check("profile_field_score", "is_empty", profile={}) is True


# --------------------------------------------------------------- datetime

T0 = 1_700_000_000


@pytest.mark.parametrize(
    "op,actual,expected",
    [
        ("before", T0 - 1, True), ("before", T0, False), ("before", T0 + 1, False),
        ("after", T0 - 1, False), ("after", T0, False), ("after", T0 + 1, True),
    ],
)
def test_datetime_before_after_strict(op, actual, expected):
    """before/after compare epoch seconds strictly."""
    assert check("lastlogin", op, T0, {"lastlogin": actual}) is expected


@pytest.mark.parametrize("op", ["before", "after"])
def test_datetime_zero_is_unset(op):
    """Moodle stores 'never' as 0: it matches neither before nor after, like a missing value."""
    assert check("lastlogin", op, T0, {"lastlogin": 0}) is False
    assert check("lastlogin", op, T0, {}) is False
    assert check("profile_field_hired", op, T0, {"profile_field_hired": 0}) is False


def test_datetime_zero_is_empty():
    """A datetime of 0 is empty (unset); a real timestamp is not."""
    assert check("lastlogin", "is_empty", profile={"lastlogin": 0}) is True
    assert check("lastlogin", "is_not_empty", profile={"lastlogin": 0}) is False
    assert check("lastlogin", "is_empty", profile={"lastlogin": T0}) is False
    assert check("lastlogin", "is_not_empty", profile={"lastlogin": T0}) is True
    assert check("lastlogin", "is_empty", profile={}) is True


@pytest.mark.parametrize("actual", [0.5, -0.5, "0.9", " -0.2 "])
def test_datetime_that_truncates_to_zero_is_unset(actual):
    """Datetimes are whole epoch seconds: a value truncating to 0 is Moodle's 'never' like 0 itself,
    for every operator (a hypothesis run found the evaluator calling 0.5 'more than 7 days ago'
    while the rule index called it unset)."""
    assert check("lastaccess", "more_than_ago", "P7D", {"lastaccess": actual}) is False
    assert check("lastaccess", "more_than_ago", "P7D", {"lastaccess": actual}, missing="match") is True
    assert check("lastaccess", "before", T0, {"lastaccess": actual}) is False
    assert check("lastaccess", "in_past", profile={"lastaccess": actual}) is False
    assert check("lastaccess", "is_empty", profile={"lastaccess": actual}) is True
    assert check("lastaccess", "more_than_ago", "P7D", {"lastaccess": 1.5}) is True  # epoch 1: present


def test_datetime_before_zero_never_matches_even_with_large_value():
    """An unset (0) datetime is not 'before' any date, though 0 < value numerically."""
    assert check("firstaccess", "before", 4_000_000_000, {"firstaccess": 0}) is False


def test_datetime_iso_date_value():
    """A rule value may be an ISO-8601 date, meaning midnight UTC of that day."""
    midnight = int(dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc).timestamp())
    assert check("lastlogin", "before", "2024-01-01", {"lastlogin": midnight - 1}) is True
    assert check("lastlogin", "before", "2024-01-01", {"lastlogin": midnight}) is False
    assert check("lastlogin", "after", "2024-01-01T00:00:00Z", {"lastlogin": midnight + 1}) is True


# ------------------------------------------------------------ multiselect


def test_multiselect_operators():
    """any_of / all_of / none_of on array values, case-insensitive and trimmed."""
    p = {"interests": ["Chess", " go "]}
    assert check("interests", "any_of", ["GO", "poker"], p) is True
    assert check("interests", "any_of", ["poker"], p) is False
    assert check("interests", "all_of", ["chess", "go"], p) is True
    assert check("interests", "all_of", ["chess", "poker"], p) is False
    assert check("interests", "none_of", ["poker"], p) is True
    assert check("interests", "none_of", ["chess"], p) is False


def test_multiselect_empty_and_missing():
    """An empty list is empty; on a missing list any_of is false and none_of true."""
    assert check("interests", "is_empty", profile={"interests": []}) is True
    assert check("interests", "is_empty", profile={"interests": ["", "  "]}) is True
    assert check("interests", "is_not_empty", profile={"interests": ["a"]}) is True
    assert check("interests", "any_of", ["a"], {}) is False
    assert check("interests", "none_of", ["a"], {}) is True


# ------------------------------------------------------- negation property

_text_value = st.one_of(st.none(), st.text(max_size=12), st.sampled_from(["Sales", " sales ", "SALES", "", "  "]))
_text_profile = st.one_of(st.just({}), _text_value.map(lambda v: {"department": v}))
_rule_text = st.one_of(st.text(max_size=8), st.sampled_from(["Sales", "sal", "es", ""]))

TEXT_PAIRS = [("equals", "not_equals"), ("contains", "not_contains"), ("starts_with", "not_starts_with"),
              ("ends_with", "not_ends_with")]


@settings(max_examples=150, deadline=None)
@given(profile=_text_profile, value=_rule_text, pair=st.sampled_from(TEXT_PAIRS), cs=st.booleans())
def test_property_text_negations(profile, value, pair, cs):
    """For any profile (present, null, blank or absent), not_X is exactly the negation of X."""
    pos, neg = pair
    assert check("department", neg, value, profile, case_sensitive=cs) is (
        not check("department", pos, value, profile, case_sensitive=cs)
    )


@settings(max_examples=100, deadline=None)
@given(profile=_text_profile, values=st.lists(_rule_text, min_size=1, max_size=4), cs=st.booleans())
def test_property_in_negation(profile, values, cs):
    """not_in is exactly the negation of in."""
    assert check("department", "not_in", values, profile, case_sensitive=cs) is (
        not check("department", "in", values, profile, case_sensitive=cs)
    )


@settings(max_examples=100, deadline=None)
@given(
    profile=st.one_of(
        st.just({}),
        st.one_of(st.none(), st.text(max_size=6), st.lists(st.text(max_size=4), max_size=3)).map(
            lambda v: {"department": v, "interests": v if isinstance(v, list) else [v or ""]}
        ),
    )
)
def test_property_is_empty_negation(profile):
    """is_not_empty is exactly the negation of is_empty on text and multiselect fields."""
    for field in ("department", "interests"):
        assert check(field, "is_not_empty", profile=profile) is (not check(field, "is_empty", profile=profile))


@settings(max_examples=100, deadline=None)
@given(actual=st.one_of(st.none(), st.booleans(), st.integers(-2, 2), st.text(max_size=5)), present=st.booleans())
def test_property_checkbox_negation(actual, present):
    """is_not_checked is exactly the negation of is_checked, whatever the stored value."""
    profile = {"profile_field_mentor": actual} if present else {}
    assert check("profile_field_mentor", "is_not_checked", profile=profile) is (
        not check("profile_field_mentor", "is_checked", profile=profile)
    )


@settings(max_examples=100, deadline=None)
@given(actual=st.one_of(st.none(), st.integers(-10, 2_000_000_000), st.just(0)), present=st.booleans())
def test_property_datetime_is_empty_negation(actual, present):
    """On datetimes, is_not_empty negates is_empty, and is_empty holds exactly for missing/null/0."""
    profile = {"lastlogin": actual} if present else {}
    empty = check("lastlogin", "is_empty", profile=profile)
    assert check("lastlogin", "is_not_empty", profile=profile) is (not empty)
    assert empty is (not present or actual in (None, 0))


@settings(max_examples=100, deadline=None)
@given(profile=st.one_of(st.just({}), st.lists(st.sampled_from(["a", "B", " c ", ""]), max_size=4).map(
    lambda v: {"interests": v})), values=st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=3))
def test_property_none_of_negates_any_of(profile, values):
    """none_of is exactly the negation of any_of."""
    assert check("interests", "none_of", values, profile) is (not check("interests", "any_of", values, profile))


# ------------------------------------------------- non-finite datetime values


@pytest.mark.parametrize("actual", [float("nan"), float("inf"), float("-inf"), "NaN", "inf"],
                         ids=["nan", "inf", "-inf", "str-NaN", "str-inf"])
def test_datetime_non_finite_value_does_not_raise(actual):
    """A profile datetime holding NaN/Infinity (a legal Avro double, or such a string) is no valid epoch:
    every datetime operator returns a bool instead of raising, so one odd profile cannot break events
    or backfills; NaN is neither before nor after any instant."""
    profile = {"lastlogin": actual}
    for op, value in [("before", T0), ("after", T0), ("is_empty", _NO_VALUE), ("is_not_empty", _NO_VALUE)]:
        assert isinstance(check("lastlogin", op, value, profile), bool), op
    if actual != actual or actual == "NaN":  # NaN
        assert check("lastlogin", "before", T0, profile) is False
        assert check("lastlogin", "after", T0, profile) is False
