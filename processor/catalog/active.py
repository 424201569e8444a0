"""A site's active rules as one immutable value, with what the engine derives from them.

:class:`ActiveRuleSet` maps each managed segment to its enabled, working rules and carries their
rule index and distinct time leaves, so the rules and their index can never disagree. The catalog
builds a new set per change with :meth:`ActiveRuleSet.evolve`, which costs what changed: the index
is handed over to the new set and updated in place (O(changed rules)), and the old set, which
keeps its own rules, rebuilds an index only if it is asked for one again. Pure: no Kafka, no Faust.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView

from processor.contract.models import Profile
from processor.rules.compiler import CompiledCondition, Leaf, time_leaves
from processor.rules.index import SegmentRuleIndex

RuleList = tuple[tuple[str, CompiledCondition], ...]  # ((rule_id, compiled), ...) sorted by rule id


class ActiveRuleSet(Mapping[str, RuleList]):
    """managed segment id -> its active rules, plus their index and distinct time leaves.

    Reads as a mapping (``seg in rules``, ``rules[seg]``, ``rules.items()``). The index, the sorted
    segment ids and the time leaves are derived on first use and kept: a set's rules never change.
    """

    __slots__ = ("_segments", "_index", "_leaves", "_ids", "_fields")

    def __init__(self, segments: Mapping[str, RuleList] | None = None) -> None:
        """A set of ``segments`` (each segment's rules as a tuple sorted by rule id)."""
        self._segments: dict[str, RuleList] = dict(segments or {})
        self._index: SegmentRuleIndex | None = None  # built on first use, or handed over by evolve
        self._leaves: tuple[Leaf, ...] | None = None
        self._ids: tuple[str, ...] | None = None
        self._fields: dict[tuple[str, frozenset[str]], tuple[str, ...]] = {}  # see fields_read

    @classmethod
    def build(cls, segments: Mapping[str, Iterable[tuple[str, CompiledCondition]]]) -> ActiveRuleSet:
        """A set from ``{segment: (rule_id, compiled) pairs}`` in any order (tests, previews)."""
        return cls({sid: tuple(sorted(rules, key=lambda e: e[0])) for sid, rules in segments.items()})

    # -- Mapping
    def __getitem__(self, segment_id: str) -> RuleList:
        return self._segments[segment_id]

    def __contains__(self, segment_id: object) -> bool:
        return segment_id in self._segments

    def __iter__(self) -> Iterator[str]:
        return iter(self._segments)

    def __len__(self) -> int:
        return len(self._segments)

    def get(self, segment_id: str, default=None):  # type: ignore[no-untyped-def,override]
        return self._segments.get(segment_id, default)

    def keys(self) -> KeysView[str]:
        return self._segments.keys()

    def items(self) -> ItemsView[str, RuleList]:
        return self._segments.items()

    def values(self) -> ValuesView[RuleList]:
        return self._segments.values()

    def __repr__(self) -> str:
        return f"ActiveRuleSet({ {s: [r for r, _ in rules] for s, rules in self._segments.items()} })"

    # -- derived views
    @property
    def index(self) -> SegmentRuleIndex:
        """Every active rule indexed by profile value (one lookup per event instead of a loop)."""
        index = self._index
        if index is None:
            index = self._index = SegmentRuleIndex.from_active(self._segments)
        return index

    @property
    def segment_ids(self) -> tuple[str, ...]:
        """The managed segment ids, sorted."""
        ids = self._ids
        if ids is None:
            ids = self._ids = tuple(sorted(self._segments))
        return ids

    @property
    def time_leaves(self) -> tuple[Leaf, ...]:
        """The distinct time-relative leaves of the rules.

        Thousands of rules typically share a handful of time conditions ("lastlogin within_last
        P30D"); a user's next check is the minimum over these, so its cost follows the distinct
        leaves, not the number of rules.
        """
        leaves = self._leaves
        if leaves is None:
            seen: dict[tuple[str, str, str], Leaf] = {}
            for rules in self._segments.values():
                for _, cond in rules:
                    if cond.time_relative:
                        for leaf in time_leaves(cond.root):
                            seen.setdefault((leaf.field, leaf.op, repr(leaf.value)), leaf)
            leaves = self._leaves = tuple(seen.values())
        return leaves

    def match_segments(self, profile: Profile, now: int | None = None) -> dict[str, tuple[str, ...]]:
        """``{segment_id: matched rule ids, sorted}`` for the segments with at least one match."""
        return self.index.match_segments(profile, now)

    def fields_read(self, segment_id: str, matched: frozenset[str]) -> tuple[str, ...]:
        """The profile fields a decision for ``segment_id`` read, sorted: those of the ``matched``
        rules, or of every rule of the segment when none matched (membership/evidence.py). Kept
        per (segment, matched rules): a set's rules never change; cleared past 4,096 entries."""
        key = (segment_id, matched)
        found = self._fields.get(key)
        if found is None:
            fields: set[str] = set()
            for rule_id, cond in self._segments.get(segment_id, ()):
                if not matched or rule_id in matched:
                    fields |= cond.fields
            if len(self._fields) >= 4096:
                self._fields.clear()
            found = self._fields[key] = tuple(sorted(fields))
        return found

    # -- change
    def evolve(self, changes: Mapping[str, RuleList | None]) -> ActiveRuleSet:
        """A new set where each segment in ``changes`` has the given rules (None: no longer managed).

        ``changes`` must name every segment whose rules differ (a rule that moved names both
        segments). Costs O(segments + changed rules): the other segments' tuples are shared, and
        an index already built moves to the new set and is updated in place for the changed rules
        only; this set then rebuilds its own if it is asked for one again.
        """
        segments = dict(self._segments)
        for sid, rules in changes.items():
            if rules is None:
                segments.pop(sid, None)
            else:
                segments[sid] = rules
        new = ActiveRuleSet.__new__(ActiveRuleSet)
        new._segments, new._leaves, new._ids, new._fields = segments, None, None, {}
        index, self._index = self._index, None
        if index is not None:
            for sid, rules in changes.items():
                wanted = dict(rules or ())
                for rid, _ in self._segments.get(sid, ()):
                    if rid not in wanted and index.segment_of(rid) == sid:
                        index.remove(rid)
                for rid, cond in wanted.items():
                    if index.segment_of(rid) != sid or index.index.get(rid) is not cond:
                        index.add(rid, sid, cond)
        new._index = index
        return new
