"""The per-site catalog: custom profile fields, segments, rules; and a processed command's record.

A :class:`SiteCatalog` is also the rule compiler's field resolver, and keeps
the compiled form of every rule so events never parse JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from processor.catalog.active import ActiveRuleSet, RuleList
from processor.catalog.settings import SiteSettings
from processor.rules.compiler import CompiledCondition, compile_condition
from processor.rules.exceptions import CompileError
from processor.rules.fields import CUSTOM_PREFIX, STANDARD_FIELDS, FieldSpec, FieldType


@dataclass(frozen=True, slots=True)
class ProfileField:
    shortname: str
    name: str
    datatype: FieldType
    options: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The profile key carrying this field's value."""
        return CUSTOM_PREFIX + self.shortname

    def spec(self) -> FieldSpec:
        return FieldSpec(self.key, self.datatype, self.options, custom=True)


@dataclass(frozen=True, slots=True)
class Segment:
    segment_id: str
    name: str
    managed: bool = False  # automation enabled


@dataclass(frozen=True, slots=True)
class Rule:
    rule_id: str
    segment_id: str
    name: str
    condition_json: str
    enabled: bool
    broken: str | None = None  # why the rule no longer compiles (e.g. field deleted)


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """Outcome of a processed command, kept (within the de-duplication window,
    processor/catalog/window.py) to answer duplicates and status polls identically."""

    command_id: str
    status: str
    code: str | None
    message: str | None
    processed_at: int
    source_partition: int
    source_offset: int
    catalog_offset: int
    backfill: object | None = None  # BackfillPlan of an accepted command (re-fanned out on crash replay)


