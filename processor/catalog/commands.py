"""Validate, authorize and apply automation commands to a site catalog.

``decide`` is pure and does not mutate: it returns ACCEPTED (with the
backfill the change requires) or REJECTED with a code and an admin-readable
message. ``apply`` mutates a catalog with an already-accepted command; it is
what every worker runs when reading the catalog log, so it never validates
(the log records the decision once, and replays stay identical even if
validation rules change in a later version).
"""

from __future__ import annotations

from dataclasses import dataclass

from processor.catalog.authorize import authorize
from processor.catalog import settings as site_settings
from processor.catalog.model import ProfileField, Rule, Segment, SiteCatalog
from processor.contract.exceptions import ContractError
from processor.contract.ids import check_id
from processor.contract.models import Command
from processor.errors import ProcessorError
from processor.rules.compiler import compile_condition
from processor.rules.exceptions import CompileError
from processor.rules.fields import CUSTOM_PREFIX, FieldType

RECONCILE = "RECONCILE"  # re-evaluate members against current rules
REMOVE_ALL = "REMOVE_ALL"  # remove every automation member


@dataclass(frozen=True, slots=True)
class BackfillPlan:
    """Which segments every stored user of the site must be re-evaluated for."""

    cause_kind: str
    segments: tuple[tuple[str, str], ...]  # (segment_id, RECONCILE|REMOVE_ALL)

    def to_dict(self) -> dict[str, object]:
        return {"cause_kind": self.cause_kind, "segments": [list(s) for s in self.segments]}

    @classmethod
    def from_dict(cls, d: dict[str, object] | None) -> "BackfillPlan | None":
        if not d:
            return None
        return cls(str(d["cause_kind"]), tuple((str(s), str(m)) for s, m in d["segments"]))  # type: ignore[union-attr]


@dataclass(frozen=True, slots=True)
class Decision:
    status: str  # ACCEPTED | REJECTED
    code: str | None = None
    message: str | None = None
    path: str | None = None
    backfill: BackfillPlan | None = None

    @property
    def accepted(self) -> bool:
        return self.status == "ACCEPTED"


class Rejected(ProcessorError):
    pass


def _reject(err: ProcessorError) -> Decision:
    return Decision("REJECTED", err.code, err.message, err.path)


def _need_id(value: object, name: str, path: str | None = None) -> str:
    """A payload id of the contract's length and character set (processor/contract/ids.py)."""
    try:
        return check_id(value, name, path or f"$.payload.{name}")
    except ContractError as err:
        raise Rejected(err.code, err.message, err.path) from None


def _segment(cat: SiteCatalog, segment_id: str) -> Segment:
    seg = cat.segments.get(segment_id)
    if seg is None:
        known = ", ".join(sorted(cat.segments)[:20]) or "none"
        raise Rejected(
            "UNKNOWN_SEGMENT",
            f"segment {segment_id!r} does not exist on site {cat.site_id!r} (known: {known}); "
            "segments come from the LMS: create it there first",
            "$.payload.segment_id",
        )
    return seg


def _managed(cat: SiteCatalog, segment_id: str) -> Segment:
    seg = _segment(cat, segment_id)
    if not seg.managed:
        raise Rejected(
            "SEGMENT_NOT_MANAGED",
            f"automation is off for segment {segment_id!r}: turn it on first (console: Managed segments; "
            f"CLI: segments manage {segment_id})",
            "$.payload.segment_id",
        )
    return seg


def _compile(cat: SiteCatalog, condition_json: str) -> None:
    try:
        compile_condition(condition_json, cat)
    except CompileError as err:
        raise Rejected(err.code, err.message, "$.payload.condition_json" + err.path[1:]) from None


def _datatype(name: str) -> FieldType:
    """The field type, or a rejection: ``UNKNOWN`` (the schema enum's default) is what a command
    written with a newer datatype decodes to, and must not be stored as some other type."""
    try:
        return FieldType(name)
    except ValueError:
        raise Rejected("INVALID_FIELD", f"datatype {name} is not supported by this processor; use one of "
                       f"{', '.join(t.value for t in FieldType)}", "$.payload.datatype") from None


