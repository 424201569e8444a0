"""A ``Batch`` command: many catalog operations decided, logged and backfilled as one command.

Bulk paths (a rules file, a segments import) send one ``Batch`` instead of one command per row,
so the catalog log gets one entry and every users partition one backfill order for the whole
batch, not one per row (docs/performance.md, "Bulk commands").

* **Decided as a whole**: each operation is decided like the command it names, against the
  catalog as the operations before it left it (a trial copy; the real catalog is untouched). The
  first rejected operation rejects the batch, and nothing of it is applied; its code is the
  operation's, its message and path name the operation (``$.payload.operations[3].rule_id``).
  :func:`check_batch` lists every rejected operation (the API's dry run).
* **Applied in order** on the fold: exactly as the same commands one after the other.
* **One backfill**: the union of the operations' plans. Each segment keeps the cause kind of the
  first operation that touched it (``RULE_CREATED``, ``SEGMENT_AUTOMATION_ENABLED`` ...), and the
  cause id of every change is the batch's command id.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from processor.catalog.active import ActiveRuleSet
from processor.catalog.commands import BackfillPlan, Decision, Rejected, _need_id, apply, decide
from processor.catalog.model import SiteCatalog
from processor.contract.models import BATCH, Command

MAX_OPERATIONS = 1000  # the contract's array limit (processor/contract/limits.py)


def operations(cmd: Command) -> list[Command]:
    """The batch's operations as commands of their own (same id, site, time and actor)."""
    return [replace(cmd, payload_type=str(op["type"]), payload=dict(op["payload"]))
            for op in cmd.payload.get("operations") or ()]


def describe(op: Command) -> str:
    """``CreateRule r1``: the operation's type and the id it names (for messages)."""
    p = op.payload
    ident = p.get("rule_id") or p.get("segment_id") or p.get("shortname") or ""
    return f"{op.payload_type} {ident}".strip()


def trial(cat: SiteCatalog) -> SiteCatalog:
    """A copy of ``cat`` that :func:`apply` may mutate without touching ``cat``: the dicts are
    copied, compiled rules shared (immutable), and the active set has no index (deciding never
    matches a profile, and the real set keeps its own)."""
    return SiteCatalog(cat.site_id, dict(cat.fields), dict(cat.segments), dict(cat.rules), dict(cat.compiled),
                       ActiveRuleSet(cat.active), _active_in=dict(cat._active_in), _sources=dict(cat._sources))


def _located(i: int, op: Command, d: Decision) -> Decision:
    path = d.path or ""
    where = f"$.payload.operations[{i}]"
    path = where + path[len("$.payload"):] if path.startswith("$.payload") else where
    return Decision("REJECTED", d.code, f"operation {i} ({describe(op)}): {d.message}", path)


def check_batch(cat: SiteCatalog, cmd: Command) -> tuple[list[Decision], BackfillPlan | None]:
    """Every operation's decision, in order, each against the catalog the accepted ones before it
    leave (a rejected one is skipped, so later errors may follow from it); and the merged plan."""
    ops = operations(cmd)
    if not 1 <= len(ops) <= MAX_OPERATIONS:
        return [Decision("REJECTED", "INVALID_COMMAND", f"a batch has 1 to {MAX_OPERATIONS} operations; this one "
                         f"has {len(ops)}: split it", "$.payload.operations")], None
    t = trial(cat)
    out: list[Decision] = []
    plans: list[BackfillPlan] = []
    for i, op in enumerate(ops):
        if op.payload_type == BATCH:  # the schema cannot carry one; a JSON catalog entry could
            out.append(Decision("REJECTED", "INVALID_COMMAND", f"operation {i} is a batch: batches do not nest",
                                f"$.payload.operations[{i}]"))
            continue
        d = decide(t, op)
        if not d.accepted:
            out.append(_located(i, op, d))
            continue
        apply(t, op)
        out.append(d)
        if d.backfill is not None:
            plans.append(d.backfill)
    return out, merge_plans(plans)


def decide_batch(cat: SiteCatalog, cmd: Command, key_site: str | None = None) -> Decision:
    """ACCEPTED with the merged plan, or the first rejected operation's decision (pure)."""
    if key_site is not None and key_site != cmd.site_id:
        return Decision("REJECTED", "KEY_MISMATCH",
                        f"message key {key_site!r} must equal site_id {cmd.site_id!r}", "$key")
    try:  # the ids that address the result, as for any command
        _need_id(cmd.site_id, "site_id", "$.site_id")
        _need_id(cmd.command_id, "command_id", "$.command_id")
    except Rejected as err:
        return Decision("REJECTED", err.code, err.message, err.path)
    decisions, plan = check_batch(cat, cmd)
    for d in decisions:
        if not d.accepted:
            return d
    return Decision("ACCEPTED", backfill=plan)


def apply_batch(cat: SiteCatalog, cmd: Command) -> None:
    """Apply an accepted batch: its operations in order (mutates ``cat``)."""
    for op in operations(cmd):
        apply(cat, op)


def merge_plans(plans: list[BackfillPlan]) -> BackfillPlan | None:
    """One plan for many: every (segment, mode) once, in first-seen order; each segment's cause
    kind is the first plan's that names it (``kinds`` lists those that differ from the first)."""
    if not plans:
        return None
    pairs: dict[tuple[str, str], None] = {}
    kind_of: dict[str, str] = {}
    for plan in plans:
        own = dict(plan.kinds)
        for seg, mode in plan.segments:
            pairs.setdefault((seg, mode), None)
            kind_of.setdefault(seg, own.get(seg, plan.cause_kind))
    first = plans[0].cause_kind
    return BackfillPlan(first, tuple(pairs), tuple((s, k) for s, k in kind_of.items() if k != first))


def batch_payload(ops: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The ``Batch`` payload of ``(type, payload)`` pairs."""
    return {"operations": [{"type": t, "payload": dict(p)} for t, p in ops]}
