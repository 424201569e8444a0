"""An incremental index over compiled rules: evaluate a profile against candidates only.

A site may hold up to 10,000 rules; evaluating every rule for every profile
event costs O(rules). Most rules, however, *require* some simple text
comparison: a root ``equals`` / ``in`` / ``starts_with`` leaf, or such a leaf
directly under a root ``all``. :class:`RuleIndex` posts each rule under the
normalised value(s) of one such *necessary* leaf (field -> value -> rules)
and, for a profile, looks up the profile's own values to collect candidate
rules. Candidates plus the *residual* rules (those with no necessary
indexable leaf) are then evaluated in full, so the index only has to
over-approximate: a rule missing from the candidates when it would match is a
bug, an extra candidate is merely wasted work. One shortcut: a rule that *is*
a single case-insensitive equality / ``in`` / prefix leaf is decided by the
posting hit itself (the lookup keys are computed exactly as the operator reads
the value), so it is accepted without evaluation (``exact_shortcut``).

Which leaves are necessary::

    necessary(leaf)       = the leaf, if indexable
    necessary(all(c...))  = the most selective necessary(c) among the children
    necessary(any(c...))  = the union of necessary(c) if *every* child has one
    necessary(not(c))     = none

(the ``any`` case is a small generalisation: ``any(all(dept=a, ...),
all(city=b, ...))`` is a candidate when the department is ``a`` or the city is
``b``).

Indexable leaves (all with ``on_missing`` False: a leaf that matches missing
data is never a necessary condition):

* text ``equals`` (text, textarea, menu fields) -> its normalised value;
* ``in`` and multi-select ``any_of`` -> each normalised value;
* multi-select ``all_of`` -> one of its values (every one is required);
* number ``equals`` -> the float value (compared numerically, as the operator does);
* ``starts_with`` -> its normalised prefix; a profile value is looked up under
  each of its prefixes whose length is an indexed prefix length for the field.

Case-sensitive leaves are posted under the casefolded value, a superset key:
``str.casefold`` folds code point by code point, so ``a == v`` implies
``casefold(a) == casefold(v)`` and ``a.startswith(v)`` implies
``casefold(a).startswith(casefold(v))``. Profile values are turned into keys
exactly as the text operators read them (:func:`processor.rules.values.as_text`
for scalars, ``norm_text(str(item))`` for each item of a list), always
case-insensitively.

Adding or removing a rule touches only that rule's postings (O(size of the
rule)); nothing is ever rebuilt. The module is pure: no Kafka, no Faust.
"""

from __future__ import annotations

import inspect
import time
from typing import Any, Iterable, Iterator, Mapping, Sequence

from processor.rules.compiler import All, Any_, CompiledCondition, Leaf, Node
from processor.rules.fields import FieldType
from processor.rules.values import as_number, as_text

Profile = Mapping[str, Any]

_TEXT_EQ_TYPES = frozenset({FieldType.TEXT, FieldType.TEXTAREA, FieldType.MENU})

# posting kinds
_EQ = 0  # normalised text value -> rules
_NUM = 1  # float -> rules
_PRE = 2  # normalised text prefix -> rules

# ------------------------------------------------------------------ evaluation


