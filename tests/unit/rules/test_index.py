"""Unit tests for processor/rules/index.py (RuleIndex, SegmentRuleIndex).

Spec (issue: up to 10,000 rules per site): evaluating one profile must not
cost O(rules) when most rules are simple equality / ``in`` / prefix leaves.
Rules are indexed field -> normalised value -> rules; only candidates plus
the residual (non-indexable) rules are evaluated, and ``match`` returns
exactly the rules a naive loop over every rule would. Rule changes update the
index incrementally.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.membership.decide import matching_rules
from processor.rules.compiler import CompiledCondition, Leaf, Not, compile_condition
from processor.rules.exceptions import CompileError
from processor.rules.fields import FieldSpec, FieldType, StaticFields
from processor.rules import index as index_mod
from processor.rules.index import RuleIndex, SegmentRuleIndex

CUSTOM = {
    "profile_field_team": FieldSpec("profile_field_team", FieldType.MENU, ("Red", "Blue", "Grün"), True),
    "profile_field_score": FieldSpec("profile_field_score", FieldType.NUMBER, (), True),
    "profile_field_langs": FieldSpec("profile_field_langs", FieldType.MULTISELECT, (), True),
    "profile_field_bio": FieldSpec("profile_field_bio", FieldType.TEXTAREA, (), True),
}
FIELDS = StaticFields(CUSTOM)
NOW = 1_750_000_000


def c(tree) -> CompiledCondition:
    return compile_condition(tree, FIELDS)


def naive(rules: dict[str, CompiledCondition], profile, now=NOW) -> set[str]:
    return {rid for rid, cond in rules.items() if cond.evaluate(profile, now)}


# ------------------------------------------------------------ strategies

# rule values and profile values are drawn from one small pool of words, in case / whitespace variants,
# so they collide often; the pool holds casefold traps ("ß" folds to "ss", "İ" to two code points, final
# sigma) and digits / "true" for the stringification of numbers and booleans
_WORDS = ["Sales", "straße", "STRASSE", "ΑΣ", "ας", "1", "1.0", "true", "ab", "İx", "", "a b"]
_SHAPES = [str, str.upper, str.lower, str.title, str.casefold, lambda s: f" {s}", lambda s: f"{s}  "]
_word = st.builds(lambda w, f: f(w), st.sampled_from(_WORDS), st.sampled_from(_SHAPES))
_text = st.one_of(_word, _word, _word, st.text(alphabet="aAbBsSß İΣσς1", max_size=3))
_prefix = _text.flatmap(lambda s: st.integers(0, len(s)).map(lambda n: s[:n]))
_longer = st.builds(lambda a, b: a + b, _word, st.sampled_from(["", "x", "@example.org", "ß", " ab"]))
_menu_value = st.sampled_from(["Red", "red", " BLUE ", "blue", "Grün", "GRÜN"])
_number = st.one_of(st.integers(-3, 3), st.sampled_from([0.5, 1.0, 2.0, -1.5]))
_missing = st.sampled_from([None, "match", "no_match"])

TEXT_FIELDS = ["department", "email", "profile_field_bio"]


def _leaf(field: str, op: str, value=None, cs: bool = False, missing=None) -> dict:
    d: dict = {"field": field, "op": op}
    if value is not None:
        d["value"] = value
    if cs:
        d["case_sensitive"] = True
    if missing is not None:
        d["missing"] = missing
    return d


@st.composite
def leaf_tree(draw) -> dict:
    kind = draw(st.sampled_from(["text", "text", "text", "menu", "number", "multi", "check", "date"]))
    cs = draw(st.booleans())
    missing = draw(st.one_of(st.none(), _missing)) if draw(st.integers(0, 3)) == 0 else None
    if kind == "text":
        field = draw(st.sampled_from(TEXT_FIELDS))
        op = draw(st.sampled_from(["equals", "equals", "in", "in", "starts_with", "starts_with", "contains",
                                   "ends_with", "ends_with", "not_equals", "not_in", "not_starts_with",
                                   "not_contains", "not_ends_with", "is_empty",
                                   "is_not_empty", "is_defined", "matches"]))
        if op in ("in", "not_in"):
            value = draw(st.lists(_text, min_size=1, max_size=3))
        elif op in ("is_empty", "is_not_empty", "is_defined"):
            value = None
        elif op == "matches":
            value = draw(st.sampled_from(["^s", "a$", "1"]))
        elif op.endswith(("starts_with", "ends_with")):
            value = draw(_prefix) if op.endswith("starts_with") else draw(_text.map(lambda t: t[-2:]))
        else:
            value = draw(_text)
        return _leaf(field, op, value, cs, missing)
    if kind == "menu":
        op = draw(st.sampled_from(["equals", "in", "not_equals", "not_in", "is_empty"]))
        value = (draw(st.lists(_menu_value, min_size=1, max_size=2)) if op.endswith("in")
                 else None if op == "is_empty" else draw(_menu_value))
        return _leaf("profile_field_team", op, value, cs, missing)
    if kind == "number":
        op = draw(st.sampled_from(["equals", "equals", "not_equals", "gt", "gte", "lt", "lte", "between",
                                   "between", "is_empty"]))
        if op == "between":
            lo = draw(_number)
            value = [lo, lo + draw(st.integers(0, 2))]  # includes [x, x]
        else:
            value = None if op == "is_empty" else draw(_number)
        return _leaf("profile_field_score", op, value, False, missing)
    if kind == "multi":
        field = draw(st.sampled_from(["interests", "profile_field_langs"]))
        op = draw(st.sampled_from(["any_of", "all_of", "none_of", "is_empty"]))
        value = None if op == "is_empty" else draw(st.lists(_text, min_size=1, max_size=3))
        return _leaf(field, op, value, cs, missing)
    if kind == "check":
        op = draw(st.sampled_from(["is_checked", "is_not_checked"]))
        return _leaf("suspended", op, None, False, missing)
    op = draw(st.sampled_from(["within_last", "more_than_ago", "in_past", "after"]))
    value = {"within_last": "P30D", "more_than_ago": "P7D", "after": NOW - 86400}.get(op)
    return _leaf("lastaccess", op, value, False, missing)


@st.composite
def indexable_leaf(draw) -> dict:
    """A leaf of an operator the index can post (it may still turn out residual, e.g. missing: match)."""
    kind = draw(st.sampled_from(["text", "text", "menu", "number", "multi"]))
    cs = draw(st.booleans())
    missing = draw(_missing) if draw(st.integers(0, 4)) == 0 else None
    if kind == "text":
        op = draw(st.sampled_from(["equals", "in", "starts_with", "ends_with", "contains"]))
        value = (draw(st.lists(_text, min_size=1, max_size=3)) if op == "in"
                 else draw(_prefix) if op in ("starts_with", "contains") else draw(_text))
        return _leaf(draw(st.sampled_from(TEXT_FIELDS)), op, value, cs, missing)
    if kind == "menu":
        op = draw(st.sampled_from(["equals", "in"]))
        value = draw(st.lists(_menu_value, min_size=1, max_size=2)) if op == "in" else draw(_menu_value)
        return _leaf("profile_field_team", op, value, cs, missing)
    if kind == "number":
        op = draw(st.sampled_from(["equals", "equals", "gt", "gte", "lt", "lte", "between"]))
        if op == "between":
            lo = draw(_number)
            return _leaf("profile_field_score", op, [lo, lo + draw(st.sampled_from([0, 0.5, 1]))], False, missing)
        return _leaf("profile_field_score", op, draw(_number), False, missing)
    op = draw(st.sampled_from(["any_of", "all_of"]))
    field = draw(st.sampled_from(["interests", "profile_field_langs"]))
    return _leaf(field, op, draw(st.lists(_text, min_size=1, max_size=3)), cs, missing)


@st.composite
def negated_equality(draw) -> dict:
    """A root negated equality (complement postings): not_equals / not_in / none_of or not(equals / in /
    any_of), sometimes case-sensitive or with an explicit missing-data result."""
    cs = draw(st.integers(0, 3)) == 0
    missing = draw(_missing) if draw(st.integers(0, 3)) == 0 else None
    kind = draw(st.sampled_from(["text", "text", "menu", "number", "multi"]))
    if kind == "number":
        pos, neg, value, cs = "equals", "not_equals", draw(_number), False
    elif kind == "multi":
        pos, neg, value = "any_of", "none_of", draw(st.lists(_text, min_size=1, max_size=3))
    else:
        pos, neg = draw(st.sampled_from([("equals", "not_equals"), ("in", "not_in")]))
        values = _menu_value if kind == "menu" else _text
        value = draw(st.lists(values, min_size=1, max_size=3)) if pos == "in" else draw(values)
    field = {"number": "profile_field_score", "menu": "profile_field_team",
             "multi": draw(st.sampled_from(["interests", "profile_field_langs"])),
             "text": draw(st.sampled_from(TEXT_FIELDS))}[kind]
    if draw(st.booleans()):
        return _leaf(field, neg, value, cs, missing)
    return {"not": _leaf(field, pos, value, cs, missing)}


any_leaf = st.one_of(leaf_tree(), indexable_leaf(), negated_equality())
general_tree = st.recursive(
    any_leaf,
    lambda kids: st.one_of(
        st.lists(kids, min_size=1, max_size=3).map(lambda xs: {"all": xs}),
        st.lists(kids, min_size=1, max_size=3).map(lambda xs: {"any": xs}),
        kids.map(lambda x: {"not": x}),
    ),
    max_leaves=6,
)
# shapes the index looks into: a root leaf, a root all (possibly nested), an any of alls
_all_with_indexable = st.builds(lambda ix, rest, nest: {"all": [{"all": [ix]} if nest else ix, *rest]},
                                indexable_leaf(), st.lists(general_tree, max_size=2), st.booleans())
condition_tree = st.one_of(
    general_tree,
    indexable_leaf(),
    negated_equality(),
    _all_with_indexable,
    st.lists(st.one_of(_all_with_indexable, indexable_leaf()), min_size=1, max_size=3).map(
        lambda xs: {"any": xs}),
)


def _compiled_or_none(tree):
    try:
        return c(tree)
    except CompileError:  # e.g. a blank menu option; just skip such rules
        return None


compiled_rule = condition_tree.map(_compiled_or_none).filter(lambda x: x is not None)


@st.composite
def rule_list(draw, max_size: int) -> list[CompiledCondition]:
    """Rules, some of them separately compiled copies of another rule's condition (shared guards)."""
    trees = draw(st.lists(condition_tree, max_size=max_size))
    if trees and draw(st.booleans()):
        trees += draw(st.lists(st.sampled_from(trees), max_size=4))
    return [cond for cond in map(_compiled_or_none, trees) if cond is not None]

