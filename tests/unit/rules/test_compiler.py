"""Unit tests for processor/rules/compiler.py: grammar, type checking, error reporting, limits.

Spec (issue 2): condition_json is ``{"all": [...]}``, ``{"any": [...]}``,
``{"not": c}`` or a leaf ``{"field", "op", "value"}``; failures carry a
specific code (UNKNOWN_FIELD, INVALID_OPERATOR, INVALID_CONDITION,
INVALID_VALUE) and a human message naming the problem.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.rules.compiler import MAX_DEPTH, MAX_NODES, CompiledCondition, compile_condition
from processor.rules.exceptions import CompileError, RuleError
from processor.rules.fields import STANDARD_FIELDS, FieldSpec, FieldType, StaticFields

FIELDS = StaticFields(
    {
        "profile_field_team": FieldSpec("profile_field_team", FieldType.MENU, ("Red", "Blue"), True),
        "profile_field_score": FieldSpec("profile_field_score", FieldType.NUMBER, (), True),
        "profile_field_mentor": FieldSpec("profile_field_mentor", FieldType.CHECKBOX, (), True),
    }
)


def leaf(field="department", op="equals", value="Sales", **extra):
    d = {"field": field, "op": op, **extra}
    if value is not None:
        d["value"] = value
    return d


def errors_of(tree, resolver=FIELDS) -> list[RuleError]:
    with pytest.raises(CompileError) as info:
        compile_condition(tree, resolver)
    return info.value.errors


def only_error(tree, resolver=FIELDS) -> RuleError:
    errs = errors_of(tree, resolver)
    assert len(errs) == 1, [str(e) for e in errs]
    return errs[0]


# ------------------------------------------------------------ valid trees


def test_leaf_from_json_text_and_from_tree_agree():
    """A condition may be given as JSON text or as an already-parsed tree; both behave the same."""
    tree = leaf()
    a = compile_condition(json.dumps(tree), FIELDS)
    b = compile_condition(tree, FIELDS)
    for profile in ({"department": "Sales"}, {"department": "HR"}, {}):
        assert a.evaluate(profile) == b.evaluate(profile)
    assert a.evaluate({"department": "sales"}) is True


@pytest.mark.parametrize("dept,country,expected_all,expected_any", [
    ("Sales", "DE", True, True), ("Sales", "US", False, True), ("HR", "DE", False, True), ("HR", "US", False, False),
])
def test_all_any_semantics(dept, country, expected_all, expected_any):
    """all is a conjunction and any a disjunction of their children."""
    kids = [leaf(), leaf("country", "equals", "DE")]
    p = {"department": dept, "country": country}
    assert compile_condition({"all": kids}, FIELDS).evaluate(p) is expected_all
    assert compile_condition({"any": kids}, FIELDS).evaluate(p) is expected_any


def test_not_semantics():
    """not negates its child, including on a missing field."""
    c = compile_condition({"not": leaf()}, FIELDS)
    assert c.evaluate({"department": "Sales"}) is False
    assert c.evaluate({"department": "HR"}) is True
    assert c.evaluate({}) is True


def test_nested_tree_semantics():
    """Nested groups evaluate recursively: (Sales and not suspended) or team = Red."""
    tree = {"any": [
        {"all": [leaf(), {"not": leaf("suspended", "is_checked", None)}]},
        leaf("profile_field_team", "equals", "red"),
    ]}
    c = compile_condition(tree, FIELDS)
    assert c.evaluate({"department": "Sales"}) is True
    assert c.evaluate({"department": "Sales", "suspended": True}) is False
    assert c.evaluate({"department": "HR", "profile_field_team": "Red"}) is True
    assert c.evaluate({"department": "HR"}) is False


def test_compiled_reports_fields_and_nodes():
    """A compiled condition lists every field it reads and counts its nodes."""
    c = compile_condition({"all": [leaf(), {"not": leaf("profile_field_team", "equals", "Red")}]}, FIELDS)
    assert isinstance(c, CompiledCondition)
    assert c.fields == frozenset({"department", "profile_field_team"})
    assert c.nodes == 4


def test_standard_fields_known_without_catalog():
    """Every standard Moodle field resolves with an empty catalog."""
    empty = StaticFields()
    for name in ("username", "email", "department", "institution", "city", "country", "lang", "auth",
                 "suspended", "timecreated", "lastlogin", "interests"):
        assert name in STANDARD_FIELDS
        assert empty.resolve_field(name) is not None


# --------------------------------------------------------- INVALID_CONDITION


@pytest.mark.parametrize("text", ["", "{", "{'field': 'x'}", "not json", '{"all": [}'])
def test_invalid_json(text):
    """condition_json that is not JSON is INVALID_CONDITION at $."""
    err = only_error(text)
    assert err.code == "INVALID_CONDITION"
    assert err.path == "$"
    assert "JSON" in err.message


@pytest.mark.parametrize("tree", [[], [leaf()], 5, "department", None, True])
def test_root_must_be_an_object(tree):
    """A root that is not an object is INVALID_CONDITION."""
    err = only_error(json.dumps(tree))
    assert err.code == "INVALID_CONDITION"


@pytest.mark.parametrize("tree,path", [
    ({"all": []}, "$.all"),
    ({"any": []}, "$.any"),
    ({"all": "x"}, "$.all"),
    ({"any": {"field": "department"}}, "$.any"),
    ({"not": []}, "$.not"),
    ({"not": 3}, "$.not"),
    ({"all": [leaf(), 7]}, "$.all[1]"),
    ({"any": [leaf(), {"not": "x"}]}, "$.any[1].not"),
])
def test_malformed_groups(tree, path):
    """Empty/non-list groups and non-object children are INVALID_CONDITION at the offending path."""
    err = only_error(tree)
    assert (err.code, err.path) == ("INVALID_CONDITION", path)


def test_group_with_extra_keys():
    """A group node with other keys (e.g. both all and any) is INVALID_CONDITION."""
    assert only_error({"all": [leaf()], "any": [leaf()]}).code == "INVALID_CONDITION"
    assert only_error({"not": leaf(), "field": "department"}).code == "INVALID_CONDITION"


def test_empty_object_and_unknown_keys():
    """An empty object or one without group/leaf keys is INVALID_CONDITION; near misses get a suggestion."""
    assert only_error({}).code == "INVALID_CONDITION"
    err = only_error({"alll": [leaf()]})
    assert err.code == "INVALID_CONDITION"
    assert err.suggestion == "all"
    assert "did you mean 'all'" in err.message


def test_unknown_leaf_key_with_suggestion():
    """An unknown key in a leaf is INVALID_CONDITION at that key, suggesting the closest valid key."""
    err = only_error({"field": "department", "op": "equals", "valeu": "Sales"})
    assert err.code == "INVALID_CONDITION"
    assert err.path == "$.valeu"
    assert err.suggestion == "value"


@pytest.mark.parametrize("tree,path", [
    ({"op": "equals", "value": "x"}, "$.field"),
    ({"field": "", "op": "equals", "value": "x"}, "$.field"),
    ({"field": 5, "op": "equals", "value": "x"}, "$.field"),
    ({"field": "department", "value": "x"}, "$.op"),
    ({"field": "department", "op": 3, "value": "x"}, "$.op"),
])
def test_leaf_field_and_op_must_be_strings(tree, path):
    """A leaf without a non-empty string field/op is INVALID_CONDITION at that key."""
    err = only_error(tree)
    assert (err.code, err.path) == ("INVALID_CONDITION", path)


def test_case_sensitive_and_missing_options_validated():
    """case_sensitive must be a boolean and missing must be 'match' or 'no_match'."""
    err = only_error(leaf(case_sensitive="yes"))
    assert (err.code, err.path) == ("INVALID_CONDITION", "$.case_sensitive")
    err = only_error(leaf(missing="maybe"))
    assert (err.code, err.path) == ("INVALID_CONDITION", "$.missing")


# ------------------------------------------------------------ UNKNOWN_FIELD


def test_unknown_standard_field_named_with_suggestion():
    """An unknown field is UNKNOWN_FIELD at .field, the message names it and suggests the closest field."""
    err = only_error(leaf("departmnt"))
    assert err.code == "UNKNOWN_FIELD"
    assert err.path == "$.field"
    assert "departmnt" in err.message
    assert err.suggestion == "department"


def test_unknown_field_path_inside_tree():
    """The JSON path of an unknown field points into the tree."""
    err = only_error({"all": [leaf(), {"not": leaf("nosuchfield")}]})
    assert err.code == "UNKNOWN_FIELD"
    assert err.path == "$.all[1].not.field"


def test_custom_field_must_be_defined_first():
    """profile_field_<x> is unknown until defined; the message says where it comes from, in the admin's
    words (not the command's name)."""
    err = only_error(leaf("profile_field_region"))
    assert err.code == "UNKNOWN_FIELD"
    assert "profile_field_region" in err.message
    assert "come from the LMS" in err.message and "UpsertProfileField" not in err.message
    err = only_error(leaf("profile_field_team", value="Red"), StaticFields())
    assert err.code == "UNKNOWN_FIELD"


def test_bare_custom_shortname_suggests_prefixed_key():
    """Using a custom field's shortname without the profile_field_ prefix suggests the prefixed key."""
    err = only_error(leaf("team", value="Red"))
    assert err.code == "UNKNOWN_FIELD"
    assert err.suggestion == "profile_field_team"


# --------------------------------------------------------- INVALID_OPERATOR


def test_unknown_operator_with_suggestion():
    """An unknown operator is INVALID_OPERATOR at .op, listing valid ones and suggesting the closest."""
    err = only_error(leaf(op="equal"))
    assert err.code == "INVALID_OPERATOR"
    assert err.path == "$.op"
    assert err.suggestion == "equals"
    assert "equal" in err.message


@pytest.mark.parametrize("field,op,value", [
    ("department", "gt", 5),
    ("department", "is_checked", None),
    ("department", "before", 100),
    ("profile_field_score", "contains", "1"),
    ("profile_field_score", "starts_with", "1"),
    ("lastlogin", "gt", 5),
    ("suspended", "equals", "1"),
    ("profile_field_mentor", "is_empty", None),
    ("interests", "lt", 3),
])
def test_operator_not_valid_for_field_type(field, op, value):
    """A known operator applied to a field of the wrong type is INVALID_OPERATOR naming field and operator."""
    err = only_error(leaf(field, op, value))
    assert err.code == "INVALID_OPERATOR"
    assert err.path == "$.op"
    assert field in err.message and op in err.message


# ------------------------------------------------------------ INVALID_VALUE


@pytest.mark.parametrize("tree", [
    leaf(value=5),
    leaf(value=True),
    leaf(value=["Sales"]),
    {"field": "department", "op": "equals"},
    leaf(op="contains", value=None),
    leaf(op="in", value=[]),
    leaf(op="in", value="Sales"),
    leaf(op="in", value=["Sales", 3]),
    leaf(op="is_empty", value="x"),
    leaf("profile_field_score", "gt", "10"),
    leaf("profile_field_score", "gt", True),
    {"field": "profile_field_score", "op": "lt"},
    leaf("lastlogin", "before", "yesterday"),
    leaf("lastlogin", "before", True),
    leaf("profile_field_mentor", "is_checked", "yes"),
])
def test_invalid_values(tree):
    """Wrong value types, missing required values and values on no-value operators are INVALID_VALUE at .value."""
    err = only_error(tree)
    assert err.code == "INVALID_VALUE"
    assert err.path.startswith("$.value")


def test_menu_value_must_be_an_option():
    """A menu value that is not one of the field's options is INVALID_VALUE listing the options."""
    err = only_error(leaf("profile_field_team", "equals", "Green"))
    assert err.code == "INVALID_VALUE"
    assert "Green" in err.message and "Red" in err.message and "Blue" in err.message


def test_menu_option_match_is_case_insensitive():
    """Menu options are matched like values: case-insensitively and trimmed."""
    c = compile_condition(leaf("profile_field_team", "equals", " red "), FIELDS)
    assert c.evaluate({"profile_field_team": "Red"}) is True


def test_menu_in_checks_each_option_with_path():
    """With in, each listed value must be an option; the path points at the bad item."""
    err = only_error(leaf("profile_field_team", "in", ["Red", "Green"]))
    assert (err.code, err.path) == ("INVALID_VALUE", "$.value[1]")
    compile_condition(leaf("profile_field_team", "in", ["RED", "blue"]), FIELDS)


# ------------------------------------------------------- error collection


def test_all_problems_are_collected():
    """Every problem in the tree is reported, not just the first, each with its own path."""
    tree = {"all": [leaf("departmnt"), leaf(op="equal"), leaf(value=3), leaf()]}
    errs = errors_of(tree)
    assert [(e.code, e.path) for e in errs] == [
        ("UNKNOWN_FIELD", "$.all[0].field"),
        ("INVALID_OPERATOR", "$.all[1].op"),
        ("INVALID_VALUE", "$.all[2].value"),
    ]


def test_compile_error_summarises_first_problem():
    """CompileError's code/path are the first problem's; the message counts the others."""
    with pytest.raises(CompileError) as info:
        compile_condition({"any": [leaf("nope"), leaf("nope2")]}, FIELDS)
    err = info.value
    assert err.code == "UNKNOWN_FIELD"
    assert err.path == "$.any[0].field"
    assert "+1 more" in err.message


# ------------------------------------------------------------------ limits


def _nested_not(levels: int) -> dict:
    """A chain of ``levels`` nodes: (levels-1) nots around one leaf; the leaf sits at depth ``levels``."""
    tree: dict = leaf()
    for _ in range(levels - 1):
        tree = {"not": tree}
    return tree


def test_depth_limit_is_16():
    """A tree 16 levels deep compiles; 17 levels is INVALID_CONDITION mentioning the limit."""
    assert MAX_DEPTH == 16
    c = compile_condition(_nested_not(16), FIELDS)
    # 15 nots: odd count negates
    assert c.evaluate({"department": "Sales"}) is False
    err = only_error(_nested_not(17))
    assert err.code == "INVALID_CONDITION"
    assert "16" in err.message


def test_depth_limit_with_groups():
    """Depth counts all/any nesting too."""
    tree: dict = leaf()
    for _ in range(16):
        tree = {"all": [tree]}
    assert errors_of(tree)[0].code == "INVALID_CONDITION"


def test_node_limit_is_256():
    """A tree of 256 nodes compiles; 257 nodes is rejected with INVALID_CONDITION."""
    assert MAX_NODES == 256
    ok = {"any": [leaf(value=f"d{i}") for i in range(255)]}  # 1 + 255 nodes
    c = compile_condition(ok, FIELDS)
    assert c.nodes == 256
    assert c.evaluate({"department": "d254"}) is True
    errs = errors_of({"any": [leaf(value=f"d{i}") for i in range(256)]})
    assert errs[0].code == "INVALID_CONDITION"
    assert "256" in errs[0].message


def test_huge_tree_reports_node_limit_once():
    """A very large tree is rejected with a single node-limit error, not one per node."""
    errs = errors_of({"any": [leaf() for _ in range(2000)]})
    assert [e.code for e in errs] == ["INVALID_CONDITION"]


@pytest.mark.parametrize("text", [
    "[" * 5000 + "]" * 5000,
    '{"not": ' * 5000 + "{}" + "}" * 5000,
])
def test_deeply_nested_json_text_is_invalid_condition(text):
    """JSON nested far beyond the depth limit (a few KB of text) is INVALID_CONDITION, not a crash.

    condition_json arrives from admins in commands; compile_condition must
    turn any malformed text into a CompileError so the command is REJECTED.
    """
    with pytest.raises(CompileError) as info:
        compile_condition(text, FIELDS)
    assert info.value.code == "INVALID_CONDITION"


# ---------------------------------------------------- evaluation never raises

_any_value = st.one_of(
    st.none(), st.text(max_size=8), st.integers(), st.floats(allow_nan=True), st.booleans(),
    st.lists(st.text(max_size=5), max_size=3),
)
_CONDITIONS = [
    leaf(), leaf(op="contains", value="a"), leaf(op="in", value=["a", "b"]), leaf(op="is_empty", value=None),
    leaf("profile_field_score", "gte", 3), leaf("profile_field_score", "lt", 3),
    leaf("lastlogin", "before", 1000), leaf("lastlogin", "after", 1000),
    leaf("profile_field_mentor", "is_checked", None), leaf("interests", "any_of", ["a"]),
    leaf("interests", "all_of", ["a"]), leaf("profile_field_team", "in", ["Red"]),
    leaf("lastlogin", "is_not_empty", None),
]


@settings(max_examples=150, deadline=None)
@given(profile=st.fixed_dictionaries(
    {},
    optional={k: _any_value for k in
              ("department", "profile_field_score", "lastlogin", "profile_field_mentor", "interests",
               "profile_field_team")},
))
def test_property_compiled_conditions_never_raise(profile):
    """Whatever value types a profile holds, a compiled rule evaluates to a bool without raising."""
    cond = compile_condition({"any": [{"all": [c]} for c in _CONDITIONS]}, FIELDS)
    assert isinstance(cond.evaluate(profile), bool)
    for c in _CONDITIONS:
        assert isinstance(compile_condition(c, FIELDS).evaluate(profile), bool)


# ------------------------------------------------------------- compiler fuzz

_json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                          st.text(max_size=6),
                          st.sampled_from(["department", "equals", "in", "profile_field_team", "Red", "all"]))
_json = st.recursive(
    _json_scalars,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4),
        st.dictionaries(st.sampled_from(["all", "any", "not", "field", "op", "value", "missing",
                                         "case_sensitive", "x"]), kids, max_size=4),
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(tree=_json)
def test_fuzz_compiler_only_raises_compile_error(tree):
    """Any JSON tree (as a tree or as text) either compiles or raises CompileError with coded errors."""
    for cond in (tree, json.dumps(tree)):
        try:
            compiled = compile_condition(cond, FIELDS)
        except CompileError as err:
            assert err.errors
            assert all(e.code and e.code.isupper() and e.message for e in err.errors)
            assert all(e.path.startswith("$") for e in err.errors)
        else:
            assert isinstance(compiled.evaluate({}), bool)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=60))
def test_fuzz_compiler_random_text(text):
    """Random condition_json text compiles or raises CompileError, never anything else."""
    try:
        compile_condition(text, FIELDS)
    except CompileError as err:
        assert err.code
