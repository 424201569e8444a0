"""An incremental index over compiled rules: match a profile without evaluating every rule.

A site may hold up to 10,000 rules; evaluating every rule for every profile
event costs O(rules). :class:`RuleIndex` instead splits every rule, when it is
added, into *terms* whose disjunction is exactly the rule::

    rule  ==  OR over its terms of  (posting hit  AND  guard)

A *posting* is a lookup the index answers for a whole group of rules at once
from the profile's value of one field; a *guard* is a sub-condition that is
evaluated. Guards are shared: every guard is identified by a canonical
signature of its compiled tree (operator, field, field type, prepared value,
case sensitivity, missing-data result, time dependence; regexes by pattern),
and within one ``match`` call a guard is evaluated at most once, however many
rules and postings use it. A term without a guard is decided by the lookup
alone, so a group of such rules is added to the result with one set union.
Nothing in ``match`` evaluates a rule as a whole unless the rule has no
posting at all, and then only once per *distinct* condition.

Postings (per field; profile text is read exactly as the text operators read
it: :func:`processor.rules.values.as_text` for a scalar, ``norm_text(str(item))``
for each item of a list, always casefolded for the lookup):

* ``_EQ`` text value -> rules: text / menu ``equals`` and ``in``, multi-select
  ``any_of`` (blank values dropped: ``any_of`` ignores blank items) and
  ``all_of`` (posted under one required value; an ``all_of`` listing a blank
  value can never match and is posted nowhere);
* ``_NUM`` float -> rules: number ``equals`` (compared numerically);
* ``_PRE`` / ``_SUF`` prefix / suffix -> rules: ``starts_with`` / ``ends_with``
  (a suffix is stored reversed and looked up as a prefix of the reversed value);
  a profile value is looked up under each of its prefixes whose length is an
  indexed length for the field;
* ``_SUB`` substring -> rules: ``contains``; the field's distinct substrings
  are scanned once per profile (``v in text`` each), not once per rule;
* ``_RNG`` interval -> rules: number ``gt`` / ``gte`` / ``lt`` / ``lte`` /
  ``between`` as intervals with open or closed ends. The set of intervals that
  contain ``x`` depends only on where ``x`` falls among the field's sorted
  distinct endpoints (``bisect``: between two endpoints, or on one), so the
  merged rule groups are computed once per such position and memoised; any
  change to the field's intervals clears that memo (bounded by 2 x endpoints + 1).

Case-sensitive leaves and multi-value ``all_of`` are posted under a superset
key (``str.casefold`` folds code point by code point, so ``a == v`` implies
``casefold(a) == casefold(v)`` and likewise for prefixes, suffixes and
substrings) and keep themselves as guard; every other posting above is
*exact*: for a present value, a hit is the leaf's result. Only leaves whose
missing-data result is False and that do not read ``now`` are posted (a leaf
that matches missing data is not a necessary condition).

How a condition becomes terms::

    terms(leaf)          = [(posting, None)] if exact, [(posting, leaf)] if superset key
    terms(all(c...))     = terms of the cheapest child c that has complete terms, each
                           (p, g) becoming (p, all(g, other children))
    terms(any(c...))     = concatenation of the children's terms; a child without terms
                           becomes a posting-free term (always, child): its guard is
                           evaluated (once per distinct guard) for every profile
    terms(not(c))        = none

Terms of an ``all`` are exact because ``c == OR(p_i AND g_i)`` gives
``c AND rest == OR(p_i AND g_i AND rest)``. A rule with no terms at all is
*residual*: its whole condition is a posting-free guard, shared by every rule
with the same condition.

Negated equality at the root (text / menu ``not_equals`` / ``not_in``, number
``not_equals``, multi-select ``none_of``, and ``not`` of ``equals`` / ``in`` /
``any_of``, all case-insensitive) uses *complement postings*: such a rule
matches a present value unless the value hits its posting, so per field the
index answers ``(all such rules) - (rules posted under the profile's keys)``,
and for a missing value the rules whose missing-data result is True (``not``
flips the child's). A non-numeric or NaN value never equals a number, so it
matches every number ``not_equals`` rule. For a scalar text value that hits complement postings,
that difference is memoised per key (cleared when the field's complement rules change), since
such rules match nearly every profile.

How the guards of one posting are evaluated: as a *plan*, a trie over their
conjuncts (a guard ``all(k1, ..., kn)`` is its children; any other guard is one
conjunct), the conjuncts most shared within the posting first. A false conjunct
is evaluated once and skips every guard below it; sibling conjuncts that are
text equality tests on one field become a *switch* (one dict lookup per profile
key instead of one test each). Every conjunct is memoised per match, and leaf,
equality, number and negated-equality conjuncts are evaluated by a specialised
closure built when the guard is registered (no dispatch per evaluation).

Adding or removing a rule touches only that rule's terms (O(size of the rule)),
plus clearing the interval memo of a field whose intervals changed and dropping
the plan of each posting it touched (rebuilt on that posting's next hit);
nothing is ever rebuilt eagerly. The module is pure: no Kafka, no Faust.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left, insort
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from processor.rules.compiler import All, Any_, CompiledCondition, Leaf, Node, Not
from processor.rules.fields import FieldType
from processor.rules.values import as_epoch, as_number, as_text

Profile = Mapping[str, Any]

_TEXT_EQ_TYPES = frozenset({FieldType.TEXT, FieldType.TEXTAREA, FieldType.MENU})
_TEXT_TYPES = frozenset({FieldType.TEXT, FieldType.TEXTAREA})
_INF = math.inf

# posting kinds
_EQ = 0  # normalised text value -> rules
_NUM = 1  # float -> rules
_PRE = 2  # normalised text prefix -> rules
_SUF = 3  # reversed normalised text suffix -> rules
_SUB = 4  # normalised substring -> rules (scanned)
_RNG = 5  # (lo, lo_open, hi, hi_open) -> rules
_FREE = 6  # no posting: the guard alone (field None, key None)
_NEG_TEXT = 7  # complement of a text key
_NEG_NUM = 8  # complement of a number


# ------------------------------------------------------------------ signatures


def signature(node: Node) -> tuple:
    """A hashable value equal for two nodes exactly when they evaluate alike (conservatively).

    A leaf's result depends on its field, field type (which selects the operator's implementation),
    operator, prepared value, case sensitivity, missing-data result and whether it reads ``now``;
    a compiled regex is identified by its pattern (its case sensitivity is in the signature). A value
    that cannot be hashed, or a node type this module does not know, gets a signature of its own.
    """
    if isinstance(node, Leaf):
        value: Any = node.value
        if node.op in ("matches", "not_matches"):
            value = ("re", node.raw_value)
        else:
            try:
                hash(value)
            except TypeError:
                value = ("id", id(node))
        return ("leaf", node.op, node.field, node.field_type, value, node.case_sensitive,
                node.on_missing, node.uses_now)
    if isinstance(node, All):
        return ("all", *(signature(c) for c in node.children))
    if isinstance(node, Any_):
        return ("any", *(signature(c) for c in node.children))
    if isinstance(node, Not):
        return ("not", signature(node.child))
    return ("id", id(node))


# ------------------------------------------------------------------ decomposition

# a term: (kind, field, key, guard node or None); a leaf access: (kind, field, keys, exact, cost)
Term = tuple[int, "str | None", Any, "Node | None"]


def _prefix_cost(key: str) -> float:
    # a prefix is less selective than a whole value, and the shorter the worse
    return 2.0 if len(key) >= 4 else 4.0 if key else 64.0


def _leaf_access(leaf: Leaf, shortcut: bool) -> tuple[int, str, tuple, bool, float] | None:
    """How a leaf is posted: (kind, field, keys, exact, cost), or None when it cannot be."""
    if leaf.on_missing or leaf.uses_now:
        return None
    op, ftype, value, field, cs = leaf.op, leaf.field_type, leaf.value, leaf.field, leaf.case_sensitive
    exact = shortcut and not cs

    def fold(v: str) -> str:
        return v.casefold() if cs else v

    if ftype is FieldType.NUMBER:
        if not isinstance(value, (float, tuple)):
            return None
        if op == "equals":
            return _NUM, field, (value,), shortcut, 1.0
        iv = {"gt": (value, True, _INF, False), "gte": (value, False, _INF, False),
              "lt": (-_INF, False, value, True), "lte": (-_INF, False, value, False)}.get(op) \
            if isinstance(value, float) else (value[0], False, value[1], False) if op == "between" else None
        if iv is None or any(isinstance(x, float) and x != x for x in (iv[0], iv[2])):
            return None
        return _RNG, field, (iv,), shortcut, 16.0
    if op == "equals":
        if ftype in _TEXT_EQ_TYPES and isinstance(value, str):
            return _EQ, field, (fold(value),), exact, 1.0
        return None
    if not isinstance(value, (str, frozenset)):
        return None
    if op in ("in", "any_of", "all_of"):
        if not isinstance(value, frozenset) or not value or not all(isinstance(v, str) for v in value):
            return None
        if op == "in":
            if ftype not in _TEXT_EQ_TYPES:
                return None
            keys = {fold(v) for v in value}
            return _EQ, field, tuple(sorted(keys)), exact, float(len(keys))
        if ftype is not FieldType.MULTISELECT:
            return None
        if op == "any_of":
            keys = {fold(v) for v in value if v}  # any_of ignores blank items: a blank value never hits
            return _EQ, field, tuple(sorted(keys)), exact or not keys, float(len(keys))
        if not all(value):  # all_of requires a blank item, which it ignores: never matches
            return _EQ, field, (), True, 0.0
        # every value is required: one is enough; prefer the longest (likely rarest)
        pick = max(value, key=lambda v: (len(v), v))
        return _EQ, field, (fold(pick),), exact and len(value) == 1, 1.0
    if ftype not in _TEXT_TYPES or not isinstance(value, str):
        return None
    key = fold(value)
    if op == "starts_with":
        return _PRE, field, (key,), exact, _prefix_cost(key)
    if op == "ends_with":
        return _SUF, field, (key[::-1],), exact, _prefix_cost(key)
    if op == "contains":
        return _SUB, field, (key,), exact, 8.0
    return None


def _conj(guard: Node | None, rest: Sequence[Node]) -> Node | None:
    items = ([guard] if guard is not None else []) + list(rest)
    if not items:
        return None
    return items[0] if len(items) == 1 else All(items)


Spread = Callable[[int, str], float]


def decompose(node: Node, shortcut: bool = True, spread: Spread | None = None) -> tuple[list[Term], float, bool] | None:
    """(terms, cost, complete) with ``node == OR(posting hit AND guard)`` over the terms, or None.

    ``complete``: every term has a posting (no posting-free term), so one of the postings is hit by
    every profile the node matches. Lower cost = more selective. ``spread(kind, field)``, when
    given, estimates how many distinct values an equality posting on ``field`` is spread over (the
    index passes the distinct keys already posted there): ``region == North`` among 8 regions is
    hit by far more profiles than ``costcentre == CC-1234`` among 1,500, so an ``all`` posts on
    the latter and evaluates the former as its guard, not the other way round.
    """
    if isinstance(node, Leaf):
        acc = _leaf_access(node, shortcut)
        if acc is None:
            return None
        kind, field, keys, exact, cost = acc
        if spread is not None and kind in (_EQ, _NUM, _PRE, _SUF):
            cost /= spread(kind, field)
        guard = None if exact else node
        return [(kind, field, k, guard) for k in keys], cost, True
    if isinstance(node, All):
        best: tuple[list[Term], float, bool] | None = None
        best_i = -1
        for i, child in enumerate(node.children):
            found = decompose(child, shortcut, spread)
            if found is not None and found[2] and (best is None or found[1] < best[1]):
                best, best_i = found, i
        if best is None:
            return None
        rest = [c for i, c in enumerate(node.children) if i != best_i]
        if not rest:
            return best
        return [(k, f, key, _conj(g, rest)) for k, f, key, g in best[0]], best[1], True
    if isinstance(node, Any_):
        terms: list[Term] = []
        cost = 0.0
        complete = True
        indexed = False
        for child in node.children:
            found = decompose(child, shortcut, spread)
            if found is None:
                terms.append((_FREE, None, None, child))
                cost += 1000.0
                complete = False
            else:
                terms.extend(found[0])
                cost += found[1]
                complete = complete and found[2]
                indexed = True
        return (terms, cost, complete) if indexed else None
    return None  # Not, or a node type this index does not know


def negation(node: Node, shortcut: bool = True) -> tuple[int, str, tuple, bool] | None:
    """A root negated equality: (kind, field, keys, result when the value is missing), or None.

    The node is true for a present value exactly when the value hits none of ``keys``.
    """
    if not shortcut:
        return None
    if isinstance(node, Not) and isinstance(node.child, Leaf):
        leaf, op, missing = node.child, node.child.op, not node.child.on_missing
    elif isinstance(node, Leaf):
        pos = {"not_equals": "equals", "not_in": "in", "none_of": "any_of"}.get(node.op)
        if pos is None:
            return None
        leaf, op, missing = node, pos, node.on_missing
    else:
        return None
    if leaf.case_sensitive or leaf.uses_now:
        return None
    ftype, value = leaf.field_type, leaf.value
    if op == "equals":
        if ftype is FieldType.NUMBER and isinstance(value, float):
            return _NEG_NUM, leaf.field, (value,), missing
        if ftype in _TEXT_EQ_TYPES and isinstance(value, str):
            return _NEG_TEXT, leaf.field, (value,), missing
        return None
    if not isinstance(value, frozenset) or not all(isinstance(v, str) for v in value):
        return None
    if op == "in" and ftype in _TEXT_EQ_TYPES:
        return _NEG_TEXT, leaf.field, tuple(sorted(value)), missing
    if op == "any_of" and ftype is FieldType.MULTISELECT:
        return _NEG_TEXT, leaf.field, tuple(sorted(v for v in value if v)), missing
    return None


# ------------------------------------------------------------------ profile keys


def _text_keys(actual: Any) -> Iterable[str]:
    """The profile value as the text operators see it, case-insensitively (one key per list item)."""
    if type(actual) is str:  # the common case, as as_text(actual, False) computes it
        return (actual.strip().casefold(),)
    if isinstance(actual, list):
        return {str(a).strip().casefold() for a in actual}
    return (as_text(actual, False),)


def _number_key(actual: Any) -> float | None:
    try:
        return as_number(actual)
    except (OverflowError, ValueError):  # pragma: no cover - as_number already returns None for these
        return None


# ------------------------------------------------------------------ storage


class _Group:
    """Rules sharing one guard (``node``, evaluated at most once per match) in one posting."""

    __slots__ = ("node", "rids")

    def __init__(self, node: Node, rids: set[str]) -> None:
        self.node = node
        self.rids = rids


def _group_add(groups: dict[Any, _Group], gid: Any, node: Node, rule_id: str) -> None:
    grp = groups.get(gid)
    if grp is None:
        groups[gid] = _Group(node, {rule_id})
    else:
        grp.rids.add(rule_id)


def _group_discard(groups: dict[Any, _Group], gid: Any, rule_id: str) -> None:
    grp = groups[gid]
    grp.rids.discard(rule_id)
    if not grp.rids:
        del groups[gid]


# how a guard is evaluated: the node itself, through its children's guards, or (leaves with an exact
# posting, root-style negated equalities) from the profile's keys of the field, computed once per match
_LEAF, _ALL, _ANY, _NOT, _KEYS, _NUMK, _RNGK, _NEGK = range(8)


class _Guard:
    """A distinct guard condition; an ``all`` / ``any`` / ``not`` is evaluated through its children's
    guards, so a sub-condition shared by several guards is evaluated once per match too."""

    __slots__ = ("sig", "node", "how", "kids", "data", "refs", "fn")

    def __init__(self, sig: tuple, node: Node, how: int, kids: tuple[int, ...] | None, data: Any = None) -> None:
        self.sig = sig
        self.node = node
        self.how = how
        self.kids = kids
        self.data = data
        self.refs = 1
        self.fn = _direct(node, how, data)


# A guard evaluated without the memo of other guards: fn(profile, now, text keys, numbers), the last
# two being per-match caches of the profile's field values as the postings read them.
Direct = Callable[[Profile, int, "_TextKeys", "_Numbers"], bool]


class _TextKeys(dict):
    """field -> the profile's text keys of the field (``()`` when missing), computed on first use."""

    __slots__ = ("profile",)

    def __missing__(self, field: str) -> Iterable[str]:
        actual = self.profile.get(field)
        keys = self[field] = () if actual is None else _text_keys(actual)
        return keys