_scalar = st.one_of(_text, _longer, _number, st.booleans(),
                    st.sampled_from(["  5 ", "abc", " 1.0", "-1.5", "2", "nan", "inf", "-inf", "1e400", 10**400]))
_value = st.one_of(
    st.none(),
    _scalar,
    st.lists(st.one_of(_text, _longer, st.integers(0, 2), st.booleans(), st.just(1.0)), max_size=3),
)
_profile_keys = [*TEXT_FIELDS, "profile_field_team", "profile_field_score", "interests",
                 "profile_field_langs", "suspended", "lastaccess"]


def literals(rules) -> dict[str, list[str]]:
    """Field -> every text value the rules' leaves compare it with, so profiles can (nearly) hit them."""
    out: dict[str, set[str]] = {}
    stack = [r.root for r in rules]
    while stack:
        node = stack.pop()
        if isinstance(node, Leaf):
            raw = node.raw_value
            out.setdefault(node.field, set()).update(
                v for v in (raw if isinstance(raw, list) else [raw]) if isinstance(v, str))
        elif isinstance(node, Not):
            stack.append(node.child)
        else:
            stack.extend(node.children)
    return {f: sorted(ws) for f, ws in out.items() if ws}


_NEAR_SHAPES = [str, str, str, *_SHAPES]
_TAILS = ["", "", "", "", "x", "ß", "S", " "]


