"""The large-change guard, pure part: what a change would do to which segments, and whether that
is "large" (docs/api.md#guarded-changes).

The admin API asks before it produces a command that could remove people: :func:`plan_impact`
applies the command(s) to a throw-away copy of the site's catalog with the same ``decide`` and
``apply`` every worker runs, and names each segment whose members may change with the rules it
would then have (:class:`Target`). The HTTP layer evaluates every stored user against those
targets (processor/http/guard.py), and :func:`judge` decides from the summed counts:

* large for a segment when ``removed >= large_change_min_removed`` AND
  ``removed > large_change_ratio x members`` (members: the segment's members before the change;
  the ratio compared as the exact decimal it was written as, :func:`settings.ratio_fraction`);
* a large change goes ahead only when the request confirms the total it removes, exactly.

No Kafka, no Faust, no I/O.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from processor.catalog.active import ActiveRuleSet, RuleList
from processor.catalog.commands import REMOVE_ALL, Decision, apply, decide
from processor.catalog.model import SiteCatalog
from processor.catalog.settings import SiteSettings, ratio_fraction
from processor.contract.models import Command, Profile
from processor.membership.decide import desired

SAMPLE = 20  # people listed per direction and segment


@dataclass(frozen=True, slots=True)
class Target:
    """A segment whose members the change may alter: ``rules`` are the segment's active rules
    after it (None: every member is removed, as on delete or disable with removal).
    ``may_remove`` is False when the change only adds rules to a managed segment (rules of a
    segment are alternatives, so nobody can leave): the guard need not look at it."""

    segment_id: str
    rules: RuleList | None
    may_remove: bool


def trial_copy(cat: SiteCatalog) -> SiteCatalog:
    """A copy of ``cat`` that :func:`apply` can change without touching ``cat``: the dicts are
    copied (their values are immutable), and the active rules start without an index (the live
    set's index stays where it is)."""
    return SiteCatalog(cat.site_id, dict(cat.fields), dict(cat.segments), dict(cat.rules), dict(cat.compiled),
                       ActiveRuleSet(dict(cat.active.items())), dict(cat._active_in), dict(cat._sources),
                       cat.settings)


def _only_adds(before: RuleList, after: RuleList) -> bool:
    """Whether ``after`` keeps every rule of ``before`` unchanged (the same compiled object)."""
    kept = {rid: cond for rid, cond in after}
    return all(kept.get(rid) is cond for rid, cond in before)


def plan_impact(cat: SiteCatalog, cmds: Sequence[Command]) -> tuple[list[Target], list[Decision]]:
    """Each command's decision, taken in order against the catalog as the earlier ones leave it,
    and the segments the accepted ones may change (sorted by id). ``cat`` is not changed."""
    trial = trial_copy(cat)
    touched: dict[str, bool] = {}  # segment -> some command removes all its members
    decisions = []
    for cmd in cmds:
        d = decide(trial, cmd)
        decisions.append(d)
        if not d.accepted:
            continue
        apply(trial, cmd)
        for seg, mode in d.backfill.segments if d.backfill else ():
            touched[seg] = touched.get(seg, False) or mode == REMOVE_ALL
    targets = []
    for seg in sorted(touched):
        before, after = cat.active.get(seg), trial.active.get(seg)
        if after is not None:  # managed afterwards: members follow its rules
            targets.append(Target(seg, after, before is None or not _only_adds(before, after)))
        elif touched[seg]:
            targets.append(Target(seg, None, True))
        # else: not managed afterwards and not emptied: frozen, nobody changes
    return targets, decisions


def person(user_id: str, profile: Mapping[str, Any]) -> dict[str, Any]:
    """A user as an admin recognises them: id, display name (first and last name) and e-mail
    from the stored profile (None when the profile has none)."""
    parts = [profile.get(k) for k in ("firstname", "lastname")]
    name = " ".join(p.strip() for p in parts if isinstance(p, str) and p.strip()) or None
    email = profile.get("email")
    return {"user_id": user_id, "name": name, "email": email if isinstance(email, str) and email else None}


@dataclass(slots=True)
class SegmentImpact:
    """What a change does to one segment: members before it, how many it adds and removes, and
    a sample of each (people as :func:`person` gives them)."""

    segment_id: str
    members: int = 0
    added: int = 0
    removed: int = 0
    sample_added: list[dict[str, Any]] = field(default_factory=list)
    sample_removed: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"segment_id": self.segment_id, "members": self.members, "added": self.added,
                "removed": self.removed, "sample_added": self.sample_added, "sample_removed": self.sample_removed}


