"""Run the processor's pure engine over a workload, in memory (no broker, no faust).

A single-threaded model of what the workers do, for end-to-end
cross-checks against the oracle without Kafka:

* a command is skipped when its id was already processed for the site;
  otherwise it is decided with :func:`processor.catalog.commands.decide`
  against the current catalog and folded into a :class:`CatalogRegistry` at
  the next catalog offset; when accepted with a backfill plan, every stored
  user of the site is re-evaluated with
  :func:`processor.membership.engine.apply_backfill` for the plan's
  segments (cause = the command), as the control messages make every
  partition do;
* an event is applied with :func:`processor.membership.engine.apply_user_event`
  at the next input offset, with the site's current active rules.

With ``wire=True`` (default) every input goes through the Avro codecs and
the user state is Avro-encoded between steps, as in the real table. With
``replay_rate > 0`` some events and backfills are processed twice (a crash
before the offset commit): the replay must re-emit identical changes, which
the checker's de-duplication and conflict detection then verify.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Iterable

from processor.catalog.commands import Decision, decide
from processor.catalog.entry import CatalogEntry
from processor.catalog.registry import CatalogRegistry
from processor.contract.codec import (
    decode_command,
    decode_membership_change,
    decode_user_event,
    encode_command,
    encode_membership_change,
    encode_user_event,
    user_event_key,
)
from processor.contract.models import Command, MembershipChange, UserEvent
from processor.membership.engine import Cause, apply_backfill, apply_user_event
from tests.support.oracle.workload import COMMAND, EVENT, Step
from processor.state.user_state import UserState, decode_state, encode_state


@dataclass
class EngineRun:
    changes: list[MembershipChange] = field(default_factory=list)
    decisions: dict[str, Decision] = field(default_factory=dict)
    registry: CatalogRegistry = field(default_factory=CatalogRegistry)
    states: dict[tuple[str, str], UserState] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)  # apply_user_event outcome counts
    backfills: int = 0
    replays: int = 0


def run_engine(
    steps: Iterable[Step], *, wire: bool = True, replay_rate: float = 0.0, seed: int = 0,
    use_index: bool = True,
) -> EngineRun:
    """Drive the engine over ``steps`` and collect every change it emits, in order."""
    run = EngineRun()
    rng = random.Random(seed)
    raw: dict[tuple[str, str], bytes] = {}  # the "table" when wire=True
    cat_offset = 0
    ev_offset = 0

    def load(key: tuple[str, str]) -> UserState | None:
        if wire:
            b = raw.get(key)
            return decode_state(b) if b is not None else None
        return run.states.get(key)

    def store(key: tuple[str, str], st: UserState) -> None:
        run.states[key] = st
        if wire:
            raw[key] = encode_state(st)

    def emit(changes: list[MembershipChange]) -> None:
        for c in changes:
            run.changes.append(decode_membership_change(encode_membership_change(c)) if wire else c)

    for kind, item in steps:
        if kind == COMMAND:
            cmd: Command = decode_command(encode_command(item)) if wire else item  # type: ignore[arg-type]
            cat = run.registry.site(cmd.site_id)
            if run.registry.command(cmd.site_id, cmd.command_id) is not None:
                continue
            d = decide(cat, cmd, cmd.site_id)
            run.decisions[cmd.command_id] = d
            run.registry.apply_entry(cat_offset, CatalogEntry(cmd, d.status, d.code, d.message, cmd.issued_at,
                                                              0, cat_offset, d.backfill))
            cat_offset += 1
            plan = d.backfill
            if not d.accepted or plan is None:
                continue
            cause = Cause(plan.cause_kind, cmd.command_id, cmd.issued_at)
            now_ms = cmd.issued_at
            passes = 2 if replay_rate and rng.random() < replay_rate else 1
            run.replays += passes - 1
            for _ in range(passes):
                active = run.registry.site(cmd.site_id).active
                for key in sorted(k for k in run.states if k[0] == cmd.site_id):
                    st = load(key)
                    assert st is not None
                    out = apply_backfill(st, active, plan.segments, cause, now_ms)
                    run.backfills += 1
                    if out.dirty:
                        store(key, out.state)
                    emit(out.changes)
        elif kind == EVENT:
            src: UserEvent = item  # type: ignore[assignment]
            ev = src
            if wire:
                ev = decode_user_event(user_event_key(src.site_id, src.user_id), encode_user_event(src))
            key = (ev.site_id, ev.user_id)
            passes = 2 if replay_rate and rng.random() < replay_rate else 1
            run.replays += passes - 1
            for _ in range(passes):  # a second pass re-delivers the same offset
                site = run.registry.site(ev.site_id)
                out = apply_user_event(load(key), ev, ev_offset, site.active, ev.occurred_at,
                                       use_index=use_index)
                run.statuses[out.status] = run.statuses.get(out.status, 0) + 1
                if out.dirty or key not in run.states:
                    store(key, out.state)
                emit(out.changes)
            ev_offset += 1
        else:
            raise ValueError(f"unknown step kind {kind!r}")
    return run