def _plan(kind: str, *segments: tuple[str, str]) -> BackfillPlan:
    seen: dict[str, str] = {}
    for seg, mode in segments:
        seen.setdefault(seg, mode)
    return BackfillPlan(kind, tuple(seen.items()))


def _validate(cat: SiteCatalog, cmd: Command) -> BackfillPlan | None:
    p, t = cmd.payload, cmd.payload_type
    if t == "UpsertProfileField":
        short = _need_id(p["shortname"], "shortname")
        dtype = _datatype(p["datatype"])
        options = tuple(p.get("options") or ())
        if dtype is FieldType.MENU and not options:
            raise Rejected("INVALID_FIELD", "a MENU field needs at least one option", "$.payload.options")
        # Changing a field must not silently break, or silently change the meaning of, rules
        # that use it: a datatype change re-interprets stored values (e.g. TEXT "abc" becomes
        # an unset DATETIME), so it is refused while rules use the field.
        old = cat.fields.get(short)
        users = cat.rules_using_field(CUSTOM_PREFIX + short)
        if old is not None and old.datatype is not dtype and users:
            raise Rejected(
                "FIELD_IN_USE",
                f"field {short!r} is used by rule(s) {', '.join(users)}; changing its datatype from "
                f"{old.datatype.value} to {dtype.value} would change what they match. Update or delete "
                "those rules first",
                "$.payload.datatype",
            )
        trial = SiteCatalog(cat.site_id, dict(cat.fields), cat.segments, cat.rules)
        trial.fields[short] = ProfileField(short, p["name"], dtype, options)
        for rid in cat.rules_using_field(CUSTOM_PREFIX + short):
            try:
                compile_condition(cat.rules[rid].condition_json, trial)
            except CompileError as err:
                raise Rejected(
                    "FIELD_IN_USE",
                    f"changing field {short!r} would break rule {rid!r} ({err.message}); update the rule first",
                    "$.payload",
                ) from None
        return None
    if t == "DeleteProfileField":
        short = _need_id(p["shortname"], "shortname")
        if short not in cat.fields:
            raise Rejected("NOT_FOUND", f"profile field {short!r} does not exist", "$.payload.shortname")
        users = cat.rules_using_field(CUSTOM_PREFIX + short)
        return _plan("PROFILE_FIELD_DELETED", *((cat.rules[r].segment_id, RECONCILE) for r in users))
    if t == "UpsertSegment":
        _need_id(p["segment_id"], "segment_id")
        return None
    if t == "DeleteSegment":
        seg = _segment(cat, _need_id(p["segment_id"], "segment_id"))
        return _plan("SEGMENT_DELETED", (seg.segment_id, REMOVE_ALL))
    if t == "EnableSegmentAutomation":
        seg = _segment(cat, _need_id(p["segment_id"], "segment_id"))
        return _plan("SEGMENT_AUTOMATION_ENABLED", (seg.segment_id, RECONCILE))
    if t == "DisableSegmentAutomation":
        seg = _managed(cat, _need_id(p["segment_id"], "segment_id"))
        return _plan("SEGMENT_AUTOMATION_DISABLED", (seg.segment_id, REMOVE_ALL)) if p["remove_members"] else None
    if t == "CreateRule":
        rid = _need_id(p["rule_id"], "rule_id")
        if rid in cat.rules:
            raise Rejected("DUPLICATE_RULE", f"a rule with id {rid!r} already exists: choose another rule id, "
                           "or edit that rule", "$.payload.rule_id")
        seg = _managed(cat, _need_id(p["segment_id"], "segment_id"))
        _compile(cat, p["condition_json"])
        return _plan("RULE_CREATED", (seg.segment_id, RECONCILE)) if p["enabled"] else None
    if t == "UpdateRule":
        rid = _need_id(p["rule_id"], "rule_id")
        old = cat.rules.get(rid)
        if old is None:
            raise Rejected("NOT_FOUND", f"rule {rid!r} does not exist (it may have been deleted): save it as a "
                           "new rule", "$.payload.rule_id")
        seg = _managed(cat, _need_id(p["segment_id"], "segment_id"))
        _compile(cat, p["condition_json"])
        return _plan("RULE_UPDATED", (seg.segment_id, RECONCILE), (old.segment_id, RECONCILE))
    if t == "DeleteRule":
        rid = _need_id(p["rule_id"], "rule_id")
        old = cat.rules.get(rid)
        if old is None:
            raise Rejected("NOT_FOUND", f"rule {rid!r} does not exist", "$.payload.rule_id")
        return _plan("RULE_DELETED", (old.segment_id, RECONCILE))
    if t == "SetSiteSettings":
        try:
            site_settings.check_payload(p)
        except ProcessorError as err:
            raise Rejected(err.code, err.message, err.path) from None
        return None
    raise Rejected("INVALID_COMMAND", f"unknown command type {t!r}", "$.payload")  # pragma: no cover