class _Numbers(dict):
    """field -> the profile's number value of the field (None when missing or not a number)."""

    __slots__ = ("profile",)

    def __missing__(self, field: str) -> float | None:
        actual = self.profile.get(field)
        num = self[field] = None if actual is None else _number_key(actual)
        return num


# Datetime operators whose test reads the value through ``as_epoch`` only (``between`` compares the
# raw number), so testing the epoch gives the same answer as testing the profile value.
_EPOCH_OPS = frozenset({"before", "after", "on", "in_past", "in_future", "within_last", "more_than_ago"})


def _epoch_leaf(node: Leaf) -> Direct:
    """``Leaf.evaluate`` for a datetime comparison, converting the value once instead of twice
    (missing check, then test): a site's time windows ("active in the last 7 / 30 / 90 days") are
    many distinct guards on one field."""
    field, test, value, cs, missing = node.field, node._test, node.value, node.case_sensitive, node.on_missing
    if node.uses_now:
        def epoch_now(p: Profile, now: int, tk: _TextKeys, nk: _Numbers) -> bool:
            ts = as_epoch(p.get(field))
            return missing if ts is None else test(ts, value, cs, now)
        return epoch_now

    def epoch(p: Profile, now: int, tk: _TextKeys, nk: _Numbers) -> bool:
        ts = as_epoch(p.get(field))
        return missing if ts is None else test(ts, value, cs)
    return epoch


