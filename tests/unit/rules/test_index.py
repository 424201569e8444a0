"""Unit tests for processor/rules/index.py (RuleIndex, SegmentRuleIndex).

Spec (issue: up to 10,000 rules per site): evaluating one profile must not
cost O(rules) when most rules are simple equality / ``in`` / prefix leaves.
Rules are indexed field -> normalised value -> rules; only candidates plus
the residual (non-indexable) rules are evaluated, and ``match`` returns
exactly the rules a naive loop over every rule would. Rule changes update the
index incrementally.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from processor.membership.decide import matching_rules
from processor.rules.compiler import CompiledCondition, Leaf, Not, compile_condition
from processor.rules.exceptions import CompileError
from processor.rules.fields import FieldSpec, FieldType, StaticFields
from processor.rules.index import EVALUATE_TAKES_NOW, RuleIndex, SegmentRuleIndex, _evaluate

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
                                   "ends_with", "not_equals", "not_in", "not_starts_with", "is_empty",
                                   "is_not_empty", "is_defined", "matches"]))
        if op in ("in", "not_in"):
            value = draw(st.lists(_text, min_size=1, max_size=3))
        elif op in ("is_empty", "is_not_empty", "is_defined"):
            value = None
        elif op == "matches":
            value = draw(st.sampled_from(["^s", "a$", "1"]))
        elif op.endswith("starts_with"):
            value = draw(_prefix)
        else:
            value = draw(_text)
        return _leaf(field, op, value, cs, missing)
    if kind == "menu":
        op = draw(st.sampled_from(["equals", "in", "not_equals", "not_in", "is_empty"]))
        value = (draw(st.lists(_menu_value, min_size=1, max_size=2)) if op.endswith("in")
                 else None if op == "is_empty" else draw(_menu_value))
        return _leaf("profile_field_team", op, value, cs, missing)
    if kind == "number":
        op = draw(st.sampled_from(["equals", "equals", "not_equals", "gt", "lte", "between", "is_empty"]))
        if op == "between":
            lo = draw(_number)
            value = [lo, lo + draw(st.integers(0, 2))]
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
        op = draw(st.sampled_from(["equals", "in", "starts_with"]))
        value = (draw(st.lists(_text, min_size=1, max_size=3)) if op == "in"
                 else draw(_prefix) if op == "starts_with" else draw(_text))
        return _leaf(draw(st.sampled_from(TEXT_FIELDS)), op, value, cs, missing)
    if kind == "menu":
        op = draw(st.sampled_from(["equals", "in"]))
        value = draw(st.lists(_menu_value, min_size=1, max_size=2)) if op == "in" else draw(_menu_value)
        return _leaf("profile_field_team", op, value, cs, missing)
    if kind == "number":
        return _leaf("profile_field_score", "equals", draw(_number), False, missing)
    op = draw(st.sampled_from(["any_of", "all_of"]))
    field = draw(st.sampled_from(["interests", "profile_field_langs"]))
    return _leaf(field, op, draw(st.lists(_text, min_size=1, max_size=3)), cs, missing)


any_leaf = st.one_of(leaf_tree(), indexable_leaf())
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

_scalar = st.one_of(_text, _longer, _number, st.booleans(), st.sampled_from(["  5 ", "abc", " 1.0", "-1.5"]))
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
@given(rules=st.lists(compiled_rule, max_size=20), shortcut=st.booleans(), data=st.data())
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
    assert index.stats() == {"rules": 0, "indexed": 0, "residual": 0, "exact": 0, "fields": 0, "postings": 0}
    assert index._fields == {}


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


def test_only_provably_exact_single_leaf_rules_skip_evaluation():
    """Single case-insensitive equals / in / starts_with / number equals / any_of (no blank value) leaves are
    decided by the lookup; case-sensitive, all_of, blank any_of and compound rules are re-evaluated."""
    exact = {"eq": _leaf("department", "equals", "Sales"), "in": _leaf("city", "in", ["A", "B"]),
             "pre": _leaf("email", "starts_with", "ext."), "num": _leaf("profile_field_score", "equals", 2),
             "any": _leaf("interests", "any_of", ["Chess"])}
    checked = {"cs": _leaf("department", "equals", "Sales", cs=True),
               "all_of": _leaf("interests", "all_of", ["Chess"]),
               "blank_any": _leaf("interests", "any_of", ["", "Chess"]),
               "compound": {"all": [_leaf("department", "equals", "Sales")]}}
    index = RuleIndex([(k, c(v)) for k, v in {**exact, **checked}.items()])
    assert index._exact == set(exact)
    assert RuleIndex([(k, c(v)) for k, v in exact.items()], exact_shortcut=False).stats()["exact"] == 0
    assert index.match({"interests": [" ", "go"]}) == set()  # blank item: any_of ignores it, "in" would not
    assert index.match({"interests": ["chess"], "department": "SALES"}) == {
        "eq", "any", "all_of", "blank_any", "compound"}


def test_leaf_matching_missing_data_is_residual():
    """A leaf with missing: "match" is not a necessary condition, so the rule is evaluated every time."""
    index = RuleIndex([("r", c(_leaf("department", "equals", "Sales", missing="match")))])
    assert index.is_residual("r")
    assert index.match({}) == {"r"}


def test_residual_rules_are_always_evaluated():
    """Rules with no indexable necessary leaf (contains, negations, numbers, not) still match."""
    rules = {
        "contains": c(_leaf("email", "contains", "@example")),
        "neq": c(_leaf("department", "not_equals", "Sales")),
        "gt": c(_leaf("profile_field_score", "gt", 3)),
        "not": c({"not": _leaf("city", "equals", "Paris")}),
    }
    index = RuleIndex(rules.items())
    assert all(index.is_residual(r) for r in rules)
    assert index.match({"email": "a@example.org", "profile_field_score": 4, "city": "Lyon"}) == set(rules)


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
    assert index._postings["r"] == frozenset({(0, "department", "sales")})
    assert index.match({"email": "ann@x", "department": "sales", "profile_field_score": 2}) == {"r"}
    assert index.candidates({"email": "ann@x", "department": "HR"}) == {}


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
    mixed = {"any": [_leaf("department", "equals", "Sales"), _leaf("city", "contains", "a")]}
    index.add("mixed", c(mixed))
    assert index.is_residual("mixed")


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
    assert EVALUATE_TAKES_NOW
    rule = c({"all": [_leaf("department", "equals", "Sales"), _leaf("lastaccess", "within_last", "P1D")]})
    index = RuleIndex([("recent", rule)])
    p = {"department": "Sales", "lastaccess": NOW - 3600}
    assert index.match(p, NOW) == {"recent"}
    assert index.match(p, NOW + 2 * 86400) == set()
    assert _evaluate(rule, p, NOW) is True


def test_segment_index_sync_touches_only_changed_rules():
    """sync() adds new or changed rules, removes vanished ones and leaves identical ones alone."""
    a, b, b2 = c(_leaf("department", "equals", "A")), c(_leaf("department", "equals", "B")), \
        c(_leaf("department", "equals", "B2"))
    seg = SegmentRuleIndex.from_active({"s1": [("ra", a)], "s2": [("rb", b)]})
    assert seg.sync({"s1": [("ra", a)], "s2": [("rb", b)]}) == (0, 0)
    assert seg.sync({"s1": [("ra", a), ("rc", b2)]}) == (1, 1)
    assert seg.sync({"s3": [("ra", a), ("rc", b2)]}) == (2, 0)
    assert seg.segment_of("ra") == "s3" and "rb" not in seg and len(seg) == 2
    assert seg.match_segments({"department": "b2"}) == {"s3": ("rc",)}