@dataclass(slots=True)
class SiteCatalog:
    site_id: str
    fields: dict[str, ProfileField] = field(default_factory=dict)
    segments: dict[str, Segment] = field(default_factory=dict)
    rules: dict[str, Rule] = field(default_factory=dict)
    compiled: dict[str, CompiledCondition] = field(default_factory=dict)
    # managed segment id -> ((rule_id, compiled), ...) of its enabled, working rules, with their index
    active: ActiveRuleSet = field(default_factory=ActiveRuleSet)
    # rule_id -> the managed segment whose active rules hold it (where a changed rule was before)
    _active_in: dict[str, str] = field(default_factory=dict)
    # rule_id -> (condition_json, field specs it was compiled against): reuse unchanged compilations
    _sources: dict[str, tuple[str, tuple[FieldSpec | None, ...]]] = field(default_factory=dict)
    settings: SiteSettings = field(default_factory=SiteSettings)  # SetSiteSettings (processor/catalog/settings.py)

    # -- FieldResolver
    def resolve_field(self, name: str) -> FieldSpec | None:
        if name in STANDARD_FIELDS:
            return FieldSpec(name, STANDARD_FIELDS[name])
        if name.startswith(CUSTOM_PREFIX):
            pf = self.fields.get(name[len(CUSTOM_PREFIX):])
            return pf.spec() if pf else None
        return None

    def known_field_names(self) -> list[str]:
        return [*STANDARD_FIELDS, *(f.key for f in self.fields.values())]

    # -- derived state
    def recompile(self, rules: Iterable[str] | None = None, segments: Iterable[str] = ()) -> None:
        """Bring compiled rules and the active rule set in line with the catalog.

        With ``rules`` (the ids a command created, changed or removed) and ``segments`` (those
        whose managed flag changed or that were deleted), only those are reconsidered: the cost
        follows the change, not the site's rule count, so folding a catalog log of N rules at
        worker start is O(N), not O(N^2). ``rules=None`` reconsiders everything.

        Either way a rule whose JSON and referenced field definitions are unchanged keeps its
        compiled object, so the index only touches rules that really changed.
        """
        if rules is None:
            self._recompile_all()
            return
        dirty = set(rules)
        touched = set(segments)
        for rid in dirty:
            before = self._active_in.get(rid)
            if before is not None:
                touched.add(before)
            rule = self.rules.get(rid)
            if rule is not None:
                touched.add(rule.segment_id)
            if rule is None or rule.broken is not None or not self._compile(rule):
                self.compiled.pop(rid, None)
                self._sources.pop(rid, None)
        changes: dict[str, RuleList | None] = {}
        for sid in touched:
            seg = self.segments.get(sid)
            old = self.active.get(sid)
            if seg is None or not seg.managed:
                if old is not None:
                    changes[sid] = None
                continue
            if old is None:  # newly managed: gather its rules (rare: one scan per enable)
                kept = [(r.rule_id, self.compiled[r.rule_id]) for r in self.rules.values()
                        if r.segment_id == sid and r.enabled and r.rule_id in self.compiled]
            else:
                kept = [(rid, c) for rid, c in old if rid not in dirty]
                kept += [(rid, self.compiled[rid]) for rid in dirty
                         if (r := self.rules.get(rid)) is not None and r.segment_id == sid and r.enabled
                         and rid in self.compiled]
            changes[sid] = tuple(sorted(kept, key=lambda e: e[0]))
        self._set_active(self.active.evolve(changes), changes)

    def _set_active(self, active: ActiveRuleSet, changes: dict[str, RuleList | None]) -> None:
        for sid in changes:  # forget the changed segments' rules first: a rule may have moved
            for rid, _ in self.active.get(sid, ()):
                if self._active_in.get(rid) == sid:
                    del self._active_in[rid]
        for sid, rule_list in changes.items():
            for rid, _ in rule_list or ():
                self._active_in[rid] = sid
        self.active = active

    def _compile(self, rule: Rule) -> bool:
        """(Re)compile one rule unless its JSON and field definitions are unchanged; False if broken."""
        old = self.compiled.get(rule.rule_id)
        src = self._sources.get(rule.rule_id)
        if old is not None and src is not None and src[0] == rule.condition_json and src[1] == tuple(
            self.resolve_field(f) for f in sorted(old.fields)
        ):
            return True
        try:
            cond = compile_condition(rule.condition_json, self)
        except CompileError as err:  # defensive: accepted rules compiled when accepted
            self.rules[rule.rule_id] = _with_broken(rule, err.message)
            return False
        self.compiled[rule.rule_id] = cond
        self._sources[rule.rule_id] = (rule.condition_json, tuple(self.resolve_field(f) for f in sorted(cond.fields)))
        return True

    def _recompile_all(self) -> None:
        for rid in [r for r in self.compiled if r not in self.rules or self.rules[r].broken is not None]:
            self.compiled.pop(rid, None)
            self._sources.pop(rid, None)
        for rule in list(self.rules.values()):
            if rule.broken is None and not self._compile(rule):
                self.compiled.pop(rule.rule_id, None)
                self._sources.pop(rule.rule_id, None)
        active: dict[str, list[tuple[str, CompiledCondition]]] = {
            s.segment_id: [] for s in self.segments.values() if s.managed
        }
        for rule in sorted(self.rules.values(), key=lambda r: r.rule_id):
            if rule.enabled and rule.rule_id in self.compiled and rule.segment_id in active:
                active[rule.segment_id].append((rule.rule_id, self.compiled[rule.rule_id]))
        wanted = {k: tuple(v) for k, v in active.items()}
        changes: dict[str, RuleList | None] = {sid: r for sid, r in wanted.items() if self.active.get(sid) != r}
        changes.update((sid, None) for sid in self.active if sid not in wanted)
        self._set_active(self.active.evolve(changes), changes)

    def rule_status(self, rule_id: str) -> str:
        rule = self.rules[rule_id]
        if rule.broken:
            return "broken"
        return "enabled" if rule.enabled else "disabled"

    def rules_using_field(self, key: str) -> list[str]:
        return sorted(rid for rid, c in self.compiled.items() if key in c.fields)


def _with_broken(rule: Rule, why: str) -> Rule:
    return Rule(rule.rule_id, rule.segment_id, rule.name, rule.condition_json, rule.enabled, why)