def decide(cat: SiteCatalog, cmd: Command, key_site: str | None = None) -> Decision:
    """Decide a command against the site's current catalog (pure; no mutation)."""
    if key_site is not None and key_site != cmd.site_id:
        return Decision("REJECTED", "KEY_MISMATCH",
                        f"message key {key_site!r} must equal site_id {cmd.site_id!r}", "$key")
    try:  # the ids that address the result are non-empty and within 255 (decode_command checked)
        _need_id(cmd.site_id, "site_id", "$.site_id")
        _need_id(cmd.command_id, "command_id", "$.command_id")
    except Rejected as err:
        return _reject(err)
    denied = authorize(cmd)
    if denied:
        return _reject(denied)
    try:
        plan = _validate(cat, cmd)
    except Rejected as err:
        return _reject(err)
    if plan is not None and not plan.segments:
        plan = None
    return Decision("ACCEPTED", backfill=plan)


def apply(cat: SiteCatalog, cmd: Command) -> None:
    """Apply an accepted command to the catalog (mutates; deterministic).

    Tells ``recompile`` exactly which rules and segments the command touched, so applying one
    command costs what it changed, not the size of the site.
    """
    p, t = cmd.payload, cmd.payload_type
    rules: list[str] = []
    segments: list[str] = []
    if t == "UpsertProfileField":
        cat.fields[p["shortname"]] = ProfileField(
            p["shortname"], p["name"], FieldType(p["datatype"]), tuple(p.get("options") or ())
        )
        rules = cat.rules_using_field(CUSTOM_PREFIX + p["shortname"])
    elif t == "DeleteProfileField":
        key = CUSTOM_PREFIX + p["shortname"]
        rules = cat.rules_using_field(key)
        for rid in rules:
            r = cat.rules[rid]
            cat.rules[rid] = Rule(r.rule_id, r.segment_id, r.name, r.condition_json, r.enabled,
                                  f"profile field {key!r} was deleted; update the rule")
        cat.fields.pop(p["shortname"], None)
    elif t == "UpsertSegment":
        old = cat.segments.get(p["segment_id"])
        cat.segments[p["segment_id"]] = Segment(p["segment_id"], p["name"], old.managed if old else False)
    elif t == "DeleteSegment":
        cat.segments.pop(p["segment_id"], None)
        segments = [p["segment_id"]]
        rules = [r.rule_id for r in cat.rules.values() if r.segment_id == p["segment_id"]]
        for rid in rules:
            del cat.rules[rid]
    elif t in ("EnableSegmentAutomation", "DisableSegmentAutomation"):
        seg = cat.segments.get(p["segment_id"])
        if seg is not None:  # accepted against this catalog; defensive for replays of an odd log
            cat.segments[seg.segment_id] = Segment(seg.segment_id, seg.name, t == "EnableSegmentAutomation")
            segments = [seg.segment_id]
    elif t in ("CreateRule", "UpdateRule"):
        cat.rules[p["rule_id"]] = Rule(p["rule_id"], p["segment_id"], p["name"], p["condition_json"],
                                       bool(p["enabled"]))
        rules = [p["rule_id"]]
    elif t == "DeleteRule":
        cat.rules.pop(p["rule_id"], None)
        rules = [p["rule_id"]]
    elif t == "SetSiteSettings":
        cat.settings = site_settings.folded(cat.settings, p)
        return
    cat.recompile(rules, segments)