def _direct(node: Node, how: int, data: Any) -> Direct | None:
    """A specialised evaluator for a guard that does not go through other guards (None for
    ``all`` / ``any`` / ``not``), so a match calls it without dispatching on the guard's kind."""
    if how == _LEAF:
        if isinstance(node, Leaf) and node.field_type is FieldType.DATETIME and node.op in _EPOCH_OPS:
            return _epoch_leaf(node)
        return lambda p, now, tk, nk: node.evaluate(p, now)  # type: ignore[union-attr]
    if how == _KEYS:
        field, values = data
        return lambda p, now, tk, nk: not values.isdisjoint(tk[field])
    if how == _NUMK:
        field, value = data
        return lambda p, now, tk, nk: nk[field] == value
    if how == _RNGK:
        field, (lo, lo_open, hi, hi_open) = data
        if lo_open and hi_open:
            return lambda p, now, tk, nk: (x := nk[field]) is not None and lo < x < hi
        if lo_open:
            return lambda p, now, tk, nk: (x := nk[field]) is not None and lo < x <= hi
        if hi_open:
            return lambda p, now, tk, nk: (x := nk[field]) is not None and lo <= x < hi
        return lambda p, now, tk, nk: (x := nk[field]) is not None and lo <= x <= hi
    if how == _NEGK:
        field, is_num, values, missing = data
        if is_num:
            def neg_num(p: Profile, now: int, tk: _TextKeys, nk: _Numbers) -> bool:
                if p.get(field) is None:
                    return missing
                num = nk[field]
                return num is None or num not in values
            return neg_num

        def neg_text(p: Profile, now: int, tk: _TextKeys, nk: _Numbers) -> bool:
            if p.get(field) is None:
                return missing
            return values.isdisjoint(tk[field])
        return neg_text
    return None