@st.composite
def profile(draw, words: dict[str, list[str]] | None = None) -> dict:
    """A profile: fields absent, null, text in case / whitespace variants, numbers, booleans, lists.

    With ``words`` (the rules' literals per field), a field's value is often one of its literals as
    written or in a variant, or with a suffix (so prefix rules are hit), alone or inside a list.
    """
    out: dict = {}
    for key in _profile_keys:
        if draw(st.integers(0, 4)) == 0:
            continue  # field absent
        value = _value
        if words and words.get(key):
            near = st.builds(lambda w, f, tail: f(w) + tail, st.sampled_from(words[key]),
                             st.sampled_from(_NEAR_SHAPES), st.sampled_from(_TAILS))
            value = st.one_of(_value, near, near, st.lists(st.one_of(near, _scalar), min_size=1, max_size=3))
        if key == "profile_field_team":
            out[key] = draw(st.one_of(_menu_value, value))
        elif key == "lastaccess":
            out[key] = draw(st.one_of(st.sampled_from([0, NOW - 3600, NOW - 40 * 86400, NOW + 60]), _value))
        else:
            out[key] = draw(value)
    return out


# ------------------------------------------------------------ properties


@settings(max_examples=300, deadline=None)
@given(rules=rule_list(20), shortcut=st.booleans(), data=st.data())
def test_match_equals_naive_evaluation_of_every_rule(rules, shortcut, data):
    """For any rule set and profile, match() returns exactly the rules whose condition evaluates true
    (with and without accepting exact single-leaf hits unevaluated)."""
    profiles = data.draw(st.lists(profile(literals(rules)), min_size=1, max_size=4))
    conds = {f"r{i}": cond for i, cond in enumerate(rules)}
    index = RuleIndex(conds.items(), exact_shortcut=shortcut)
    assert len(index) == len(conds)
    for p in profiles:
        assert index.match(p, NOW) == naive(conds, p)


@settings(max_examples=200, deadline=None)
@given(trees=st.lists(indexable_leaf(), min_size=1, max_size=10), data=st.data())
def test_single_indexable_leaves_match_exactly(trees, data):
    """Rules that are one indexable leaf (the ones the index decides or prunes most aggressively) match
    exactly as evaluation says, for profiles holding their values in every case / whitespace variant."""
    conds = {f"r{i}": cond for i, cond in enumerate(filter(None, map(_compiled_or_none, trees)))}
    index = RuleIndex(conds.items())
    for p in data.draw(st.lists(profile(literals(conds.values())), min_size=1, max_size=6)):
        assert index.match(p, NOW) == naive(conds, p)


@settings(max_examples=100, deadline=None)
@given(rules=st.lists(compiled_rule, max_size=12), data=st.data())
def test_match_without_now_equals_evaluate_without_now(rules, data):
    """Without ``now``, match() agrees with ``cond.evaluate(profile)`` (time-independent rules)."""
    p = data.draw(profile(literals(rules)))
    conds = {f"r{i}": cond for i, cond in enumerate(rules) if not cond.time_relative}
    index = RuleIndex(conds.items())
    assert index.match(p) == {rid for rid, cond in conds.items() if cond.evaluate(p)}


_ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 7), compiled_rule),
        st.tuples(st.just("remove"), st.integers(0, 9), st.none()),
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(ops=_ops, data=st.data())
def test_interleaved_add_remove_keeps_match_exact(ops, data):
    """After any interleaving of adds (including replacing an id) and removes (including unknown ids),
    match() still equals naive evaluation of the rules currently present, at every step."""
    words = literals([cond for op, _, cond in ops if op == "add"])
    profiles = data.draw(st.lists(profile(words), min_size=1, max_size=3))
    index = RuleIndex()
    live: dict[str, CompiledCondition] = {}
    for op, n, cond in ops:
        rid = f"r{n}"
        if op == "add":
            index.add(rid, cond)
            live[rid] = cond
        else:
            index.remove(rid)
            live.pop(rid, None)
        assert len(index) == len(live)
        for p in profiles:
            assert index.match(p, NOW) == naive(live, p)
    for rid in list(live):
        index.remove(rid)
    assert len(index) == 0
    assert index.stats() == {"rules": 0, "indexed": 0, "residual": 0, "exact": 0, "complement": 0,
                             "fields": 0, "postings": 0, "guards": 0, "free_guards": 0}
    assert index._fields == {} and index._guards == {} and index._guard_ids == {} and index._free == {}


@settings(max_examples=100, deadline=None)
@given(rules=st.lists(st.tuples(st.sampled_from(["s1", "s2", "s3"]), compiled_rule), max_size=15),
       data=st.data())
def test_match_segments_equals_per_segment_matching_rules(rules, data):
    """match_segments() gives, per segment, the same sorted rule ids as decide.matching_rules over
    that segment's rules, and omits segments with no match."""
    profiles = data.draw(st.lists(profile(literals([cond for _, cond in rules])), min_size=1, max_size=3))
    active: dict[str, list[tuple[str, CompiledCondition]]] = {}
    for i, (sid, cond) in enumerate(rules):
        active.setdefault(sid, []).append((f"r{i:02d}", cond))
    seg_index = SegmentRuleIndex.from_active(active)
    for p in profiles:
        expected = {sid: matching_rules(rs, p, NOW) for sid, rs in active.items()}
        assert seg_index.match_segments(p, NOW) == {sid: rids for sid, rids in expected.items() if rids}


# ------------------------------------------------------------ examples


