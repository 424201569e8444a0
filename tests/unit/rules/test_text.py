"""Unit tests for processor/rules/text.py: the readable text form of condition trees.

Spec: ``parse_text`` turns rule text such as
``department == "Sales" and (profile_field_level in ["Senior", "Lead"] or not suspended is_checked)``
into the JSON condition tree; ``to_text`` prints the canonical text; the two round-trip exactly.
Syntax errors are RuleError(INVALID_CONDITION) with path ``$text[col N]`` (0-based offset)
and a message ``expected ..., found ...``. Expected trees below are written by hand.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from processor.rules.compiler import MAX_DEPTH, MAX_NODES, compile_condition
from processor.rules.exceptions import RuleError
from processor.rules.fields import FieldSpec, FieldType, StaticFields
from processor.rules.operators import REGISTRY
from processor.rules.text import MAX_TEXT_CHARS, condition_from_any, parse_text, to_text

FIELDS = StaticFields(
    {
        "profile_field_level": FieldSpec("profile_field_level", FieldType.MENU, ("Junior", "Senior", "Lead"),
                                         True),
        "profile_field_score": FieldSpec("profile_field_score", FieldType.NUMBER, (), True),
    }
)


def leaf(field, op, *value, **extra):
    """A hand-written leaf: ``leaf("city", "equals", "Paris")``; no value argument -> no "value" key."""
    node = {"field": field, "op": op}
    if value:
        (node["value"],) = value
    node.update(extra)
    return node


A = leaf("a", "is_empty")
B = leaf("b", "is_empty")
C = leaf("c", "is_empty")


def same(x, y) -> bool:
    """Structural equality that also distinguishes True from 1 and 1 from 1.0 (== does not)."""
    if type(x) is not type(y):
        return False
    if isinstance(x, dict):
        return x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
    if isinstance(x, list):
        return len(x) == len(y) and all(same(a, b) for a, b in zip(x, y))
    if isinstance(x, float):
        return repr(x) == repr(y)
    return x == y


def text_error(text) -> RuleError:
    with pytest.raises(RuleError) as info:
        parse_text(text)
    assert info.value.code == "INVALID_CONDITION"
    return info.value


def col(n: int) -> str:
    return f"$text[col {n}]"


# ----------------------------------------------------------------- parsing: examples from the spec


def test_spec_example_mixed_and_or_not():
    """The headline example: == sugar, a parenthesized or-group, an in-list and a not on a no-value leaf."""
    text = 'department == "Sales" and (profile_field_level in ["Senior", "Lead"] or not suspended is_checked)'
    assert parse_text(text) == {
        "all": [
            {"field": "department", "op": "equals", "value": "Sales"},
            {"any": [
                {"field": "profile_field_level", "op": "in", "value": ["Senior", "Lead"]},
                {"not": {"field": "suspended", "op": "is_checked"}},
            ]},
        ]
    }


@pytest.mark.parametrize("text", ['lastlogin within_last "P30D"', "lastlogin within_last P30D"])
def test_duration_quoted_or_bare(text):
    """A duration may be written quoted or bare; both give the string value "P30D"."""
    assert parse_text(text) == {"field": "lastlogin", "op": "within_last", "value": "P30D"}


def test_bare_durations_with_time_parts_and_lowercase():
    """Bare durations cover the ISO forms (weeks, days, T-hours/minutes/seconds) and are kept verbatim."""
    assert parse_text("x more_than_ago PT12H")["value"] == "PT12H"
    assert parse_text("x more_than_ago P1DT2H30M")["value"] == "P1DT2H30M"
    assert parse_text("x more_than_ago p2w")["value"] == "p2w"


def test_case_sensitive_modifier():
    """`case_sensitive` after the value sets "case_sensitive": true."""
    assert parse_text('city equals "paris" case_sensitive') == {
        "field": "city", "op": "equals", "value": "paris", "case_sensitive": True,
    }


def test_case_insensitive_modifier_sets_false():
    """`case_insensitive` sets "case_sensitive": false (so an explicit false round-trips)."""
    assert parse_text('city equals "paris" case_insensitive') == {
        "field": "city", "op": "equals", "value": "paris", "case_sensitive": False,
    }


@pytest.mark.parametrize("choice", ["match", "no_match"])
def test_missing_modifier(choice):
    """`missing match` / `missing no_match` set "missing"."""
    assert parse_text(f'email ends_with "@example.com" missing {choice}') == {
        "field": "email", "op": "ends_with", "value": "@example.com", "missing": choice,
    }


def test_modifiers_in_either_order_and_without_value():
    """Modifiers may come in any order, and also follow a no-value operator."""
    assert parse_text('x equals "a" missing no_match case_sensitive') == {
        "field": "x", "op": "equals", "value": "a", "missing": "no_match", "case_sensitive": True,
    }
    assert parse_text("city is_empty missing match") == {
        "field": "city", "op": "is_empty", "missing": "match"}


@pytest.mark.parametrize("sym,op", [("==", "equals"), ("!=", "not_equals"), ("<", "lt"), ("<=", "lte"),
                                    (">", "gt"), (">=", "gte")])
def test_sugar_operators(sym, op):
    """Symbolic operators are sugar for the registry names equals/not_equals/lt/lte/gt/gte."""
    assert parse_text(f"profile_field_score {sym} 7") == {
        "field": "profile_field_score", "op": op, "value": 7}


@pytest.mark.parametrize("text,field,op", [("suspended is_checked", "suspended", "is_checked"),
                                           ("city is_empty", "city", "is_empty"),
                                           ("lastlogin in_past", "lastlogin", "in_past")])
def test_no_value_operators(text, field, op):
    """A leaf may have no value; the tree then has no "value" key at all."""
    tree = parse_text(text)
    assert tree == {"field": field, "op": op}
    assert "value" not in tree


def test_null_value_is_distinct_from_no_value():
    """`x is_empty null` keeps an explicit "value": null; `x is_empty` has no value key."""
    assert parse_text("x is_empty null") == {"field": "x", "op": "is_empty", "value": None}
    assert "value" not in parse_text("x is_empty")


def test_json_literal_values():
    """Values are JSON literals: numbers (negative, float, exponent), booleans, escapes, lists, objects."""
    assert parse_text("n gt -3")["value"] == -3
    assert type(parse_text("n gt 2.5")["value"]) is float
    assert parse_text("n gt -2.5e3")["value"] == -2500.0
    assert parse_text("n equals 1.0")["value"] == 1.0 and type(parse_text("n equals 1.0")["value"]) is float
    assert parse_text("x equals true")["value"] is True
    assert parse_text("x equals false")["value"] is False
    assert parse_text(r'x equals "caf\u00e9 \"q\" a\\b"')["value"] == 'café "q" a\\b'
    assert parse_text('x equals "Zürich"')["value"] == "Zürich"
    assert parse_text('x any_of ["a", ["b"], {"c": 1}]')["value"] == ["a", ["b"], {"c": 1}]
    assert parse_text('timecreated on {"date": "2026-01-31", "timezone": "Europe/Paris"}') == {
        "field": "timecreated", "op": "on", "value": {"date": "2026-01-31", "timezone": "Europe/Paris"},
    }
    assert parse_text("x between [1, 10]")["value"] == [1, 10]


def test_operator_names_are_generic():
    """Any identifier is an operator: names the registry does not know (yet) parse the same way."""
    assert parse_text('x frobnicates "y" case_sensitive') == {
        "field": "x", "op": "frobnicates", "value": "y", "case_sensitive": True}
    assert parse_text("x is_shiny") == leaf("x", "is_shiny")
    assert parse_text("x EQUALS 1") == leaf("x", "EQUALS", 1)  # operator names are kept verbatim


# ----------------------------------------------------------------- parsing: structure


def test_and_binds_tighter_than_or():
    """`a or b and c` is a or (b and c)."""
    assert parse_text("a is_empty or b is_empty and c is_empty") == {"any": [A, {"all": [B, C]}]}


def test_not_binds_tightest():
    """`not a and b` is (not a) and b; `not not a` nests."""
    assert parse_text("not a is_empty and b is_empty") == {"all": [{"not": A}, B]}
    assert parse_text("not not a is_empty") == {"not": {"not": A}}
    assert parse_text("not (a is_empty or b is_empty)") == {"not": {"any": [A, B]}}


def test_flat_chain_is_one_node():
    """A chain of the same connective without parentheses is one n-ary node."""
    assert parse_text("a is_empty and b is_empty and c is_empty") == {"all": [A, B, C]}
    assert parse_text("a is_empty or b is_empty or c is_empty") == {"any": [A, B, C]}


def test_parentheses_keep_nested_structure():
    """Parenthesized chains stay separate nodes even under the same connective (no flattening)."""
    assert parse_text("a is_empty and (b is_empty and c is_empty)") == {"all": [A, {"all": [B, C]}]}
    assert parse_text("(a is_empty and b is_empty) and c is_empty") == {"all": [{"all": [A, B]}, C]}
    assert parse_text("(a is_empty or b is_empty) or c is_empty") == {"any": [{"any": [A, B]}, C]}


def test_redundant_parentheses_add_nothing():
    """Parentheses around a single condition do not create a node."""
    assert parse_text("((a is_empty))") == A
    assert parse_text("(a is_empty) and ((b is_empty))") == {"all": [A, B]}


def test_single_child_groups_use_function_form():
    """`all(x)` / `any(x)` are groups with exactly one child; the child may itself be a chain."""
    assert parse_text("all(a is_empty)") == {"all": [A]}
    assert parse_text("any(a is_empty)") == {"any": [A]}
    assert parse_text("not any (a is_empty)") == {"not": {"any": [A]}}
    assert parse_text("all(a is_empty or b is_empty)") == {"all": [{"any": [A, B]}]}
    assert parse_text("any(a is_empty and b is_empty) or c is_empty") == {
        "any": [{"any": [{"all": [A, B]}]}, C]}


def test_all_and_any_are_ordinary_field_names_without_parenthesis():
    """`all` / `any` are keywords only before '('; otherwise they are field names."""
    assert parse_text("all is_empty") == leaf("all", "is_empty")
    assert parse_text("all(any is_empty)") == {"all": [leaf("any", "is_empty")]}


def test_keywords_are_case_insensitive():
    """and/or/not/all(/any(, modifiers and match/no_match may be written in any case."""
    assert parse_text("NOT a is_empty AND b is_empty Or c is_empty") == {"any": [{"all": [{"not": A}, B]}, C]}
    assert parse_text("ALL(a is_empty)") == {"all": [A]}
    assert parse_text('x equals "v" CASE_SENSITIVE Missing NO_MATCH') == leaf(
        "x", "equals", "v", case_sensitive=True, missing="no_match")


def test_whitespace_is_flexible():
    """Newlines and tabs separate tokens; parentheses and symbols need no spaces."""
    assert parse_text("(a==1)and(b!=-2.5)") == {
        "all": [{"field": "a", "op": "equals", "value": 1},
                {"field": "b", "op": "not_equals", "value": -2.5}]}
    assert parse_text("\n  a is_empty\n\tor\r\n b is_empty  \n") == {"any": [A, B]}


def test_keyword_prefixes_are_identifiers():
    """Identifiers that merely start with a keyword (not_in, order, android) are not keywords."""
    assert parse_text('order not_in ["x"] or android is_empty') == {
        "any": [leaf("order", "not_in", ["x"]), leaf("android", "is_empty")]}


def test_parsed_examples_compile():
    """The spec examples are not only syntax: the compiler accepts the trees they produce."""
    for text in ['department == "Sales" and (profile_field_level in ["Senior", "Lead"] '
                 'or not suspended is_checked)',
                 "lastlogin within_last P30D", 'city equals "paris" case_sensitive',
                 'email ends_with "@example.com" missing match']:
        compiled = compile_condition(parse_text(text), FIELDS)
        assert compiled.nodes >= 1
    c = compile_condition(parse_text('department == "Sales" and not suspended is_checked'), FIELDS)
    assert c.evaluate({"department": "sales", "suspended": False}) is True
    assert c.evaluate({"department": "sales", "suspended": True}) is False


# ----------------------------------------------------------------- printing


@pytest.mark.parametrize("tree,text", [
    (leaf("department", "equals", "Sales"), 'department equals "Sales"'),
    (leaf("lastlogin", "within_last", "P30D"), 'lastlogin within_last "P30D"'),
    (leaf("suspended", "is_checked"), "suspended is_checked"),
    (leaf("x", "is_empty", None), "x is_empty null"),
    (leaf("city", "equals", "é", case_sensitive=False, missing="no_match"),
     'city equals "é" case_insensitive missing no_match'),
    (leaf("n", "between", [1, 2.5]), "n between [1, 2.5]"),
    (leaf("d", "on", {"date": "2026-01-31"}), 'd on {"date": "2026-01-31"}'),
    (leaf("t", "equals", "a\"b\n"), r't equals "a\"b\n"'),
    ({"all": [A, B, C]}, "a is_empty and b is_empty and c is_empty"),
    ({"all": [A, {"all": [B, C]}]}, "a is_empty and (b is_empty and c is_empty)"),
    ({"any": [A, {"all": [B, C]}]}, "a is_empty or (b is_empty and c is_empty)"),
    ({"all": [A]}, "all(a is_empty)"),
    ({"any": [{"any": [A, B]}]}, "any(a is_empty or b is_empty)"),
    ({"not": A}, "not a is_empty"),
    ({"not": {"not": A}}, "not not a is_empty"),
    ({"not": {"all": [A, B]}}, "not (a is_empty and b is_empty)"),
    ({"all": [{"not": {"any": [A, B]}}, {"any": [C]}]}, "not (a is_empty or b is_empty) and any(c is_empty)"),
])
def test_canonical_text(tree, text):
    """to_text prints the canonical form, and the canonical form parses back to the same tree."""
    assert to_text(tree) == text
    assert same(parse_text(text), tree)


@pytest.mark.parametrize("text,canonical", [
    ('department == "Sales"', 'department equals "Sales"'),
    ("lastlogin within_last P30D", 'lastlogin within_last "P30D"'),
    ("NOT  a is_empty   AND b is_empty", "not a is_empty and b is_empty"),
    ("a is_empty or b is_empty and c is_empty", "a is_empty or (b is_empty and c is_empty)"),
    ("((a is_empty))", "a is_empty"),
    ('x in ["a","b"]', 'x in ["a", "b"]'),
    (r'x equals "\u00e9"', 'x equals "é"'),
    ("x equals 1E2", "x equals 100.0"),
])
def test_non_canonical_text_is_normalized(text, canonical):
    """Sugar, bare durations, spacing, keyword case and redundant parentheses normalize away."""
    assert to_text(parse_text(text)) == canonical


@pytest.mark.parametrize("text", [
    'department equals "Sales" and (profile_field_level in ["Senior", "Lead"] or not suspended is_checked)',
    'city equals "paris" case_sensitive',
    'email ends_with "@example.com" missing match',
    "all(a is_empty) or any(b is_empty and c is_empty)",
    "(a is_empty or b is_empty) and (c is_empty or not (a is_empty and b is_empty))",
])
def test_canonical_strings_are_fixed_points(text):
    """For canonical text, to_text(parse_text(s)) == s."""
    assert to_text(parse_text(text)) == text


def test_every_registered_operator_round_trips():
    """Each operator in the registry (whatever it holds now) prints and parses back unchanged."""
    for name in REGISTRY:
        for tree in (leaf("f", name), leaf("f", name, ["a", "b"]), leaf("f", name, "v", case_sensitive=True)):
            assert same(parse_text(to_text(tree)), tree), name


@pytest.mark.parametrize("tree,path", [
    (leaf("not", "is_empty"), "$.field"),
    (leaf("AND", "is_empty"), "$.field"),
    (leaf("first-name", "is_empty"), "$.field"),
    (leaf("", "is_empty"), "$.field"),
    (leaf("x", "=="), "$.op"),
    ({"field": "x"}, "$.op"),
    ({"all": [A, leaf("x", "or")]}, "$.all[1].op"),
    ({"all": []}, "$.all"),
    ({"any": A}, "$.any"),
    ({"all": [A], "any": [B]}, "$"),
    ({"not": [A]}, "$.not"),
    (leaf("x", "is_empty", colour="red"), "$.colour"),
    (leaf("x", "equals", "a", case_sensitive="yes"), "$.case_sensitive"),
    (leaf("x", "equals", "a", missing="sometimes"), "$.missing"),
    ({"nothing": 1}, "$"),
    ("a is_empty", "$"),
])
def test_to_text_rejects_trees_it_cannot_express(tree, path):
    """Trees outside the grammar raise INVALID_CONDITION at the JSON path of the problem."""
    with pytest.raises(RuleError) as info:
        to_text(tree)
    assert info.value.code == "INVALID_CONDITION"
    assert info.value.path == path


@pytest.mark.parametrize("value", [math.nan, math.inf, {1: "a"}, ("a",), {"a"}])
def test_to_text_rejects_non_json_values(value):
    """Values must be plain finite JSON (no NaN/inf, tuples, sets or non-string keys)."""
    with pytest.raises(RuleError) as info:
        to_text(leaf("x", "equals", value))
    assert info.value.code == "INVALID_VALUE"
    assert info.value.path == "$.value"


def test_to_text_enforces_compiler_limits():
    """to_text refuses trees deeper than MAX_DEPTH or with more than MAX_NODES nodes."""
    deep = A
    for _ in range(MAX_DEPTH - 1):
        deep = {"not": deep}
    assert parse_text(to_text(deep)) == deep
    with pytest.raises(RuleError) as info:
        to_text({"not": deep})
    assert info.value.code == "INVALID_CONDITION" and "deeper" in info.value.message
    wide = {"all": [A] * (MAX_NODES - 1)}
    assert parse_text(to_text(wide)) == wide
    with pytest.raises(RuleError) as info:
        to_text({"all": [A] * MAX_NODES})
    assert info.value.code == "INVALID_CONDITION" and str(MAX_NODES) in info.value.message


# ----------------------------------------------------------------- property tests

_KW = {"and", "or", "not"}
names = st.one_of(
    st.sampled_from(sorted(REGISTRY) + ["all", "any", "not_in", "missing", "case_sensitive", "true", "null",
                                        "P30D", "match", "_", "x1"]),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,7}", fullmatch=True),
).filter(lambda s: s.lower() not in _KW)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=5,
)


@st.composite
def leaves(draw):
    node = {"field": draw(names), "op": draw(names)}
    if draw(st.booleans()):
        node["value"] = draw(json_values)
    if draw(st.booleans()):
        node["case_sensitive"] = draw(st.booleans())
    if draw(st.booleans()):
        node["missing"] = draw(st.sampled_from(["match", "no_match"]))
    return node


trees = st.recursive(
    leaves(),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=4).map(lambda xs: {"all": xs}),
        st.lists(inner, min_size=1, max_size=4).map(lambda xs: {"any": xs}),
        inner.map(lambda x: {"not": x}),
    ),
    max_leaves=12,
)


def depth_and_size(tree, depth=1):
    if "not" in tree:
        d, n = depth_and_size(tree["not"], depth + 1)
        return d, n + 1
    for key in ("all", "any"):
        if key in tree:
            kids = [depth_and_size(c, depth + 1) for c in tree[key]]
            return max(d for d, _ in kids), 1 + sum(n for _, n in kids)
    return depth, 1


FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(trees)
def test_property_parse_of_print_is_identity(tree):
    """For every valid tree t: parse_text(to_text(t)) equals t exactly (types included)."""
    depth, size = depth_and_size(tree)
    assume(depth <= MAX_DEPTH and size <= MAX_NODES)
    assert same(parse_text(to_text(tree)), tree)


@FAST
@given(trees)
def test_property_canonical_text_is_a_fixed_point(tree):
    """Printing is canonical: to_text(parse_text(s)) == s for every s that to_text produced."""
    depth, size = depth_and_size(tree)
    assume(depth <= MAX_DEPTH and size <= MAX_NODES)
    text = to_text(tree)
    assert to_text(parse_text(text)) == text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='ab ()"[]{},:=!<>-.0123456789eP\\\nTDnotandrsq_', max_size=40) | st.text(max_size=20))
def test_property_arbitrary_text_parses_or_raises_rule_error(text):
    """parse_text never fails with anything but RuleError(INVALID_CONDITION, path $text[col N])."""
    try:
        tree = parse_text(text)
    except RuleError as err:
        assert err.code == "INVALID_CONDITION"
        assert err.path.startswith("$text[col ")
        pos = int(err.path[len("$text[col "):-1])
        assert 0 <= pos <= len(text)
        assert "expected" in err.message and "found" in err.message
    else:
        assert to_text(parse_text(to_text(tree))) == to_text(tree)


# ----------------------------------------------------------------- errors


def test_unclosed_parenthesis():
    """A missing ')' is reported at the end, naming ')' and where the '(' was opened."""
    text = "(a is_empty and b is_empty"
    err = text_error(text)
    assert err.path == col(len(text))
    assert "expected 'and', 'or' or ')' to close '(' at col 0" in err.message
    assert err.message.endswith("found end of input")


def test_unclosed_function_parenthesis():
    """`all(` without ')' reports the function that was opened."""
    err = text_error("x is_empty or all(a is_empty")
    assert err.path == col(len("x is_empty or all(a is_empty"))
    assert "')' to close 'all(' at col 14" in err.message


def test_unmatched_closing_parenthesis():
    """A stray ')' is reported at its offset; ')' is not among the expected tokens outside parentheses."""
    text = "a is_empty)"
    err = text_error(text)
    assert err.path == col(text.index(")"))
    assert "found ')'" in err.message
    assert "'and', 'or' or end of input" in err.message
    assert "')'," not in err.message.split("found")[0]


def test_missing_value_after_symbol_operator():
    """`==` and friends need a value; the message says a value was expected and what came instead."""
    err = text_error("department ==")
    assert err.path == col(len("department =="))
    assert "expected a value" in err.message and "after '=='" in err.message
    assert "found end of input" in err.message
    err = text_error("department >= and city is_empty")
    assert err.path == col(len("department >= "))
    assert "expected a value" in err.message and "found 'and'" in err.message


def test_unquoted_text_value_suggests_quotes():
    """A bare word where a value belongs is reported with a suggestion to quote it."""
    err = text_error("department == Sales")
    assert err.path == col(14)
    assert "found 'Sales'" in err.message and "did you mean '\"Sales\"'" in err.message
    err = text_error("department equals Sales")
    assert err.path == col(18)
    assert "expected a value, a modifier" in err.message and "found 'Sales'" in err.message


def test_trailing_garbage_after_leaf():
    """Text after a complete leaf that cannot continue it is rejected at its offset."""
    text = 'city equals "x" case_sensitive missing match extra'
    err = text_error(text)
    assert err.path == col(text.index("extra"))
    assert "expected 'and', 'or' or end of input" in err.message  # value and modifiers are used up
    assert "found 'extra'" in err.message


def test_trailing_garbage_after_group():
    """Text after a closed group that is not and/or is rejected."""
    text = "(a is_empty) b is_empty"
    err = text_error(text)
    assert err.path == col(text.index("b"))
    assert err.message == "expected 'and', 'or' or end of input, found 'b'"


@pytest.mark.parametrize("text,bad,expected,hint", [
    ('department $ "x"', "$", "expected an operator after field 'department'", None),
    ("x = 3", "=", "expected an operator", "=="),
    ("a is_empty && b is_empty", "&", "'and', 'or'", "and"),
    ("a is_empty || b is_empty", "|", "'and', 'or'", "or"),
    ("!a is_empty", "!", "expected a condition", "not"),
    ("a is_empty and # b is_empty", "#", "expected a condition", None),
    ("x in ['a']", "'", "expected a value", None),
])
def test_unknown_tokens(text, bad, expected, hint):
    """Unknown symbols are reported at their offset with what was expected (and a hint when obvious)."""
    err = text_error(text)
    assert err.path == col(text.index(bad))
    assert expected in err.message
    assert f"found {bad!r}" in err.message
    if hint:
        assert f"did you mean {hint!r}" in err.message


@pytest.mark.parametrize("text", ["", "   \n"])
def test_empty_text(text):
    """Empty text expects a condition at the end."""
    err = text_error(text)
    assert err.path == col(len(text))
    assert err.message.startswith("expected a condition") and err.message.endswith("found end of input")


@pytest.mark.parametrize("text,bad", [("and a is_empty", "and"), ("a is_empty and or b is_empty", "or"),
                                      ("a is_empty and", None), ("not", None), ("()", ")")])
def test_missing_operand(text, bad):
    """A connective or 'not' without an operand expects a condition."""
    err = text_error(text)
    assert err.path == col(text.index(bad) if bad else len(text))
    assert "expected a condition" in err.message


def test_keyword_cannot_be_an_operator():
    """`x and y` has no operator: and/or/not are not operator names."""
    err = text_error("x and y is_empty")
    assert err.path == col(2)
    assert "expected an operator after field 'x'" in err.message and "found 'and'" in err.message


def test_bad_missing_modifier():
    """`missing` must be followed by match or no_match."""
    err = text_error("x is_empty missing maybe")
    assert err.path == col(len("x is_empty missing "))
    assert "expected 'match' or 'no_match' after 'missing', found 'maybe'" in err.message


def test_duplicate_modifiers():
    """Each modifier may appear once."""
    text = 'x equals "a" case_sensitive case_insensitive'
    err = text_error(text)
    assert err.path == col(text.index("case_insensitive"))
    assert "at most one" in err.message
    text = "x is_empty missing match missing no_match"
    assert text_error(text).path == col(text.rindex("missing"))


def test_bad_json_values():
    """JSON problems inside a value are reported at the offending character with what JSON expected."""
    text = 'x in ["a" "b"]'
    err = text_error(text)
    assert err.path == col(text.index('"b"'))
    assert "expected ','" in err.message and "found '\"b\"'" in err.message
    text = 'x equals "abc'
    err = text_error(text)
    assert err.path == col(len(text))
    assert "closing '\"'" in err.message and "col 9" in err.message and "found end of input" in err.message
    text = 'x in ["a",]'
    err = text_error(text)
    assert err.path == col(text.index("]"))
    assert "expected a value" in err.message
    text = 'x equals "a\\qb"'
    assert text_error(text).path == col(text.index("\\"))


@pytest.mark.parametrize("text", ["x gt NaN", "x gt Infinity", "x gt -Infinity", "x gt 1e999",
                                  "x in [1, NaN]"])
def test_non_finite_numbers_rejected(text):
    """NaN, Infinity and overflowing numbers are not values."""
    err = text_error(text)
    assert err.path == col(5)


def test_unquoted_date_suggests_quotes():
    """`2026-01-31` unquoted reads as the number 2026 followed by junk; the hint quotes the date."""
    text = "lastlogin before 2026-01-31"
    err = text_error(text)
    assert err.path == col(text.index("-01"))
    assert "after the number 2026" in err.message and "did you mean '\"2026-01-31\"'" in err.message


def test_number_glued_to_word():
    """A number must be separated from the next word (`5and` is not `5 and`)."""
    text = "x gt 5and y is_empty"
    assert text_error(text).path == col(text.index("and"))


def test_not_a_string():
    """Non-string input is rejected with path $text."""
    with pytest.raises(RuleError) as info:
        parse_text(b"a is_empty")  # type: ignore[arg-type]
    assert info.value.code == "INVALID_CONDITION" and info.value.path == "$text"


# ----------------------------------------------------------------- limits


def test_depth_limit_with_not():
    """16 levels (15 nots over a leaf) parse; 17 levels are rejected."""
    assert parse_text("not " * (MAX_DEPTH - 1) + "a is_empty") is not None
    err = text_error("not " * MAX_DEPTH + "a is_empty")
    assert "nest" in err.message and str(MAX_DEPTH) in err.message and err.message.startswith("expected")


def test_depth_limit_with_nested_chains():
    """Depth counts tree levels (like the compiler), not parentheses: 14 nested chains fit, 15 do not."""
    def nested(k: int) -> str:
        # k parenthesized chains inside a root chain: k + 1 chain levels, leaves at level k + 2
        return "a is_empty and (" * k + "b is_empty and c is_empty" + ")" * k

    tree = parse_text(nested(MAX_DEPTH - 2))
    inner = tree
    levels = 1
    while "all" in inner:
        inner = inner["all"][-1]
        levels += 1
    assert levels == MAX_DEPTH
    text = nested(MAX_DEPTH - 1)  # only 15 parentheses, but 17 tree levels
    err = text_error(text)
    assert str(MAX_DEPTH) in err.message and "nested deeper" in err.message


def test_redundant_parentheses_are_bounded():
    """Parentheses deeper than the limit are rejected (no RecursionError), even around one leaf."""
    err = text_error("(" * (MAX_DEPTH + 1) + "a is_empty" + ")" * (MAX_DEPTH + 1))
    assert err.path == col(MAX_DEPTH)
    err = text_error("(" * 60000)
    assert err.path == col(MAX_DEPTH)


def test_node_limit():
    """256 nodes parse (one all + 255 leaves); 257 are rejected at the offending condition."""
    assert len(parse_text(" and ".join(["a is_empty"] * (MAX_NODES - 1)))["all"]) == MAX_NODES - 1
    text = " or ".join(["a is_empty"] * MAX_NODES)
    err = text_error(text)
    assert str(MAX_NODES) in err.message and "more" in err.message


def test_text_length_limit():
    """Text longer than 64 KiB is rejected before parsing; exactly 64 KiB is read."""
    assert MAX_TEXT_CHARS == 64 * 1024
    ok = "a is_empty" + " " * (MAX_TEXT_CHARS - len("a is_empty"))
    assert parse_text(ok) == A
    err = text_error(ok + " ")
    assert err.path == "$text" and str(MAX_TEXT_CHARS) in err.message


def test_deeply_nested_value_is_rejected_cleanly():
    """A pathologically nested JSON value fails with RuleError, not RecursionError."""
    err = text_error("x in " + "[" * 5000)
    assert err.path == col(5)
    err = text_error("x in " + "[" * 40 + "]" * 40)
    assert err.path == col(5) and "nested" in err.message


# ----------------------------------------------------------------- condition_from_any


def test_condition_from_any_dict_passes_through():
    """A dict is returned as is (the compiler validates it)."""
    tree = {"all": [A]}
    assert condition_from_any(tree) is tree


def test_condition_from_any_json_and_text():
    """A string starting with '{' is JSON; any other string is rule text."""
    assert condition_from_any('{"field": "a", "op": "is_empty"}') == A
    assert condition_from_any('  \n{"not": {"field": "a", "op": "is_empty"}}') == {"not": A}
    assert condition_from_any("not a is_empty") == {"not": A}


def test_condition_from_any_errors():
    """Bad JSON, bad text and other types raise RuleError(INVALID_CONDITION)."""
    for bad, path in (('{"field": ', "$"), ("a is_empty )", col(11)), (["a"], "$"), (None, "$")):
        with pytest.raises(RuleError) as info:
            condition_from_any(bad)
        assert info.value.code == "INVALID_CONDITION"
        assert info.value.path == path