def _guard_plan(node: Node) -> tuple[int, Any]:
    """(how, data) for a guard that is evaluated without its children: from field keys when the leaf
    has an exact posting or is a negated equality (same exactness argument as the postings), else
    by the node itself."""
    neg = negation(node)
    if neg is not None:
        kind, field, keys, missing = neg
        return _NEGK, (field, kind == _NEG_NUM, frozenset(keys), missing)
    if isinstance(node, Leaf):
        acc = _leaf_access(node, True)
        if acc is not None and acc[3]:
            kind, field, keys = acc[0], acc[1], acc[2]
            if kind == _EQ:
                return _KEYS, (field, frozenset(keys))
            if kind == _NUM:
                return _NUMK, (field, keys[0])
            if kind == _RNG:
                return _RNGK, (field, keys[0])
    return _LEAF, None


# A plan: (entries, switches). An entry is (conjunct guard id, its direct evaluator or None, rule ids
# decided there or None, sub-plan or None); a switch is (field, {text key: entries}) for the sibling
# conjuncts that are text equality tests on one field, so they cost one lookup per profile key
# instead of one call each.
Plan = tuple


def _build_plan(groups: Mapping[int, _Group], guards: Mapping[int, _Guard]) -> Plan:
    """The guarded groups of one posting as a trie over their conjuncts, so a false conjunct is
    evaluated once and skips every guard that needs it.

    A guard ``all(k1, ..., kn)`` is the conjunction of its children's guards; any other guard is a
    single conjunct. Each guard's conjuncts are ordered most shared first (ties by id), so guards
    with a common conjunct share a trie path: in a posting ``department == "Sales"`` holding
    ``all(manager, grade >= 5)``, ``all(manager, tenure > 3)`` and ``manager`` alone, a profile
    that is not a manager costs one memo lookup instead of three guard evaluations. Conjunction is
    commutative and guards have no side effects, so the order changes cost only, never the result.
    """
    freq: dict[int, int] = {}
    items: list[tuple[set[int], set[str]]] = []
    for gid, grp in groups.items():
        guard = guards[gid]
        conj = set(guard.kids) if guard.how == _ALL and guard.kids else {gid}  # type: ignore[arg-type]
        for c in conj:
            freq[c] = freq.get(c, 0) + 1
        items.append((conj, grp.rids))
    root: dict[int, list] = {}
    for conj, rids in items:
        node = root
        order = sorted(conj, key=lambda c: (-freq[c], c))
        last = len(order) - 1
        for i, c in enumerate(order):
            entry = node.get(c)
            if entry is None:
                entry = node[c] = [set(), {}]
            if i == last:
                entry[0] |= rids
            node = entry[1]

    def freeze(node: dict[int, list]) -> Plan:
        entries = []
        by_field: dict[str, list[tuple]] = {}
        for c, (rids, kids) in sorted(node.items(), key=lambda kv: (-freq[kv[0]], kv[0])):
            entry = (c, guards[c].fn, frozenset(rids) if rids else None, freeze(kids) if kids else None)
            guard = guards[c]
            if guard.how == _KEYS:
                by_field.setdefault(guard.data[0], []).append(entry)
            else:
                entries.append(entry)
        switches = []
        for field, keyed in by_field.items():
            table: dict[str, list[tuple]] = {}
            for entry in keyed:
                for value in guards[entry[0]].data[1]:
                    table.setdefault(value, []).append(entry)
            switches.append((field, {k: tuple(v) for k, v in table.items()}))
        return tuple(entries), tuple(switches)

    return freeze(root)