def test_root_equality_rules_are_indexed_and_pruned():
    """A root equals leaf is indexed: a profile with another value does not even make it a candidate."""
    index = RuleIndex([("sales", c(_leaf("department", "equals", "Sales"))),
                       ("hr", c(_leaf("department", "equals", "HR")))])
    assert not index.is_residual("sales")
    assert set(index.candidates({"department": "  SALES "})) == {"sales"}
    assert index.match({"department": "  SALES "}) == {"sales"}
    assert index.candidates({"city": "Paris"}) == {}


def test_case_sensitive_leaf_is_indexed_under_a_superset_key():
    """A case-sensitive leaf is a candidate for every case variant but matches only the exact case."""
    index = RuleIndex([("r", c(_leaf("department", "equals", "Sales", cs=True)))])
    assert "r" in index.candidates({"department": "SALES"})
    assert index.match({"department": "SALES"}) == set()
    assert index.match({"department": " Sales "}) == {"r"}


def test_casefold_expanding_characters_still_match():
    """Values whose casefold changes length (ß -> ss) are looked up consistently for equals and prefixes."""
    index = RuleIndex([("eq", c(_leaf("city", "equals", "Straße"))),
                       ("pre", c(_leaf("city", "starts_with", "STRASS"))),
                       ("pre_cs", c(_leaf("city", "starts_with", "Straß", cs=True)))])
    assert index.match({"city": "STRASSE"}) == {"eq", "pre"}
    assert index.match({"city": "Straße"}) == {"eq", "pre", "pre_cs"}


def test_only_provably_exact_postings_skip_evaluation():
    """Rules decided by lookups alone (exact postings) are accepted without evaluation; case-sensitive
    leaves, multi-value all_of and all(...) with further conditions keep a guard that is evaluated."""
    exact = {"eq": _leaf("department", "equals", "Sales"), "in": _leaf("city", "in", ["A", "B"]),
             "pre": _leaf("email", "starts_with", "ext."), "num": _leaf("profile_field_score", "equals", 2),
             "any": _leaf("interests", "any_of", ["Chess"]),
             "blank_any": _leaf("interests", "any_of", ["", "Chess"]),  # blank dropped: never hit
             "all_of1": _leaf("interests", "all_of", ["Chess"]),
             "compound": {"all": [_leaf("department", "equals", "Sales")]},
             "suf": _leaf("email", "ends_with", "@x.org"), "sub": _leaf("email", "contains", "@x"),
             "gt": _leaf("profile_field_score", "gt", 2), "neq": _leaf("department", "not_equals", "HR")}
    checked = {"cs": _leaf("department", "equals", "Sales", cs=True),
               "all_of": _leaf("interests", "all_of", ["Chess", "Go"]),
               "guarded": {"all": [_leaf("department", "equals", "Sales"), _leaf("suspended", "is_checked")]}}
    index = RuleIndex([(k, c(v)) for k, v in {**exact, **checked}.items()])
    assert index._exact == set(exact)
    slow = RuleIndex([(k, c(v)) for k, v in exact.items()], exact_shortcut=False)
    assert slow.stats()["exact"] == 0
    assert index.match({"interests": [" ", "go"]}) == {"neq"}  # blank item: any_of ignores it, "in" would not
    p = {"interests": ["chess", "GO"], "department": "SALES", "suspended": True}
    assert index.match(p) == slow.match(p) | {"all_of", "guarded"} == {
        "eq", "any", "blank_any", "all_of1", "compound", "neq", "all_of", "guarded"}  # not "cs": case differs


def test_leaf_matching_missing_data_is_residual():
    """A leaf with missing: "match" is not a necessary condition, so the rule is evaluated every time."""
    index = RuleIndex([("r", c(_leaf("department", "equals", "Sales", missing="match")))])
    assert index.is_residual("r")
    assert index.match({}) == {"r"}


def test_former_residual_shapes_are_posted_and_match():
    """contains, ends_with, negated equalities and numeric thresholds get postings (complement postings
    for negations), so they are no longer residual, and still match exactly."""
    rules = {
        "contains": c(_leaf("email", "contains", "@example")),
        "ends": c(_leaf("email", "ends_with", ".ORG")),
        "neq": c(_leaf("department", "not_equals", "Sales")),
        "gt": c(_leaf("profile_field_score", "gt", 3)),
        "not": c({"not": _leaf("city", "equals", "Paris")}),
    }
    index = RuleIndex(rules.items())
    assert not any(index.is_residual(r) for r in rules)
    assert index.match({"email": "a@example.org", "profile_field_score": 4, "city": "Lyon"}) == set(rules)
    assert index.match({"email": "a@example.com", "profile_field_score": 3, "city": "paris ",
                        "department": "SALES"}) == {"contains"}


def test_rules_without_postings_are_residual_and_share_one_evaluation(monkeypatch):
    """A rule with no posting at all (regex, time-relative, matches-missing leaves, not of a compound) is
    residual: evaluated for every profile, but rules with the same condition are evaluated once."""
    trees = {"re": {"field": "email", "op": "matches", "value": "^a"},
             "re2": {"field": "email", "op": "matches", "value": "^a"},
             "recent": _leaf("lastaccess", "within_last", "P30D"),
             "empty": _leaf("city", "is_empty"),
             "notall": {"not": {"all": [_leaf("city", "equals", "A"), _leaf("country", "equals", "FR")]}}}
    index = RuleIndex([(k, c(v)) for k, v in trees.items()])
    assert all(index.is_residual(r) for r in trees)
    assert index.stats()["free_guards"] == 4
    calls = []
    real = index_mod.Leaf.evaluate
    monkeypatch.setattr(index_mod.Leaf, "evaluate", lambda self, p, now=0: calls.append(self.op) or real(self, p, now))
    assert index.match({"email": "ann@x", "lastaccess": NOW - 60, "city": "B"}, NOW) == {
        "re", "re2", "recent", "notall"}
    assert calls.count("matches") == 1