class Evaluator:
    """Counts one worker's users against the targets, user by user (:meth:`add`)."""

    def __init__(self, targets: Iterable[Target], now: int, sample: int = SAMPLE) -> None:
        self.targets = list(targets)
        self.candidates = [ActiveRuleSet({t.segment_id: t.rules}) if t.rules is not None else None
                           for t in self.targets]
        self.now = now
        self.sample = sample
        self.evaluated = 0
        self.impacts = [SegmentImpact(t.segment_id) for t in self.targets]

    def add(self, user_id: str, profile: Profile, deleted: bool, is_member: Any) -> None:
        """One stored user (``is_member(segment)``: a member now?). A deleted user's tombstone
        that is in no target segment is not a user to evaluate (as in a preview)."""
        counted = False
        for t, cand, imp in zip(self.targets, self.candidates, self.impacts):
            member = bool(is_member(t.segment_id))
            if deleted and not member:
                continue
            counted = True
            would = cand is not None and bool(desired(cand, t.segment_id, profile, deleted, self.now))
            imp.members += member
            if would and not member:
                imp.added += 1
                self._keep(imp.sample_added, user_id, profile)
            elif member and not would:
                imp.removed += 1
                self._keep(imp.sample_removed, user_id, profile)
        self.evaluated += counted

    def _keep(self, sample: list[dict[str, Any]], user_id: str, profile: Profile) -> None:
        """Keep the ``sample`` smallest user ids seen (sorted), whatever order the scan reads in."""
        if len(sample) >= self.sample and user_id >= sample[-1]["user_id"]:
            return
        bisect.insort(sample, person(user_id, profile), key=lambda p: p["user_id"])
        del sample[self.sample:]

    def answer(self) -> dict[str, Any]:
        return {"evaluated": self.evaluated, "segments": [i.as_dict() for i in self.impacts]}


def merge(parts: Iterable[Mapping[str, Any]], sample: int = SAMPLE) -> tuple[int, list[SegmentImpact]]:
    """Workers' answers summed per segment (samples: the smallest user ids of all, as each worker
    sends its smallest)."""
    by_seg: dict[str, SegmentImpact] = {}
    evaluated = 0
    for part in parts:
        evaluated += part["evaluated"]
        for s in part["segments"]:
            imp = by_seg.setdefault(s["segment_id"], SegmentImpact(s["segment_id"]))
            imp.members += s["members"]
            imp.added += s["added"]
            imp.removed += s["removed"]
            imp.sample_added += s["sample_added"]
            imp.sample_removed += s["sample_removed"]
    for imp in by_seg.values():
        imp.sample_added = sorted(imp.sample_added, key=lambda p: p["user_id"])[:sample]
        imp.sample_removed = sorted(imp.sample_removed, key=lambda p: p["user_id"])[:sample]
    return evaluated, [by_seg[s] for s in sorted(by_seg)]


def is_large(members: int, removed: int, settings: SiteSettings) -> bool:
    """At least ``large_change_min_removed`` people AND more than ``large_change_ratio`` of the
    ``members`` the segment has now (exact: 50 of 500 at 0.1 is not more than 10%)."""
    return removed >= settings.large_change_min_removed and removed > ratio_fraction(
        settings.large_change_ratio) * members


def could_be_large(members_at_least: int, settings: SiteSettings) -> bool:
    """False when a segment with (at least, and here exactly) this many members cannot lose a
    large number: fewer members than ``large_change_min_removed``. Lets the API skip the scan."""
    return members_at_least >= settings.large_change_min_removed


PROCEED, UNCONFIRMED, CHANGED = "PROCEED", "UNCONFIRMED", "CHANGED"


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: str  # PROCEED | UNCONFIRMED (large, no confirmation) | CHANGED (confirmed another count)
    removed: int  # people the change removes over every segment: the number to confirm
    added: int
    members: int  # members of the changed segments before the change
    large: tuple[str, ...]  # the segments on which it is large


def judge(impacts: Sequence[SegmentImpact], settings: SiteSettings, confirmed: int | None) -> Verdict:
    """PROCEED when no segment's impact is large, or when ``confirmed`` equals the total removed;
    otherwise UNCONFIRMED (nothing confirmed) or CHANGED (the count confirmed is not today's)."""
    large = tuple(i.segment_id for i in impacts if is_large(i.members, i.removed, settings))
    removed = sum(i.removed for i in impacts)
    outcome = PROCEED
    if large and confirmed != removed:
        outcome = UNCONFIRMED if confirmed is None else CHANGED
    return Verdict(outcome, removed, sum(i.added for i in impacts), sum(i.members for i in impacts), large)