class _Bucket:
    """The rules of one posting key: decided by the hit (``exact``) or by a shared guard (``guarded``).

    ``plan`` is the guarded groups as a conjunct trie (:func:`_build_plan`), built on first use and
    dropped whenever ``guarded`` changes, so maintenance stays O(size of the rule).
    """

    __slots__ = ("exact", "guarded", "plan")

    def __init__(self) -> None:
        self.exact: set[str] = set()
        self.guarded: dict[int, _Group] = {}  # guard id -> group
        self.plan: Plan | None = None

    def __bool__(self) -> bool:
        return bool(self.exact or self.guarded)

    def rule_ids(self) -> Iterator[str]:
        yield from self.exact
        for g in self.guarded.values():
            yield from g.rids


class _FieldIndex:
    """Postings of one profile field."""

    __slots__ = ("eq", "num", "pre", "suf", "sub", "rng", "pre_lens", "pre_len_count", "suf_lens",
                 "suf_len_count", "rng_points", "rng_point_count", "rng_memo", "neg_text", "neg_num",
                 "neg_text_all", "neg_num_all", "neg_missing", "neg_memo", "text", "number", "eq_only")

    def __init__(self) -> None:
        self.eq: dict[str, _Bucket] = {}
        self.num: dict[float, _Bucket] = {}
        self.pre: dict[str, _Bucket] = {}
        self.suf: dict[str, _Bucket] = {}
        self.sub: dict[str, _Bucket] = {}
        self.rng: dict[tuple, _Bucket] = {}
        self.pre_len_count: dict[int, int] = {}  # prefix length -> number of distinct indexed prefixes
        self.pre_lens: tuple[int, ...] = ()  # sorted keys of pre_len_count
        self.suf_len_count: dict[int, int] = {}
        self.suf_lens: tuple[int, ...] = ()
        self.rng_points: list[float] = []  # sorted distinct interval endpoints
        self.rng_point_count: dict[float, int] = {}
        self.rng_memo: dict[int, _Bucket] = {}  # position among rng_points -> merged bucket
        self.neg_text: dict[str, set[str]] = {}  # key -> complement rules posted under it
        self.neg_num: dict[float, set[str]] = {}
        self.neg_text_all: set[str] = set()  # every text complement rule of the field
        self.neg_num_all: set[str] = set()
        self.neg_missing: set[str] = set()  # complement rules true on a missing value
        # posted text key -> neg_text_all minus the rules posted under it (a value with one key),
        # built on first use and cleared when the field's complements change
        self.neg_memo: dict[str, frozenset[str]] = {}
        self.text = False  # any text posting or text complement
        self.number = False
        self.eq_only = False  # text equality postings and nothing else but complements (fast path)

    def table(self, kind: int) -> dict[Any, _Bucket]:
        return (self.eq, self.num, self.pre, self.suf, self.sub, self.rng)[kind]

    def refresh(self) -> None:
        self.text = bool(self.eq or self.pre or self.suf or self.sub or self.neg_text_all)
        self.number = bool(self.num or self.rng or self.neg_num_all)
        self.eq_only = bool(self.eq) and not (self.pre or self.suf or self.sub or self.number)

    def empty(self) -> bool:
        return not (self.text or self.number or self.neg_missing)

    def rng_bucket(self, x: float) -> _Bucket:
        """Merged groups of the intervals containing ``x`` (not NaN), memoised per position."""
        points = self.rng_points
        i = bisect_left(points, x)
        pos = 2 * i + 1 if i < len(points) and points[i] == x else 2 * i
        merged = self.rng_memo.get(pos)
        if merged is None:
            merged = _Bucket()
            for (lo, lo_open, hi, hi_open), bucket in self.rng.items():
                if (lo < x if lo_open else lo <= x) and (x < hi if hi_open else x <= hi):
                    merged.exact |= bucket.exact
                    for gid, grp in bucket.guarded.items():
                        have = merged.guarded.get(gid)
                        if have is None:
                            merged.guarded[gid] = _Group(grp.node, set(grp.rids))
                        else:
                            have.rids |= grp.rids
            self.rng_memo[pos] = merged
        return merged


def _lens_add(counts: dict[int, int], n: int) -> tuple[int, ...] | None:
    c = counts.get(n, 0)
    counts[n] = c + 1
    return tuple(sorted(counts)) if c == 0 else None


def _lens_remove(counts: dict[int, int], n: int) -> tuple[int, ...] | None:
    c = counts[n] - 1
    if c:
        counts[n] = c
        return None
    del counts[n]
    return tuple(sorted(counts))