def test_number_and_boolean_profile_values_are_stringified_like_the_operators():
    """equals "1" on a text field matches 1, 1.0 and True (stringified as "1"), not "1.0" or [True]."""
    index = RuleIndex([("one", c(_leaf("department", "equals", "1"))),
                       ("true", c(_leaf("department", "in", ["true", "x"])))])
    assert index.match({"department": 1}) == {"one"}
    assert index.match({"department": 1.0}) == {"one"}
    assert index.match({"department": True}) == {"one"}
    assert index.match({"department": "1.0"}) == set()
    assert index.match({"department": [True]}) == {"true"}  # list items: str(True) -> "true"


def test_list_profile_values_match_if_any_item_matches():
    """A multi-valued profile value matches an equals / in / starts_with leaf if any item does."""
    index = RuleIndex([("eq", c(_leaf("department", "equals", "HR"))),
                       ("in", c(_leaf("department", "in", ["Ops", "IT"]))),
                       ("pre", c(_leaf("department", "starts_with", "sal")))])
    assert index.match({"department": ["x", " hr "]}) == {"eq"}
    assert index.match({"department": ["it", "Sales"]}) == {"in", "pre"}
    assert index.match({"department": []}) == set()


def test_multiselect_any_of_and_all_of_are_indexed():
    """any_of is posted under each value and all_of under one required value (case-insensitively,
    even for case-sensitive leaves); both still match exactly."""
    index = RuleIndex([("any", c(_leaf("interests", "any_of", ["Chess", "Go"]))),
                       ("all", c(_leaf("interests", "all_of", ["Chess", "Go"], cs=True)))])
    assert not index.is_residual("any") and not index.is_residual("all")
    assert index.match({"interests": ["go"]}) == {"any"}
    assert index.match({"interests": [" Go", "Chess "]}) == {"any", "all"}
    assert index.match({"interests": ["GO", "chess"]}) == {"any"}
    assert index.candidates({"interests": ["tennis"]}) == {}


def test_numeric_equals_is_indexed_numerically():
    """equals on a number field compares numerically: 5, 5.0 and " 5 " all match 5; booleans do not."""
    index = RuleIndex([("five", c(_leaf("profile_field_score", "equals", 5)))])
    assert not index.is_residual("five")
    for v in (5, 5.0, " 5 ", "5.0"):
        assert index.match({"profile_field_score": v}) == {"five"}
    assert index.match({"profile_field_score": True}) == set()
    assert index.match({"profile_field_score": [5]}) == set()


def test_all_prefers_equality_over_prefix():
    """Under a root all, the most selective indexable leaf is chosen (equals over starts_with)."""
    index = RuleIndex([("r", c({"all": [_leaf("email", "starts_with", "a"),
                                        _leaf("department", "equals", "Sales"),
                                        _leaf("profile_field_score", "gt", 1)]}))])
    (kind, field, key, guard), = index._terms["r"]
    assert (kind, field, key) == (index_mod._EQ, "department", "sales") and guard is not None
    assert index.match({"email": "ann@x", "department": "sales", "profile_field_score": 2}) == {"r"}
    assert index.candidates({"email": "ann@x", "department": "HR"}) == {}


def test_all_posts_on_the_field_with_more_distinct_values():
    """Between two equality leaves, an all is posted on the field whose values are spread wider
    (more distinct keys already posted there): a city among many is hit by fewer profiles than a
    country among two, so fewer guards are evaluated per profile."""
    index = RuleIndex([(f"c{i}", c(_leaf("city", "equals", f"City {i}"))) for i in range(20)]
                      + [(f"k{i}", c(_leaf("country", "equals", k))) for i, k in enumerate(["DE", "FR"])])
    index.add("r", c({"all": [_leaf("country", "equals", "DE"), _leaf("city", "equals", "City 3")]}))
    (kind, field, key, guard), = index._terms["r"]
    assert (kind, field, key) == (index_mod._EQ, "city", "city 3") and guard is not None
    assert index.match({"country": "DE", "city": "city 3"}) == {"r", "c3", "k0"}
    assert index.match({"country": "FR", "city": "City 3"}) == {"c3", "k1"}
    fresh = RuleIndex([("r", c({"all": [_leaf("country", "equals", "DE"), _leaf("city", "equals", "City 3")]}))])
    assert fresh._terms["r"][0][1] == "country"  # nothing known yet: the first equal-cost leaf


def test_nested_all_and_any_of_alls_are_indexed():
    """Nested all is searched; an any whose every branch has an indexable leaf is posted under each."""
    sales = {"all": [_leaf("department", "equals", "Sales")]}
    tree = {"any": [{"all": [sales, _leaf("city", "contains", "a")]},
                    {"all": [_leaf("country", "in", ["FR", "BE"]), _leaf("profile_field_score", "gt", 1)]}]}
    index = RuleIndex([("r", c(tree))])
    assert not index.is_residual("r")
    assert index.match({"department": "sales", "city": "Paris"}) == {"r"}
    assert index.match({"country": "be", "profile_field_score": 2}) == {"r"}
    assert index.candidates({"department": "HR", "country": "DE"}) == {}
    mixed = {"any": [_leaf("department", "equals", "Sales"), {"field": "city", "op": "matches", "value": "a"}]}
    index.add("mixed", c(mixed))  # one posted branch, one posting-free branch evaluated for every profile
    assert not index.is_residual("mixed") and index.stats()["free_guards"] == 1
    assert index.match({"department": "sales"}) == {"mixed"}
    assert index.match({"department": "HR", "city": "Paris"}) == {"mixed"}
    assert index.match({"department": "HR", "city": "Lyon"}) == set()