def _evaluate_takes_now() -> bool:
    try:
        params = inspect.signature(CompiledCondition.evaluate).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without signatures
        return False
    if "now" in params:
        return True
    positional = [p for p in params.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3 or any(p.kind is p.VAR_POSITIONAL for p in params.values())


EVALUATE_TAKES_NOW = _evaluate_takes_now()


def _evaluate(cond: CompiledCondition, profile: Profile, now: int | None) -> bool:
    """``cond.evaluate(profile, now)`` when ``evaluate`` accepts ``now`` (detected once), else without."""
    if EVALUATE_TAKES_NOW:
        return cond.evaluate(profile, now)  # type: ignore[call-arg]
    return cond.evaluate(profile)


# ------------------------------------------------------------------ keys


def _casefold(text: str) -> str:
    return text.casefold()


def _leaf_postings(leaf: Leaf) -> tuple[frozenset[tuple[int, str, Any]], float] | None:
    """(postings, cost) of an indexable leaf, or None. Lower cost = more selective."""
    if leaf.on_missing:
        return None
    op, ftype, value, field = leaf.op, leaf.field_type, leaf.value, leaf.field
    fold = _casefold if leaf.case_sensitive else None
    if op == "equals":
        if ftype is FieldType.NUMBER:
            if isinstance(value, float):
                return frozenset({(_NUM, field, value)}), 1.0
            return None
        if ftype in _TEXT_EQ_TYPES and isinstance(value, str):
            return frozenset({(_EQ, field, fold(value) if fold else value)}), 1.0
        return None
    if op in ("in", "any_of"):
        if not isinstance(value, frozenset) or not value or not all(isinstance(v, str) for v in value):
            return None
        keys = {fold(v) if fold else v for v in value}
        return frozenset((_EQ, field, k) for k in keys), float(len(keys))
    if op == "all_of":
        if not isinstance(value, frozenset) or not value or not all(isinstance(v, str) for v in value):
            return None
        # every value is required: one is enough; prefer a non-empty, then the longest (likely rarest)
        pick = max(value, key=lambda v: (bool(v), len(v), v))
        return frozenset({(_EQ, field, fold(pick) if fold else pick)}), 1.0
    if op == "starts_with":
        if ftype not in (FieldType.TEXT, FieldType.TEXTAREA) or not isinstance(value, str):
            return None
        key = fold(value) if fold else value
        # a prefix is less selective than a whole value, and the shorter the worse
        cost = 2.0 if len(key) >= 4 else 4.0 if key else 64.0
        return frozenset({(_PRE, field, key)}), cost
    return None


def is_exact_leaf(node: Node) -> bool:
    """True when a posting hit of this (root) leaf *is* its result, so it needs no evaluation.

    Holds for case-insensitive ``equals`` / ``in`` / ``starts_with``, number ``equals`` and ``any_of``
    without a blank value (``any_of`` ignores blank items); the profile keys are computed exactly as
    these operators read the value. Not for case-sensitive leaves (posted under a superset key) nor
    ``all_of`` (posted under one of its values).
    """
    if not isinstance(node, Leaf) or node.on_missing or node.case_sensitive or node.uses_now:
        return False
    op = node.op
    if op == "any_of":
        return isinstance(node.value, frozenset) and all(node.value)
    return op in ("equals", "in", "starts_with")


def necessary_postings(node: Node) -> tuple[frozenset[tuple[int, str, Any]], float] | None:
    """Postings of which at least one is hit by every profile the node matches (or None), and their cost."""
    if isinstance(node, Leaf):
        return _leaf_postings(node)
    if isinstance(node, All):
        best: tuple[frozenset[tuple[int, str, Any]], float] | None = None
        for child in node.children:
            found = necessary_postings(child)
            if found is not None and (best is None or found[1] < best[1]):
                best = found
        return best
    if isinstance(node, Any_):
        union: set[tuple[int, str, Any]] = set()
        cost = 0.0
        for child in node.children:
            found = necessary_postings(child)
            if found is None:
                return None
            union |= found[0]
            cost += found[1]
        return frozenset(union), cost
    return None  # Not, or a node type this index does not know


def _text_keys(actual: Any) -> Iterable[str]:
    """The profile value as the text operators see it, case-insensitively (one key per list item)."""
    if isinstance(actual, list):
        return {str(a).strip().casefold() for a in actual}
    return (as_text(actual, False),)


def _number_key(actual: Any) -> float | None:
    try:
        return as_number(actual)
    except (OverflowError, ValueError):  # a huge int; the operator itself cannot compare it either
        return None


# ------------------------------------------------------------------ index


class _FieldIndex:
    """Postings of one profile field."""

    __slots__ = ("eq", "num", "pre", "pre_lens", "pre_len_count")

    def __init__(self) -> None:
        self.eq: dict[str, dict[str, CompiledCondition]] = {}
        self.num: dict[float, dict[str, CompiledCondition]] = {}
        self.pre: dict[str, dict[str, CompiledCondition]] = {}
        self.pre_len_count: dict[int, int] = {}  # prefix length -> number of distinct indexed prefixes
        self.pre_lens: tuple[int, ...] = ()  # sorted keys of pre_len_count

    def empty(self) -> bool:
        return not (self.eq or self.num or self.pre)


class RuleIndex:
    """Rules indexed by a necessary equality / ``in`` / prefix leaf; the rest evaluated every time.

    ``match(profile)`` returns exactly ``{rid for rid, cond in rules if cond.evaluate(profile, now)}``.
    """

    __slots__ = ("_conds", "_postings", "_residual", "_exact", "_fields", "_time_relative", "exact_shortcut")

    def __init__(
        self, rules: Iterable[tuple[str, CompiledCondition]] = (), *, exact_shortcut: bool = True
    ) -> None:
        """``exact_shortcut``: accept a hit of a rule that is a single exact leaf without evaluating it."""
        self.exact_shortcut = exact_shortcut
        self._exact: set[str] = set()
        self._conds: dict[str, CompiledCondition] = {}
        self._postings: dict[str, frozenset[tuple[int, str, Any]]] = {}
        self._residual: dict[str, CompiledCondition] = {}
        self._fields: dict[str, _FieldIndex] = {}
        self._time_relative = 0
        for rule_id, cond in rules:
            self.add(rule_id, cond)

    # -- maintenance

    def add(self, rule_id: str, cond: CompiledCondition) -> None:
        """Index a rule (replacing any rule with the same id). O(size of the rule)."""
        if rule_id in self._conds:
            self.remove(rule_id)
        self._conds[rule_id] = cond
        if getattr(cond, "time_relative", False):
            self._time_relative += 1
        found = necessary_postings(cond.root)
        if found is None:
            self._residual[rule_id] = cond
            return
        postings = found[0]
        self._postings[rule_id] = postings
        if self.exact_shortcut and is_exact_leaf(cond.root):
            self._exact.add(rule_id)
        for kind, field, key in postings:
            fidx = self._fields.get(field)
            if fidx is None:
                fidx = self._fields[field] = _FieldIndex()
            table: dict[Any, dict[str, CompiledCondition]] = (
                fidx.eq if kind == _EQ else fidx.num if kind == _NUM else fidx.pre
            )
            bucket = table.get(key)
            if bucket is None:
                bucket = table[key] = {}
                if kind == _PRE:
                    n = len(key)
                    count = fidx.pre_len_count.get(n, 0)
                    fidx.pre_len_count[n] = count + 1
                    if count == 0:
                        fidx.pre_lens = tuple(sorted(fidx.pre_len_count))
            bucket[rule_id] = cond

    def remove(self, rule_id: str) -> None:
        """Forget a rule; unknown ids are ignored. O(size of the rule)."""
        cond = self._conds.pop(rule_id, None)
        if cond is None:
            return
        if getattr(cond, "time_relative", False):
            self._time_relative -= 1
        if self._residual.pop(rule_id, None) is not None:
            return
        self._exact.discard(rule_id)
        for kind, field, key in self._postings.pop(rule_id):
            fidx = self._fields[field]
            table: dict[Any, dict[str, CompiledCondition]] = (
                fidx.eq if kind == _EQ else fidx.num if kind == _NUM else fidx.pre
            )
            bucket = table[key]
            del bucket[rule_id]
            if not bucket:
                del table[key]
                if kind == _PRE:
                    n = len(key)
                    count = fidx.pre_len_count[n] - 1
                    if count:
                        fidx.pre_len_count[n] = count
                    else:
                        del fidx.pre_len_count[n]
                        fidx.pre_lens = tuple(sorted(fidx.pre_len_count))
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
        """True when the rule has no necessary indexable leaf and is evaluated for every profile."""
        return rule_id in self._residual

    def stats(self) -> dict[str, int]:
        """Sizes, for metrics and benchmarks."""
        return {
            "rules": len(self._conds),
            "indexed": len(self._postings),
            "residual": len(self._residual),
            "exact": len(self._exact),
            "fields": len(self._fields),
            "postings": sum(len(p) for p in self._postings.values()),
        }

    # -- matching

    def candidates(self, profile: Profile) -> dict[str, CompiledCondition]:
        """Indexed rules that may match ``profile`` (residual rules not included)."""
        out: dict[str, CompiledCondition] = {}
        get = profile.get
        for field, fidx in self._fields.items():
            actual = get(field)
            if actual is None:
                continue  # every indexed leaf has on_missing False
            if fidx.eq or fidx.pre:
                keys = _text_keys(actual)
                eq = fidx.eq
                if eq:
                    for k in keys:
                        bucket = eq.get(k)
                        if bucket is not None:
                            out.update(bucket)
                pre = fidx.pre
                if pre:
                    lens = fidx.pre_lens
                    for k in keys:
                        size = len(k)
                        for n in lens:
                            if n > size:
                                break
                            bucket = pre.get(k[:n])
                            if bucket is not None:
                                out.update(bucket)
            if fidx.num:
                num = _number_key(actual)
                if num is not None:
                    bucket = fidx.num.get(num)
                    if bucket is not None:
                        out.update(bucket)
        return out

    def match(self, profile: Profile, now: int | None = None) -> set[str]:
        """Ids of the rules whose condition holds for ``profile`` (at ``now``, epoch seconds)."""
        if now is None and self._time_relative and EVALUATE_TAKES_NOW:
            now = int(time.time())  # one instant for every rule of this evaluation
        cands = self.candidates(profile)
        exact = self._exact
        if EVALUATE_TAKES_NOW:
            hits = {rid for rid, c in cands.items()
                    if rid in exact or c.evaluate(profile, now)}  # type: ignore[call-arg]
            hits.update(rid for rid, c in self._residual.items()
                        if c.evaluate(profile, now))  # type: ignore[call-arg]
        else:  # pragma: no cover - older CompiledCondition without ``now``
            hits = {rid for rid, c in cands.items() if rid in exact or _evaluate(c, profile, now)}
            hits.update(rid for rid, c in self._residual.items() if _evaluate(c, profile, now))
        return hits


class SegmentRuleIndex:
    """A :class:`RuleIndex` that also knows each rule's segment.

    ``match_segments(profile)`` answers ``{segment_id: sorted matched rule ids}`` for every segment
    with at least one matching rule, in one pass over the candidates (the same rule ids
    :func:`processor.membership.decide.matching_rules` returns per segment).
    """

    __slots__ = ("index", "_segment_of")

    def __init__(self) -> None:
        self.index = RuleIndex()
        self._segment_of: dict[str, str] = {}

    @classmethod
    def from_active(cls, active: Mapping[str, Sequence[tuple[str, CompiledCondition]]]) -> SegmentRuleIndex:
        """Index ``SiteCatalog.active`` (managed segment -> ((rule_id, compiled), ...))."""
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

    def sync(self, active: Mapping[str, Sequence[tuple[str, CompiledCondition]]]) -> tuple[int, int]:
        """Bring the index in line with ``active`` touching only changed rules; (added, removed).

        A rule is unchanged when it keeps its segment and the *same* compiled object, so this is
        incremental only if the caller keeps compiled objects of unchanged rules across catalog edits.
        """
        wanted: dict[str, tuple[str, CompiledCondition]] = {
            rid: (sid, cond) for sid, rules in active.items() for rid, cond in rules
        }
        removed = 0
        for rid in [r for r in self._segment_of if r not in wanted]:
            self.remove(rid)
            removed += 1
        added = 0
        for rid, (sid, cond) in wanted.items():
            if self._segment_of.get(rid) != sid or self.index.get(rid) is not cond:
                self.add(rid, sid, cond)
                added += 1
        return added, removed

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