class RuleIndex:
    """Rules split into shared postings and shared guards; see the module docstring.

    ``match(profile)`` returns exactly ``{rid for rid, cond in rules if cond.evaluate(profile, now)}``.
    """

    __slots__ = ("_conds", "_terms", "_residual", "_exact", "_fields", "_free", "_guards", "_guard_ids",
                 "_next_gid", "_time_relative", "exact_shortcut", "_free_plan")

    def __init__(
        self, rules: Iterable[tuple[str, CompiledCondition]] = (), *, exact_shortcut: bool = True
    ) -> None:
        """``exact_shortcut``: let exact postings decide rules without evaluation; when False every
        posting keeps its branch as guard and negations are evaluated (a diagnostic)."""
        self.exact_shortcut = exact_shortcut
        self._conds: dict[str, CompiledCondition] = {}
        self._terms: dict[str, tuple[tuple[int, Any, Any, int | None], ...]] = {}
        self._residual: set[str] = set()
        self._exact: set[str] = set()
        self._fields: dict[str, _FieldIndex] = {}
        self._free: dict[int, _Group] = {}  # guard id -> rules with a posting-free term of that guard
        self._free_plan: Plan | None = None  # _free as a conjunct trie, built on first use
        self._guards: dict[int, _Guard] = {}
        self._guard_ids: dict[tuple, int] = {}  # signature -> guard id
        self._next_gid = 0
        self._time_relative = 0
        for rule_id, cond in rules:
            self.add(rule_id, cond)

    # -- guards

    def _guard_ref(self, node: Node) -> tuple[int, Node]:
        """The id of the guard with ``node``'s signature (registered, children first), referenced once more."""
        sig = signature(node)
        gid = self._guard_ids.get(sig)
        if gid is not None:
            guard = self._guards[gid]
            guard.refs += 1
            return gid, guard.node
        how, data = _guard_plan(node)
        kids: tuple[int, ...] | None = None
        if how != _LEAF:
            pass
        elif isinstance(node, (All, Any_)):
            kids = tuple(self._guard_ref(c)[0] for c in node.children)
            how = _ALL if isinstance(node, All) else _ANY
        elif isinstance(node, Not):
            kids, how = (self._guard_ref(node.child)[0],), _NOT
        gid = self._next_gid
        self._next_gid += 1
        self._guard_ids[sig] = gid
        self._guards[gid] = _Guard(sig, node, how, kids, data)
        return gid, node

    def _guard_unref(self, gid: int) -> None:
        guard = self._guards[gid]
        guard.refs -= 1
        if not guard.refs:
            del self._guards[gid]
            del self._guard_ids[guard.sig]
            for kid in guard.kids or ():
                self._guard_unref(kid)

    def _field(self, field: str) -> _FieldIndex:
        fidx = self._fields.get(field)
        if fidx is None:
            fidx = self._fields[field] = _FieldIndex()
        return fidx

    # -- maintenance

    def _spread(self, kind: int, field: str) -> float:
        """Distinct keys posted so far on ``field``'s equality table (>= 1): see ``decompose``."""
        fidx = self._fields.get(field)
        if fidx is None:
            return 1.0
        table = fidx.eq if kind == _EQ else fidx.num if kind == _NUM else fidx.pre if kind == _PRE else fidx.suf
        return float(max(1, len(table)))

    def add(self, rule_id: str, cond: CompiledCondition) -> None:
        """Index a rule (replacing any rule with the same id). O(size of the rule)."""
        if rule_id in self._conds:
            self.remove(rule_id)
        self._conds[rule_id] = cond
        if cond.time_relative:
            self._time_relative += 1
        root = cond.root
        neg = negation(root, self.exact_shortcut)
        if neg is not None:
            kind, field, keys, missing = neg
            fidx = self._field(field)
            table, every = (fidx.neg_text, fidx.neg_text_all) if kind == _NEG_TEXT else \
                (fidx.neg_num, fidx.neg_num_all)
            every.add(rule_id)
            for key in keys:
                table.setdefault(key, set()).add(rule_id)
            fidx.neg_memo.clear()
            if missing:
                fidx.neg_missing.add(rule_id)
            fidx.refresh()
            self._terms[rule_id] = ((kind, field, keys, int(missing)),)
            self._exact.add(rule_id)
            return
        found = decompose(root, self.exact_shortcut, self._spread)
        terms: list[Term] = found[0] if found is not None else [(_FREE, None, None, root)]
        if found is None:
            self._residual.add(rule_id)
        records: dict[tuple[int, Any, Any, int | None], None] = {}
        for kind, field, key, guard in terms:
            if guard is None:
                gid, node = None, None
            else:
                gid, node = self._guard_ref(guard)
            record = (kind, field, key, gid)
            if record in records:  # the same term twice (e.g. any(x, x)): registered once
                if gid is not None:
                    self._guard_unref(gid)
                continue
            records[record] = None
            if kind == _FREE:
                _group_add(self._free, gid, node, rule_id)  # type: ignore[arg-type]
                self._free_plan = None
                continue
            fidx = self._field(field)  # type: ignore[arg-type]
            table = fidx.table(kind)
            bucket = table.get(key)
            if bucket is None:
                bucket = table[key] = _Bucket()
                if kind == _PRE:
                    lens = _lens_add(fidx.pre_len_count, len(key))
                    if lens is not None:
                        fidx.pre_lens = lens
                elif kind == _SUF:
                    lens = _lens_add(fidx.suf_len_count, len(key))
                    if lens is not None:
                        fidx.suf_lens = lens
                elif kind == _RNG:
                    for point in (key[0], key[2]):
                        n = fidx.rng_point_count.get(point, 0)
                        fidx.rng_point_count[point] = n + 1
                        if not n:
                            insort(fidx.rng_points, point)
            if kind == _RNG:
                fidx.rng_memo.clear()
            if gid is None:
                bucket.exact.add(rule_id)
            else:
                _group_add(bucket.guarded, gid, node, rule_id)  # type: ignore[arg-type]
                bucket.plan = None
            fidx.refresh()
        self._terms[rule_id] = tuple(records)
        if all(gid is None for _, _, _, gid in records):
            self._exact.add(rule_id)

    def remove(self, rule_id: str) -> None:
        """Forget a rule; unknown ids are ignored. O(size of the rule)."""
        cond = self._conds.pop(rule_id, None)
        if cond is None:
            return
        if cond.time_relative:
            self._time_relative -= 1
        self._residual.discard(rule_id)
        self._exact.discard(rule_id)
        for kind, field, key, gid in self._terms.pop(rule_id):
            if kind == _FREE:
                _group_discard(self._free, gid, rule_id)
                self._free_plan = None
                self._guard_unref(gid)  # type: ignore[arg-type]
                continue
            fidx = self._fields[field]
            if kind in (_NEG_TEXT, _NEG_NUM):
                table, every = (fidx.neg_text, fidx.neg_text_all) if kind == _NEG_TEXT else \
                    (fidx.neg_num, fidx.neg_num_all)
                every.discard(rule_id)
                fidx.neg_missing.discard(rule_id)
                fidx.neg_memo.clear()
                for k in key:
                    posted = table[k]
                    posted.discard(rule_id)
                    if not posted:
                        del table[k]
            else:
                table = fidx.table(kind)
                bucket = table[key]
                if gid is None:
                    bucket.exact.discard(rule_id)
                else:
                    _group_discard(bucket.guarded, gid, rule_id)
                    bucket.plan = None
                    self._guard_unref(gid)
                if kind == _RNG:
                    fidx.rng_memo.clear()
                if not bucket:
                    del table[key]
                    if kind == _PRE:
                        lens = _lens_remove(fidx.pre_len_count, len(key))
                        if lens is not None:
                            fidx.pre_lens = lens
                    elif kind == _SUF:
                        lens = _lens_remove(fidx.suf_len_count, len(key))
                        if lens is not None:
                            fidx.suf_lens = lens
                    elif kind == _RNG:
                        for point in (key[0], key[2]):
                            n = fidx.rng_point_count[point] - 1
                            if n:
                                fidx.rng_point_count[point] = n
                            else:
                                del fidx.rng_point_count[point]
                                del fidx.rng_points[bisect_left(fidx.rng_points, point)]
            fidx.refresh()
            if fidx.empty():
                del self._fields[field]

    def discard(self, rule_id: str) -> None:
        """Alias of :meth:`remove` (which already ignores unknown ids)."""
        self.remove(rule_id)

    # -- introspection

    def __len__(self) -> int:
        return len(self._conds)

    def __contains__(self, rule_id: object) -> bool:
        return rule_id in self._conds

    def __iter__(self) -> Iterator[str]:
        return iter(self._conds)

    def get(self, rule_id: str) -> CompiledCondition | None:
        return self._conds.get(rule_id)

    def is_residual(self, rule_id: str) -> bool:
        """True when the rule has no posting: its condition is evaluated (once per distinct
        condition) for every profile."""
        return rule_id in self._residual

    def stats(self) -> dict[str, int]:
        """Sizes, for metrics and benchmarks."""
        terms = [t for ts in self._terms.values() for t in ts]
        return {
            "rules": len(self._conds),
            "indexed": len(self._conds) - len(self._residual),
            "residual": len(self._residual),
            "exact": len(self._exact),
            "complement": sum(1 for ts in self._terms.values() if ts[0][0] in (_NEG_TEXT, _NEG_NUM)),
            "fields": len(self._fields),
            "postings": sum(len(t[2]) if t[0] in (_NEG_TEXT, _NEG_NUM) else 1
                            for t in terms if t[0] != _FREE),
            "guards": len(self._guards),
            "free_guards": len(self._free),
        }

    # -- matching

    def _hit_buckets(self, fidx: _FieldIndex, actual: Any, keys: Iterable[str] | None = None) -> Iterator[_Bucket]:
        """The posting buckets a present value hits (complement postings not included); ``keys``:
        ``_text_keys(actual)`` when the caller already has them."""
        if fidx.text:
            if keys is None:
                keys = _text_keys(actual)
            eq = fidx.eq
            if eq:
                for k in keys:
                    bucket = eq.get(k)
                    if bucket is not None:
                        yield bucket
            for table, lens, flip in ((fidx.pre, fidx.pre_lens, False), (fidx.suf, fidx.suf_lens, True)):
                if table:
                    for k in keys:
                        if flip:
                            k = k[::-1]
                        size = len(k)
                        for n in lens:
                            if n > size:
                                break
                            bucket = table.get(k[:n])
                            if bucket is not None:
                                yield bucket
            if fidx.sub:
                for v, bucket in fidx.sub.items():
                    for k in keys:
                        if v in k:
                            yield bucket
                            break
        if fidx.num or fidx.rng:
            num = _number_key(actual)
            if num is not None and num == num:
                if fidx.num:
                    bucket = fidx.num.get(num)
                    if bucket is not None:
                        yield bucket
                if fidx.rng:
                    yield fidx.rng_bucket(num)

    def candidates(self, profile: Profile) -> dict[str, CompiledCondition]:
        """Rules with a posting the profile hits (complement, posting-free and residual rules not
        included)."""
        out: dict[str, CompiledCondition] = {}
        conds = self._conds
        get = profile.get
        for field, fidx in self._fields.items():
            actual = get(field)
            if actual is None:
                continue  # every posted leaf has on_missing False
            for bucket in self._hit_buckets(fidx, actual):
                for rid in bucket.rule_ids():
                    out[rid] = conds[rid]
        return out

    def match(self, profile: Profile, now: int | None = None) -> set[str]:
        """Ids of the rules whose condition holds for ``profile`` (at ``now``, epoch seconds)."""
        now_i = 0
        if self._time_relative:  # one instant for every rule of this evaluation
            now_i = int(time.time()) if now is None else int(now)
        hits: set[str] = set()
        memo: dict[int, bool] = {}
        guards = self._guards
        get = profile.get
        text_keys = _TextKeys()
        text_keys.profile = profile
        numbers = _Numbers()
        numbers.profile = profile

        def ev(gid: int) -> bool:
            """A guard through its children's guards (``all`` / ``any`` / ``not``), or directly."""
            ok = memo.get(gid)
            if ok is None:
                guard = guards[gid]
                fn = guard.fn
                if fn is not None:
                    ok = fn(profile, now_i, text_keys, numbers)
                elif guard.how == _ALL:
                    ok = True
                    for k in guard.kids:  # type: ignore[union-attr]
                        r = memo.get(k)
                        if not (ev(k) if r is None else r):
                            ok = False
                            break
                elif guard.how == _ANY:
                    ok = False
                    for k in guard.kids:  # type: ignore[union-attr]
                        r = memo.get(k)
                        if ev(k) if r is None else r:
                            ok = True
                            break
                else:
                    ok = not ev(guard.kids[0])  # type: ignore[index]
                memo[gid] = ok
            return ok

        add_hits = hits.update
        memo_get = memo.get

        def run(plan: Plan) -> None:
            entries, switches = plan
            for cg, fn, rids, kids in entries:
                ok = memo_get(cg)
                if ok is None:
                    ok = memo[cg] = fn(profile, now_i, text_keys, numbers) if fn is not None else ev(cg)
                if ok:
                    if rids is not None:
                        add_hits(rids)
                    if kids is not None:
                        run(kids)
            for field, table in switches:  # inline: most plans have one, most lookups miss
                for key in text_keys[field]:
                    hit = table.get(key)
                    if hit is not None:
                        for _, _, rids, kids in hit:  # the equality holds: the key is one of its values
                            if rids is not None:
                                add_hits(rids)
                            if kids is not None:
                                run(kids)

        for field, fidx in self._fields.items():
            actual = get(field)
            if actual is None:
                if fidx.neg_missing:
                    hits |= fidx.neg_missing
                continue
            if fidx.text:  # the field's keys, also kept for the guards that read them
                keys = text_keys[field] = (actual.strip().casefold(),) if type(actual) is str else _text_keys(actual)
            else:
                keys = None
            if fidx.eq_only:
                buckets: Iterable[_Bucket | None] = map(fidx.eq.get, keys)  # type: ignore[arg-type]
            else:
                buckets = self._hit_buckets(fidx, actual, keys)
            for bucket in buckets:
                if bucket is None:
                    continue
                if bucket.exact:
                    add_hits(bucket.exact)
                if bucket.guarded:
                    plan = bucket.plan
                    if plan is None:
                        plan = bucket.plan = _build_plan(bucket.guarded, guards)
                    run(plan)
            if fidx.neg_text_all:
                neg = fidx.neg_text
                if type(keys) is tuple and len(keys) == 1:  # a scalar value (a list's keys are a set)
                    k = keys[0]
                    if k in neg:
                        memo_k = fidx.neg_memo.get(k)
                        if memo_k is None:
                            memo_k = fidx.neg_memo[k] = frozenset(fidx.neg_text_all - neg[k])
                        hits |= memo_k
                    else:
                        hits |= fidx.neg_text_all
                else:
                    comp = None
                    for k in keys:  # type: ignore[union-attr]
                        posted = neg.get(k)
                        if posted is not None:
                            if comp is None:
                                comp = fidx.neg_text_all - posted
                            else:
                                comp -= posted
                    hits |= fidx.neg_text_all if comp is None else comp
            if fidx.neg_num_all:
                num = numbers[field]
                posted = fidx.neg_num.get(num) if num is not None else None
                hits |= fidx.neg_num_all if posted is None else fidx.neg_num_all - posted
        if self._free:
            plan = self._free_plan
            if plan is None:
                plan = self._free_plan = _build_plan(self._free, guards)
            run(plan)
        return hits