def test_prefix_lengths_follow_adds_and_removes():
    """Every indexed prefix length is looked up; removing the last prefix of a length drops that length."""
    index = RuleIndex()
    index.add("short", c(_leaf("email", "starts_with", "ab")))
    index.add("long", c(_leaf("email", "starts_with", "abc.d")))
    index.add("long2", c(_leaf("email", "starts_with", "ABC.D", cs=True)))
    assert index._fields["email"].pre_lens == (2, 5)
    assert index.match({"email": "abc.def@x"}) == {"short", "long"}
    index.remove("long")
    assert index._fields["email"].pre_lens == (2, 5)
    index.remove("long2")
    assert index._fields["email"].pre_lens == (2,)
    assert index.match({"email": "abc.def@x"}) == {"short"}


def test_add_replaces_and_remove_ignores_unknown_ids():
    """Adding an existing id replaces its rule (old postings gone); removing an unknown id is a no-op."""
    index = RuleIndex([("r", c(_leaf("department", "equals", "Sales")))])
    index.add("r", c(_leaf("department", "equals", "HR")))
    assert len(index) == 1
    assert index.match({"department": "Sales"}) == set()
    assert index.match({"department": "HR"}) == {"r"}
    index.remove("nope")
    index.remove("r")
    index.remove("r")
    assert len(index) == 0 and index._fields == {}


def test_time_relative_rules_get_now():
    """``now`` is passed to evaluation, so time-relative rules are decided at the given instant."""
    rule = c({"all": [_leaf("department", "equals", "Sales"), _leaf("lastaccess", "within_last", "P1D")]})
    index = RuleIndex([("recent", rule)])
    p = {"department": "Sales", "lastaccess": NOW - 3600}
    assert index.match(p, NOW) == {"recent"}
    assert index.match(p, NOW + 2 * 86400) == set()
    assert rule.evaluate(p, NOW) is True


# ------------------------------------------------------------ complement postings, intervals, guards


def test_negated_equality_uses_complement_postings():
    """not_equals / not_in / not(equals) / not(in) match a present value unless it hits their values
    (case-insensitively, any list item counting), and a missing value by their missing-data result."""
    rules = {"neq": _leaf("department", "not_equals", "Sales"),
             "nin": _leaf("department", "not_in", ["HR", "it"]),
             "not_eq": {"not": _leaf("department", "equals", "Sales")},
             "not_in_nomatch": {"not": _leaf("department", "in", ["HR"], missing="match")},
             "neq_nomatch": _leaf("department", "not_equals", "HR", missing="no_match"),
             "neq_blank": _leaf("department", "not_equals", "")}
    index = RuleIndex([(k, c(v)) for k, v in rules.items()])
    assert index.stats()["complement"] == len(rules) and index._exact == set(rules)
    assert index.candidates({"department": "Sales"}) == {}  # complements are not candidates
    assert index.match({}) == {"neq", "nin", "not_eq", "neq_blank"}
    assert index.match({"department": " SALES "}) == {"nin", "not_in_nomatch", "neq_nomatch", "neq_blank"}
    assert index.match({"department": ["x", "hr"]}) == {"neq", "not_eq", "neq_blank"}
    assert index.match({"department": []}) == set(rules)  # no item equals anything
    assert index.match({"department": "  "}) == set(rules) - {"neq_blank"}  # blank text equals ""


def test_complement_memo_follows_adds_and_removes():
    """The per-key memo of a field's complement (every complement rule minus those posted under the
    key) is dropped whenever the field's complement rules change, so a match after an add or a
    remove never answers from a stale complement."""
    index = RuleIndex([("neq_sales", c(_leaf("department", "not_equals", "Sales"))),
                       ("neq_hr", c(_leaf("department", "not_equals", "HR")))])
    fidx = index._fields["department"]
    assert index.match({"department": "sales"}) == {"neq_hr"} and fidx.neg_memo
    index.add("nin", c(_leaf("department", "not_in", ["Sales", "IT"])))
    assert not fidx.neg_memo
    assert index.match({"department": "Sales"}) == {"neq_hr"}
    assert index.match({"department": "it"}) == {"neq_hr", "neq_sales"}
    index.remove("neq_hr")
    assert not fidx.neg_memo
    assert index.match({"department": "Sales"}) == set()
    assert index.match({"department": "Law"}) == {"neq_sales", "nin"}
    index.add("neq_sales", c(_leaf("department", "not_equals", "Law")))  # replaces the rule's value
    assert index.match({"department": "Sales"}) == {"neq_sales"}
    assert index.match({"department": ["sales", "law"]}) == set()  # a list: every item excludes


def test_case_sensitive_negation_is_evaluated_not_complemented():
    """A case-sensitive not_equals is not given complement postings (its keys are not casefolded): it is
    a shared residual guard and still distinguishes case."""
    index = RuleIndex([("r", c(_leaf("department", "not_equals", "Sales", cs=True)))])
    assert index.is_residual("r") and index.stats()["complement"] == 0
    assert index.match({"department": "SALES"}) == {"r"}
    assert index.match({"department": " Sales"}) == set()


def test_multiselect_none_of_complement_ignores_blank_items_and_values():
    """none_of (and not(any_of)) match unless a non-blank item is listed; a blank listed value never
    excludes anything, as any_of ignores blank items."""
    index = RuleIndex([("none", c(_leaf("interests", "none_of", ["Chess", ""]))),
                       ("not_any", c({"not": _leaf("interests", "any_of", ["go"])}))])
    assert index.stats()["complement"] == 2
    assert index.match({"interests": ["", " "]}) == {"none", "not_any"}
    assert index.match({"interests": ["CHESS"]}) == {"not_any"}
    assert index.match({"interests": ["go", "x"]}) == {"none"}
    assert index.match({}) == {"none", "not_any"}


def test_number_not_equals_complement_and_non_numeric_values():
    """Number not_equals matches every value that is not numerically equal: other numbers, non-numeric
    text, NaN, booleans and lists; a missing value by its missing-data result."""
    index = RuleIndex([("ne2", c(_leaf("profile_field_score", "not_equals", 2))),
                       ("ne2_strict", c(_leaf("profile_field_score", "not_equals", 2, missing="no_match")))])
    both = {"ne2", "ne2_strict"}
    for v in (2, 2.0, " 2 ", "2e0"):
        assert index.match({"profile_field_score": v}) == set()
    for v in (3, "abc", "nan", True, [2], float("inf")):
        assert index.match({"profile_field_score": v}) == both
    assert index.match({}) == {"ne2"}


