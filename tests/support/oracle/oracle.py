"""The expected membership of a workload, from the FINAL catalog and the FINAL profiles.

This is deliberately *not* the processor's incremental algorithm: there are
no facts, no diffs, no backfills. Steps are folded in order into two things
only, then membership is evaluated once:

* the catalog -- every command is decided against the site catalog as it is
  at that point with :func:`processor.catalog.commands.decide` (exactly what
  the processor does), a command id already processed for that site is
  skipped (the processor answers duplicates with the original result), and
  the decision is folded into a :class:`CatalogRegistry` as a
  :class:`CatalogEntry` at increasing offsets (REJECTED entries are recorded
  but change nothing);
* the profiles -- each user's events, in order, through
  :func:`processor.membership.profile.merge_profile`, skipping an event whose
  ``event_id`` was already applied for that user (the processor's
  de-duplication; see the window below).

Then, for every site and every *managed* segment (``SiteCatalog.segments[s].managed``)::

    members = {user | not deleted, not suspended, and some rule in
                      SiteCatalog.active[s] (enabled, not broken) matches the profile}

Unmanaged segments are absent from the result (a consumer's view of them
must be empty: see the frozen-segment rule below).

The result is exact only for workloads that respect three rules
(:func:`tests.support.oracle.workload.generate` guarantees them; with
``strict=True``, the default, :func:`expected_membership` raises
:class:`OracleError` when they are broken):

1. No segment is left *frozen*: a segment disabled with
   ``remove_members: false`` keeps the members it had at that moment, which
   depends on the relative timing of two topics. It must later be
   re-enabled (or deleted) -- or be disabled with ``remove_members: true``.
2. A re-sent event id is among the user's last ``RECENT_EVENT_IDS`` (32)
   applied events; an older one would be applied again by the processor.
3. No active rule is time-relative (``in_past``, ``within_last``, ...): the
   oracle has no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from processor.catalog.commands import Decision, decide
from processor.catalog.entry import CatalogEntry
from processor.catalog.registry import CatalogRegistry
from processor.contract.models import Command, Profile, UserEvent
from processor.membership.decide import is_suspended
from processor.membership.profile import merge_profile
from tests.support.oracle.workload import COMMAND, EVENT, Step
from processor.state.user_state import RECENT_EVENT_IDS

Membership = dict[tuple[str, str], set[str]]


class OracleError(ValueError):
    """The workload breaks a rule the oracle needs to be exact (see the module docstring)."""


@dataclass
class UserRecord:
    """One user's folded state: the merged profile, whether deleted, the applied event ids."""

    profile: Profile = field(default_factory=dict)
    deleted: bool = False
    applied: list[str] = field(default_factory=list)
    applied_set: set[str] = field(default_factory=set)


@dataclass
class Folded:
    """Everything the oracle folds out of a workload's steps."""

    registry: CatalogRegistry
    users: dict[tuple[str, str], UserRecord]
    outcomes: list[str]  # one per command step: ACCEPTED | <rejection code> | DUPLICATE
    decisions: dict[str, Decision]  # command_id -> decision (first occurrence)
    frozen: dict[tuple[str, str], str]  # (site, segment) disabled without remove_members -> command_id
    problems: list[str]  # violations of the oracle's rules (see the module docstring)


def fold(steps: Iterable[Step]) -> Folded:
    """Fold commands into a catalog registry and events into per-user profiles, in order."""
    registry = CatalogRegistry()
    users: dict[tuple[str, str], UserRecord] = {}
    outcomes: list[str] = []
    decisions: dict[str, Decision] = {}
    frozen: dict[tuple[str, str], str] = {}
    problems: list[str] = []
    offset = 0
    for kind, item in steps:
        if kind == COMMAND:
            cmd: Command = item  # type: ignore[assignment]
            cat = registry.site(cmd.site_id)
            if registry.command(cmd.site_id, cmd.command_id) is not None:
                outcomes.append("DUPLICATE")
                continue
            d = decide(cat, cmd, cmd.site_id)
            entry = CatalogEntry(cmd, d.status, d.code, d.message, cmd.issued_at, 0, offset, d.backfill)
            registry.apply_entry(offset, entry)
            offset += 1
            decisions[cmd.command_id] = d
            outcomes.append("ACCEPTED" if d.accepted else str(d.code))
            if d.accepted:
                key = (cmd.site_id, str(cmd.payload.get("segment_id", "")))
                if cmd.payload_type == "DisableSegmentAutomation" and not cmd.payload["remove_members"]:
                    frozen[key] = cmd.command_id
                elif cmd.payload_type in ("EnableSegmentAutomation", "DeleteSegment",
                                          "DisableSegmentAutomation"):
                    frozen.pop(key, None)
        elif kind == EVENT:
            ev: UserEvent = item  # type: ignore[assignment]
            rec = users.setdefault((ev.site_id, ev.user_id), UserRecord())
            if ev.event_id in rec.applied_set:
                if ev.event_id not in rec.applied[-RECENT_EVENT_IDS:]:
                    problems.append(
                        f"event {ev.event_id!r} of {ev.site_id}:{ev.user_id} is re-sent more than "
                        f"{RECENT_EVENT_IDS} applied events later; the processor would apply it again"
                    )
                continue
            rec.profile, rec.deleted = merge_profile(rec.profile, rec.deleted, ev)
            rec.applied.append(ev.event_id)
            rec.applied_set.add(ev.event_id)
        else:
            raise ValueError(f"unknown step kind {kind!r} (expected {COMMAND!r} or {EVENT!r})")
    for (site, seg), cid in sorted(frozen.items()):
        if seg in registry.site(site).segments:
            problems.append(
                f"segment {site}/{seg} is left frozen by {cid} (disabled without remove_members and never "
                "re-enabled): its membership depends on timing"
            )
    for site_id, cat in sorted(registry.sites.items()):
        for seg, rules in sorted(cat.active.items()):
            for rid, cond in rules:
                if cond.time_relative:
                    problems.append(f"rule {site_id}/{rid} of segment {seg} is time-relative")
    return Folded(registry, users, outcomes, decisions, frozen, problems)


def membership(folded: Folded) -> Membership:
    """Members of every managed segment, from the folded (final) catalog and profiles."""
    out: Membership = {}
    for site_id, cat in sorted(folded.registry.sites.items()):
        for seg_id, seg in cat.segments.items():
            if seg.managed:
                out[(site_id, seg_id)] = set()
    for (site_id, user_id), rec in folded.users.items():
        if rec.deleted or is_suspended(rec.profile):
            continue
        cat = folded.registry.sites.get(site_id)
        if cat is None:
            continue
        for seg_id, rules in cat.active.items():
            if any(cond.evaluate(rec.profile) for _, cond in rules):
                out[(site_id, seg_id)].add(user_id)
    return out


def expected_membership(steps: Iterable[Step], *, strict: bool = True) -> Membership:
    """``{(site_id, segment_id): {user_id, ...}}`` for every managed segment at the end of ``steps``.

    With ``strict`` (default), raise :class:`OracleError` when the steps break
    one of the rules that make the answer timing-independent.
    """
    folded = fold(steps)
    if strict and folded.problems:
        raise OracleError("; ".join(folded.problems))
    return membership(folded)