class SegmentRuleIndex:
    """A :class:`RuleIndex` that also knows each rule's segment.

    ``match_segments(profile)`` answers ``{segment_id: sorted matched rule ids}`` for every segment
    with at least one matching rule, in one pass over the matches (the same rule ids
    :func:`processor.membership.decide.matching_rules` returns per segment).
    """

    __slots__ = ("index", "_segment_of")

    def __init__(self) -> None:
        self.index = RuleIndex()
        self._segment_of: dict[str, str] = {}

    @classmethod
    def from_active(cls, active: Mapping[str, Sequence[tuple[str, CompiledCondition]]]) -> SegmentRuleIndex:
        """Index a site's active rules (managed segment -> ((rule_id, compiled), ...))."""
        out = cls()
        for segment_id, rules in active.items():
            for rule_id, cond in rules:
                out.add(rule_id, segment_id, cond)
        return out

    def add(self, rule_id: str, segment_id: str, cond: CompiledCondition) -> None:
        """Index a rule of a segment (replacing any rule with the same id)."""
        self.index.add(rule_id, cond)
        self._segment_of[rule_id] = segment_id

    def remove(self, rule_id: str) -> None:
        """Forget a rule; unknown ids are ignored."""
        self.index.remove(rule_id)
        self._segment_of.pop(rule_id, None)

    def segment_of(self, rule_id: str) -> str | None:
        return self._segment_of.get(rule_id)

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, rule_id: object) -> bool:
        return rule_id in self._segment_of

    def match(self, profile: Profile, now: int | None = None) -> set[str]:
        """Ids of the matching rules, whatever their segment."""
        return self.index.match(profile, now)

    def match_segments(self, profile: Profile, now: int | None = None) -> dict[str, tuple[str, ...]]:
        """``{segment_id: matched rule ids, sorted}`` for the segments with at least one match."""
        grouped: dict[str, list[str]] = {}
        seg = self._segment_of
        for rid in sorted(self.index.match(profile, now)):
            sid = seg[rid]
            bucket = grouped.get(sid)
            if bucket is None:
                grouped[sid] = [rid]
            else:
                bucket.append(rid)
        return {sid: tuple(rids) for sid, rids in grouped.items()}