def test_numeric_thresholds_are_intervals_exact_at_the_bounds():
    """gt / gte / lt / lte / between are posted as intervals: a value equal to a threshold matches only
    the inclusive operators; non-numeric text, NaN and booleans match none; infinities compare."""
    rules = {"gt2": _leaf("profile_field_score", "gt", 2), "gte2": _leaf("profile_field_score", "gte", 2),
             "lt2": _leaf("profile_field_score", "lt", 2), "lte2": _leaf("profile_field_score", "lte", 2),
             "b13": _leaf("profile_field_score", "between", [1, 3]),
             "b22": _leaf("profile_field_score", "between", [2, 2])}
    index = RuleIndex([(k, c(v)) for k, v in rules.items()])
    assert index._exact == set(rules)
    assert index._fields["profile_field_score"].rng_points == [-math.inf, 1.0, 2.0, 3.0, math.inf]
    expect = [(2, {"gte2", "lte2", "b13", "b22"}), ("2.0", {"gte2", "lte2", "b13", "b22"}),
              (1.5, {"lt2", "lte2", "b13"}), (1, {"lt2", "lte2", "b13"}), (3, {"gt2", "gte2", "b13"}),
              (" 3.5 ", {"gt2", "gte2"}), (-7, {"lt2", "lte2"}), ("inf", {"gt2", "gte2"}),
              ("-inf", {"lt2", "lte2"}), ("nan", set()), ("abc", set()), (True, set())]
    for v, want in expect:
        assert index.match({"profile_field_score": v}) == want, v
    assert index.match({"profile_field_score": [2]}) == set()
    assert index.match({}) == set()


def test_interval_memo_follows_adds_and_removes():
    """The per-position memo of merged interval groups is dropped when the field's intervals change, and
    endpoints disappear with their last interval."""
    index = RuleIndex([("gt2", c(_leaf("profile_field_score", "gt", 2)))])
    fidx = index._fields["profile_field_score"]
    assert index.match({"profile_field_score": 5}) == {"gt2"} and fidx.rng_memo
    index.add("lt9", c(_leaf("profile_field_score", "lt", 9)))
    assert not fidx.rng_memo
    assert index.match({"profile_field_score": 5}) == {"gt2", "lt9"}
    index.remove("gt2")
    assert index.match({"profile_field_score": 5}) == {"lt9"}
    assert fidx.rng_points == [-math.inf, 9.0]
    index.remove("lt9")
    assert "profile_field_score" not in index._fields


def test_suffix_and_substring_postings():
    """ends_with is looked up by the profile value's suffixes of indexed lengths and contains by a scan of
    the field's distinct substrings; both case-insensitive unless case_sensitive (then guarded)."""
    index = RuleIndex([("org", c(_leaf("email", "ends_with", ".ORG"))),
                       ("org_cs", c(_leaf("email", "ends_with", ".org", cs=True))),
                       ("any", c(_leaf("email", "ends_with", ""))),
                       ("ex", c(_leaf("email", "contains", "Example"))),
                       ("ex_cs", c(_leaf("email", "contains", "Example", cs=True)))])
    assert index._exact == {"org", "any", "ex"}
    assert index.match({"email": " a@EXAMPLE.ORG "}) == {"org", "any", "ex"}
    assert index.match({"email": "a@Example.org"}) == {"org", "org_cs", "any", "ex", "ex_cs"}
    assert index.match({"email": ["x", "b@y.org"]}) == {"org", "org_cs", "any"}
    assert index.match({"email": []}) == set()
    assert set(index.candidates({"email": "zz"})) == {"any"}


def test_identical_guards_are_shared_and_evaluated_once(monkeypatch):
    """Separately compiled rules with the same extra condition share one guard, evaluated at most once
    per match however many postings use it; guards are reference-counted away on remove."""
    extra = {"field": "email", "op": "matches", "value": "^a"}
    trees = {f"r{i}": {"all": [_leaf("department", "in", ["Sales", f"D{i}"]), extra]} for i in range(5)}
    index = RuleIndex([(k, c(v)) for k, v in trees.items()])
    assert len(index._guards) == 1
    calls = []
    real = index_mod.Leaf.evaluate
    monkeypatch.setattr(index_mod.Leaf, "evaluate", lambda self, p, now=0: calls.append(self.op) or real(self, p, now))
    assert index.match({"department": ["sales", "d1", "d2"], "email": "ann@x"}) == set(trees)
    assert calls == ["matches"]
    for rid in trees:
        index.remove(rid)
    assert index._guards == {} and index._guard_ids == {} and index._fields == {}


def test_any_branches_without_postings_are_shared_free_guards():
    """any(all(eq, x), all(gte, checked)): the posted branch is looked up, the other is a posting-free
    guard shared by every rule that has it, and removing the rules removes the guard."""
    free = {"all": [{"field": "email", "op": "matches", "value": "^a"}, _leaf("suspended", "is_checked")]}
    r1 = c({"any": [{"all": [_leaf("city", "equals", "A"), _leaf("suspended", "is_not_checked")]}, free]})
    r2 = c({"any": [_leaf("country", "equals", "FR"), free]})
    index = RuleIndex([("r1", r1), ("r2", r2)])
    assert index.stats()["free_guards"] == 1 and not index.is_residual("r1")
    assert index.match({"email": "ann", "suspended": True}) == {"r1", "r2"}
    assert index.match({"city": "a", "suspended": False}) == {"r1"}
    assert index.match({"city": "a", "country": "fr", "suspended": True}) == {"r2"}
    index.remove("r1")
    assert index.stats()["free_guards"] == 1
    index.remove("r2")
    assert index._free == {} and index._guards == {}


