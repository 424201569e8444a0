"""Compare the processor's membership changes with the oracle, as a consumer would see them.

:func:`check` consumes changes exactly as ``docs/contract.md`` tells
consumers to: de-duplicate by ``change_id`` (the first delivery wins), apply
in the order given (only the order within one ``site:user`` key matters),
ADDED = "is a member now", REMOVED = "is not a member now". The folded
membership is then compared with the expected one and every difference is
reported:

* ``MISSING`` -- an expected member the output does not make a member
  (never ADDED, or REMOVED last);
* ``SPURIOUS`` -- a member in the output the oracle does not expect
  (including members of segments that are not managed at the end);
* ``CONFLICT`` -- two deliveries with the same ``change_id`` but different
  content (any of site, segment, user, change, cause, matched rules,
  occurred_at, emitted_at): a re-delivery must be byte-identical;
* ``REDUNDANT`` -- an ADDED for a user who already is a member, or a
  REMOVED for one who is not (the contract promises one message per real
  change); only reported with ``transitions=True`` (default).

Counts: ``changes`` (deliveries consumed), ``unique`` (distinct change ids),
``duplicates`` (re-deliveries of an already seen id, identical or not).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Iterable, Mapping

from processor.contract.models import MembershipChange

MISSING, SPURIOUS, CONFLICT, REDUNDANT = "MISSING", "SPURIOUS", "CONFLICT", "REDUNDANT"
MAX_LISTED = 20


@dataclass(frozen=True)
class Difference:
    kind: str  # MISSING | SPURIOUS | CONFLICT | REDUNDANT
    site_id: str
    segment_id: str
    user_id: str
    detail: str
    change: MembershipChange | None = None  # the change involved (last one for the member, if any)

    def __str__(self) -> str:
        return f"{self.kind:<9} {self.site_id}/{self.segment_id} user {self.user_id}: {self.detail}"


@dataclass
class Report:
    changes: int = 0
    unique: int = 0
    duplicates: int = 0
    expected_members: int = 0
    actual_members: int = 0
    missing: list[Difference] = field(default_factory=list)
    spurious: list[Difference] = field(default_factory=list)
    conflicts: list[Difference] = field(default_factory=list)
    redundant: list[Difference] = field(default_factory=list)

    @property
    def differences(self) -> list[Difference]:
        return [*self.missing, *self.spurious, *self.conflicts, *self.redundant]

    @property
    def ok(self) -> bool:
        return not self.differences

    def __bool__(self) -> bool:
        return self.ok

    def summary(self) -> str:
        return (f"changes={self.changes} unique={self.unique} duplicates={self.duplicates} "
                f"expected_members={self.expected_members} actual_members={self.actual_members} "
                f"missing={len(self.missing)} spurious={len(self.spurious)} conflicts={len(self.conflicts)} "
                f"redundant={len(self.redundant)}")

    def __str__(self) -> str:
        diffs = self.differences
        head = "membership check OK" if not diffs else f"membership check FAILED: {len(diffs)} difference(s)"
        lines = [f"{head} ({self.summary()})"]
        lines += [f"  {d}" for d in diffs[:MAX_LISTED]]
        if len(diffs) > MAX_LISTED:
            lines.append(f"  ... and {len(diffs) - MAX_LISTED} more")
        return "\n".join(lines)


def _describe(c: MembershipChange | None) -> str:
    if c is None:
        return "no change was ever emitted"
    return f"last change {c.change} by {c.cause_kind} {c.cause_id} (change_id {c.change_id})"


def _content_diff(a: MembershipChange, b: MembershipChange) -> list[str]:
    return [f.name for f in fields(MembershipChange) if getattr(a, f.name) != getattr(b, f.name)]


def check(
    changes: Iterable[MembershipChange],
    expected: Mapping[tuple[str, str], set[str]],
    *,
    sites: Iterable[str] | None = None,
    transitions: bool = True,
) -> Report:
    """Fold ``changes`` as a consumer would and report every difference from ``expected``.

    ``expected`` maps ``(site_id, segment_id)`` to the expected members (a
    segment absent from it must have none). With ``sites``, changes of other
    sites are ignored (a shared topic); expected keys are never filtered.
    """
    only = set(sites) if sites is not None else None
    report = Report()
    first: dict[str, MembershipChange] = {}
    members: dict[tuple[str, str], set[str]] = {}
    last: dict[tuple[str, str, str], MembershipChange] = {}
    for c in changes:
        if only is not None and c.site_id not in only:
            continue
        report.changes += 1
        seen = first.get(c.change_id)
        if seen is not None:
            report.duplicates += 1
            diff = _content_diff(seen, c)
            if diff:
                report.conflicts.append(Difference(
                    CONFLICT, c.site_id, c.segment_id, c.user_id,
                    f"change_id {c.change_id} delivered again with different {', '.join(diff)}: "
                    + "; ".join(f"{n} {getattr(seen, n)!r} -> {getattr(c, n)!r}" for n in diff),
                    c,
                ))
            continue
        first[c.change_id] = c
        group = members.setdefault((c.site_id, c.segment_id), set())
        is_member = c.user_id in group
        if c.change == "ADDED":
            if is_member and transitions:
                report.redundant.append(Difference(
                    REDUNDANT, c.site_id, c.segment_id, c.user_id,
                    f"ADDED by {c.cause_kind} {c.cause_id} but already a member "
                    f"({_describe(last.get((c.site_id, c.segment_id, c.user_id)))})", c))
            group.add(c.user_id)
        elif c.change == "REMOVED":
            if not is_member and transitions:
                report.redundant.append(Difference(
                    REDUNDANT, c.site_id, c.segment_id, c.user_id,
                    f"REMOVED by {c.cause_kind} {c.cause_id} but not a member "
                    f"({_describe(last.get((c.site_id, c.segment_id, c.user_id)))})", c))
            group.discard(c.user_id)
        else:
            report.conflicts.append(Difference(CONFLICT, c.site_id, c.segment_id, c.user_id,
                                               f"unknown change {c.change!r} (change_id {c.change_id})", c))
        last[(c.site_id, c.segment_id, c.user_id)] = c
    report.unique = len(first)
    for key in sorted(set(expected) | set(members)):
        want = expected.get(key, set())
        got = members.get(key, set())
        report.expected_members += len(want)
        report.actual_members += len(got)
        site_id, seg_id = key
        for user in sorted(want - got):
            lc = last.get((site_id, seg_id, user))
            report.missing.append(Difference(MISSING, site_id, seg_id, user,
                                             f"expected member, not in the output ({_describe(lc)})", lc))
        for user in sorted(got - want):
            lc = last.get((site_id, seg_id, user))
            why = "segment is not managed at the end" if key not in expected else "not expected"
            report.spurious.append(Difference(SPURIOUS, site_id, seg_id, user,
                                              f"member in the output, {why} ({_describe(lc)})", lc))
    return report