def test_a_false_shared_conjunct_skips_every_guard_that_needs_it(monkeypatch):
    """Guards of one posting are a trie over their conjuncts, most shared first: when the shared
    conjunct (manager) is false, the others (a regex, a time window) are never evaluated, even though
    each rule lists the manager test last."""
    trees = {"re": {"all": [_leaf("department", "equals", "Sales"),
                            {"field": "email", "op": "matches", "value": "^a"},
                            _leaf("profile_field_manager", "is_checked")]},
             "recent": {"all": [_leaf("department", "equals", "Sales"),
                                _leaf("lastaccess", "within_last", "P30D"),
                                _leaf("profile_field_manager", "is_checked")]},
             "mgr": {"all": [_leaf("department", "equals", "Sales"), _leaf("profile_field_manager", "is_checked")]}}
    fields = StaticFields({**CUSTOM, "profile_field_manager": FieldSpec(
        "profile_field_manager", FieldType.CHECKBOX, (), True)})
    conds = {k: compile_condition(v, fields) for k, v in trees.items()}
    index = RuleIndex(conds.items())
    boss = {"department": "sales", "email": "ann@x", "lastaccess": NOW - 60, "profile_field_manager": True}
    assert naive(conds, boss) == {"re", "recent", "mgr"}
    calls = []
    real = index_mod.Leaf.evaluate
    monkeypatch.setattr(index_mod.Leaf, "evaluate", lambda self, p, now=0: calls.append(self.op) or real(self, p, now))
    # datetime comparisons skip Leaf.evaluate (index._epoch_leaf): count their conversions instead
    real_epoch = index_mod.as_epoch
    monkeypatch.setattr(index_mod, "as_epoch", lambda v: calls.append("datetime") or real_epoch(v))
    assert index.match({**boss, "profile_field_manager": False}, NOW) == set()
    assert calls == ["is_checked"]
    calls.clear()
    assert index.match(boss, NOW) == {"re", "recent", "mgr"}
    assert sorted(calls) == ["datetime", "is_checked", "matches"]


def test_equality_conjuncts_of_a_posting_are_looked_up_not_evaluated():
    """all(department == Sales, city in [...]) for many cities: the city tests of the Sales posting
    are one switch keyed by city, and a profile whose city list hits two values of one rule still
    matches it once, exactly like evaluation."""
    trees = {f"r{i}": {"all": [_leaf("department", "equals", "Sales"),
                               _leaf("city", "in", [f"C{i}", f"C{i + 1}"])]} for i in range(12)}
    for i in range(12):  # spread department wider than city, so the rules post on department
        trees[f"d{i}"] = _leaf("department", "equals", f"D{i}")
    conds = {k: c(v) for k, v in trees.items()}
    index = RuleIndex(conds.items())
    assert {index._terms[f"r{i}"][0][1] for i in range(12)} == {"department"}
    for p in ({"department": "Sales", "city": "c3"}, {"department": "Sales", "city": ["C3", "c4", "x"]},
              {"department": "HR", "city": "c3"}, {"department": "sales"}):
        assert index.match(p) == naive(conds, p)
    index.match({"department": "Sales", "city": "c3"})
    entries, switches = index._fields["department"].eq["sales"].plan
    assert entries == () and [field for field, _ in switches] == ["city"]


def test_all_posts_on_a_prefix_among_many_rather_than_a_common_equality():
    """An idnumber prefix among many posted prefixes is more selective than a region among a few:
    the all is posted on the prefix, and still matches exactly."""
    index = RuleIndex([(f"p{i}", c(_leaf("idnumber", "starts_with", f"EMP-S{i:02d}-"))) for i in range(30)]
                      + [(f"g{i}", c(_leaf("country", "equals", k))) for i, k in enumerate(["DE", "FR"])])
    index.add("r", c({"all": [_leaf("country", "equals", "DE"), _leaf("idnumber", "starts_with", "EMP-S07-")]}))
    (kind, field, key, guard), = index._terms["r"]
    assert (kind, field) == (index_mod._PRE, "idnumber") and guard is not None
    assert index.match({"country": "de", "idnumber": "EMP-S07-2020"}) == {"r", "p7", "g0"}
    assert index.match({"country": "FR", "idnumber": "EMP-S07-2020"}) == {"p7", "g1"}


@pytest.mark.parametrize("op, value", [("within_last", "P30D"), ("more_than_ago", "P7D"), ("in_past", None),
                                       ("in_future", None), ("before", NOW - 86400), ("after", NOW - 86400),
                                       ("on", "2024-11-25")])
@pytest.mark.parametrize("missing", [None, "match", "no_match"])
def test_datetime_guards_answer_exactly_like_the_leaf(op: str, value, missing) -> None:
    """A datetime comparison in a posting's guards is tested on the converted epoch
    (``_epoch_leaf``), not through ``Leaf.evaluate``: for every value shape (int, float, numeric
    string, 0 = unset, garbage, bool, missing) and bound, it answers exactly like the leaf."""
    fields = StaticFields(CUSTOM)
    leaf = {"field": "lastaccess", "op": op, **({"value": value} if value is not None else {}),
            **({"missing": missing} if missing else {})}
    cond = compile_condition({"all": [_leaf("department", "equals", "Sales"), leaf]}, fields)
    index = RuleIndex([("r", cond)])
    day = 86400
    for actual in (NOW - 3 * day, NOW - 30 * day, NOW - 30 * day - 1, NOW - 7 * day, NOW + 60, NOW, NOW - 1,
                   float(NOW - day) + 0.5, str(NOW - 2 * day), f" {NOW - 40 * day} ", 0, "0", "soon", True,
                   None, 1732492800, 1732579199, 1732579200):
        profile = {"department": "Sales"} | ({} if actual is None else {"lastaccess": actual})
        assert index.match(profile, NOW) == ({"r"} if cond.evaluate(profile, NOW) else set()), (actual, cond)
