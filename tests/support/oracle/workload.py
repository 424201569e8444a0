"""Deterministic, seeded workloads: catalog setup, rules, user events, rule changes.

``generate(seed, n_events, ...)`` returns a :class:`Workload`: one ordered list
of steps, each ``("command", Command)`` or ``("event", UserEvent)``, in the
order a driver should publish them. The same seed (and the same Faker
version) always yields the identical workload -- ids, timestamps, profiles,
conditions, everything -- independent of ``PYTHONHASHSEED`` (nothing
iterates a set). Ids are derived from the seed, so two seeds never collide
on a shared cluster: sites ``{site_prefix}-{seed}-s{k}``, commands
``{site_prefix}-{seed}-c{n}``, events ``{site_prefix}-{seed}-e{n}``.

What a workload contains, per site:

1. catalog setup: custom profile fields (MENU ``track``/``campus`` with
   options, TEXT ``employer``/``jobtitle``, CHECKBOX ``mentor``, NUMBER
   ``credits``, MULTISELECT ``skills``, DATETIME ``hiredate``), segments, and
   ``EnableSegmentAutomation`` for all but one segment (``library`` stays
   unmanaged forever);
2. initial rules with mixed operators (equals, not_equals, in, not_in,
   contains, not_contains, starts_with, ends_with, is_empty, is_not_empty,
   any_of, all_of, none_of, is_checked, is_not_checked, lt/lte/gt/gte,
   before/after) nested with ``all``/``any``/``not``, occasional
   ``case_sensitive`` and ``missing`` overrides -- never a time-relative
   operator (in_past, within_last, ...), so membership depends on data only;
3. ``n_events`` user events: USER_CREATED with realistic Faker profiles
   (names, emails, departments, cities, countries, institutions, job titles,
   custom fields; values in varied case/whitespace and types: ``"45"``,
   ``45``, ``45.5``; ``True``/``1``/``"yes"`` checkboxes), USER_UPDATED
   patches (some clearing fields with ``null``, some toggling ``suspended``),
   updates of never-seen users (the patch becomes the profile),
   USER_DELETED, re-creations after deletes, USER_CREATED resyncs, and exact
   re-sends of earlier events (same object, same ``event_id``);
4. interleaved at random points: CreateRule / UpdateRule (new condition,
   enable/disable, move to another segment) / DeleteRule, fixing broken
   rules, DisableSegmentAutomation with and without ``remove_members``,
   EnableSegmentAutomation (also of an already managed segment),
   DeleteProfileField (breaks the rules using it) and its re-creation, new
   MENU/MULTISELECT options, segment renames, DeleteSegment and segment
   (re-)creation, exact re-sends of earlier commands (same ``command_id``),
   and a few deliberately invalid commands.

Rules the generator guarantees, so that :func:`tests.support.oracle.oracle.expected_membership`
is exact whatever the timing between topics:

* **No frozen segment at the end.** A segment disabled *without*
  ``remove_members`` keeps whatever members it had at that moment, which
  depends on how user events and commands interleave in the real system.
  Every such freeze is followed (after a random number of events, and at
  the latest at the very end of the workload) by an EnableSegmentAutomation
  of that segment, or by its deletion. ``remove_members: true`` disables are
  never re-enabled by necessity (their membership is empty: deterministic).
* **Duplicates stay inside the de-duplication window.** The processor
  recognises a re-sent ``event_id`` among the last 32 applied events of that
  user; the generator only re-sends one of the user's last
  :data:`DUPLICATE_WINDOW` (10) applied events.
* **Per-user order is the only order that matters.** Events of one user
  are meant to be applied in list order (same Kafka key, same partition);
  events of different users, and commands versus events, may interleave
  freely without changing the final expected membership.
* **Valid by construction, except on purpose.** The generator keeps a model
  of each site's catalog and records, per command step, what it meant:
  ``Workload.intents`` holds ``"ACCEPTED"``, the rejection code it expects
  (``UNKNOWN_FIELD``, ``INVALID_VALUE``, ``INVALID_OPERATOR``,
  ``INVALID_CONDITION``, ``FORBIDDEN``, ``NOT_FOUND``, ``DUPLICATE_RULE``,
  ``UNKNOWN_SEGMENT``, ``SEGMENT_NOT_MANAGED``, ``FIELD_IN_USE``) or
  ``"DUPLICATE"`` for a re-sent command id. Rule and automation commands are
  issued by a ``("site_admin",)`` actor, catalog setup by ``("system",)``.
* A profile field is never re-created with another type (the processor does
  not re-evaluate users when a field's definition changes; only option
  additions, which cannot change any result, are generated).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import random
from dataclasses import dataclass, field
from typing import Any, Union

from faker import Faker

from processor.contract.models import Actor, Command, UserEvent

COMMAND, EVENT = "command", "event"
Step = tuple[str, Union[Command, UserEvent]]

ADMIN = Actor("admin-1", ("site_admin",))
SYSTEM = Actor("lms-sync", ("system",))
DUPLICATE_WINDOW = 10  # re-sent events are among the user's last N applied events (processor keeps 32)
TIME_BASE = 1_700_000_000  # epoch seconds around which profile datetimes are drawn
YEAR = 365 * 86_400
DEFAULT_START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: occurred_at / issued_at of the first step

# (shortname, name, datatype, options, options that may be added later)
CUSTOM_FIELDS: tuple[tuple[str, str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("track", "Study track", "MENU", ("Undergraduate", "Postgraduate", "Staff", "Alumni"),
     ("Visiting", "Doctoral")),
    ("campus", "Campus", "MENU", ("North", "South", "East", "West", "Online"), ("Downtown",)),
    ("employer", "Employer", "TEXT", (), ()),
    ("jobtitle", "Job title", "TEXT", (), ()),
    ("mentor", "Mentor", "CHECKBOX", (), ()),
    ("credits", "Credits", "NUMBER", (), ()),
    ("skills", "Skills", "MULTISELECT", ("python", "sql", "design", "leadership", "writing", "data"),
     ("teaching", "statistics")),
    ("hiredate", "Hire date", "DATETIME", (), ()),
)
SEGMENT_NAMES = (
    ("sales-team", "Sales team"), ("emea", "EMEA learners"), ("mentors", "Mentors"),
    ("new-hires", "New hires"), ("data-skills", "Data skills"), ("postgrads", "Postgraduates"),
    ("remote", "Remote learners"), ("alumni-network", "Alumni network"),
)
RESERVED_SEGMENT = ("library", "Library users (managed by hand)")
DEPARTMENTS = ("Sales", "Engineering", "Marketing", "Finance", "Human Resources", "Support", "Research",
               "Legal")
LANGS = ("en", "fr", "de", "es", "pt_br")
AUTHS = ("manual", "ldap", "oauth2", "saml2")
TIMEZONES = ("99", "Europe/London", "Europe/Paris", "America/New_York", "Asia/Tokyo")
INTERESTS = ("chess", "cycling", "photography", "music", "cooking", "hiking", "robotics", "poetry")

# profile keys a USER_UPDATED patch may touch
PATCHABLE = (
    "department", "city", "country", "institution", "lang", "auth", "timezone", "email", "suspended",
    "confirmed", "interests", "lastaccess", "profile_field_track", "profile_field_campus",
    "profile_field_employer", "profile_field_jobtitle", "profile_field_mentor", "profile_field_credits",
    "profile_field_skills", "profile_field_hiredate",
)
# standard fields rules may use: (key, type, weight)
STANDARD_RULE_FIELDS = (
    ("department", "TEXT", 4), ("city", "TEXT", 2), ("country", "TEXT", 3), ("institution", "TEXT", 2),
    ("lang", "TEXT", 1), ("auth", "TEXT", 1), ("email", "TEXT", 1), ("confirmed", "CHECKBOX", 1),
    ("interests", "MULTISELECT", 1), ("timecreated", "DATETIME", 1), ("lastaccess", "DATETIME", 1),
)
TEXT_OPS = (("equals", 3), ("not_equals", 1), ("in", 2), ("not_in", 1), ("contains", 2), ("not_contains", 1),
            ("starts_with", 2), ("not_starts_with", 0.5), ("ends_with", 1), ("not_ends_with", 0.5),
            ("is_empty", 1), ("is_not_empty", 1))
EMAIL_OPS = (("ends_with", 3), ("not_ends_with", 1), ("contains", 1), ("starts_with", 1), ("is_empty", 0.5))
MENU_OPS = (("equals", 3), ("not_equals", 1), ("in", 2), ("not_in", 1), ("is_empty", 1), ("is_not_empty", 1))
MULTI_OPS = (("any_of", 3), ("all_of", 1), ("none_of", 1), ("is_empty", 1), ("is_not_empty", 1))
CHECK_OPS = (("is_checked", 2), ("is_not_checked", 1))
NUMBER_OPS = (("gt", 2), ("gte", 1), ("lt", 2), ("lte", 1), ("equals", 1))
DATE_OPS = (("before", 2), ("after", 2), ("is_empty", 1), ("is_not_empty", 1))
NO_VALUE_OPS = frozenset({"is_empty", "is_not_empty", "is_checked", "is_not_checked"})


@dataclass(frozen=True)
class Workload:
    """A generated workload: publish ``steps`` in order (per-user order is what matters)."""

    seed: int
    steps: list[Step]
    intents: list[str]  # one per command step, in order: ACCEPTED | <rejection code> | DUPLICATE
    sites: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def commands(self) -> list[Command]:
        return [item for kind, item in self.steps if kind == COMMAND]  # type: ignore[misc]

    @property
    def events(self) -> list[UserEvent]:
        return [item for kind, item in self.steps if kind == EVENT]  # type: ignore[misc]

    def stats(self) -> dict[str, int]:
        """Counts by command payload type, event type, intent, and re-sent ids."""
        out: dict[str, int] = {}

        def bump(k: str) -> None:
            out[k] = out.get(k, 0) + 1

        seen_ev: set[str] = set()
        for kind, item in self.steps:
            if kind == COMMAND:
                bump(f"command.{item.payload_type}")  # type: ignore[union-attr]
            else:
                ev: UserEvent = item  # type: ignore[assignment]
                bump("event.DUPLICATE" if ev.event_id in seen_ev else f"event.{ev.event_type}")
                seen_ev.add(ev.event_id)
        for intent in self.intents:
            bump(f"intent.{intent}")
        out["steps"] = len(self.steps)
        return dict(sorted(out.items()))

    def digest(self) -> str:
        """SHA-256 of a canonical rendering of every step (equal digests <=> identical workloads)."""
        h = hashlib.sha256()
        for kind, item in self.steps:
            if kind == COMMAND:
                body: Any = item.to_dict()  # type: ignore[union-attr]
            else:
                ev: UserEvent = item  # type: ignore[assignment]
                body = [ev.event_id, ev.event_type, ev.site_id, ev.user_id, ev.occurred_at, ev.profile]
            h.update(json.dumps([kind, body], sort_keys=True, separators=(",", ":")).encode())
            h.update(b"\n")
        return h.hexdigest()


# ----------------------------------------------------------------- site model


@dataclass
class _Field:
    shortname: str
    name: str
    datatype: str
    options: list[str]
    extra: list[str]  # options that may still be added

    @property
    def key(self) -> str:
        return "profile_field_" + self.shortname


@dataclass
class _Segment:
    segment_id: str
    name: str
    managed: bool = False
    frozen: bool = False  # disabled without remove_members: must be re-enabled or deleted later
    reserved: bool = False  # never managed


@dataclass
class _Rule:
    rule_id: str
    segment_id: str
    condition: dict[str, Any]
    enabled: bool
    broken: bool = False

    @property
    def fields(self) -> set[str]:
        return _fields_of(self.condition)


@dataclass
class _User:
    user_id: str
    exists: bool = False
    dormant: bool = False  # deleted and rarely picked again (so some users stay deleted)
    applied: list[UserEvent] = field(default_factory=list)


@dataclass
class _Site:
    site_id: str
    fields: dict[str, _Field] = field(default_factory=dict)
    deleted_fields: dict[str, _Field] = field(default_factory=dict)
    segments: dict[str, _Segment] = field(default_factory=dict)
    deleted_segments: list[tuple[str, str]] = field(default_factory=list)
    rules: dict[str, _Rule] = field(default_factory=dict)
    users: dict[str, _User] = field(default_factory=dict)
    unseen: list[str] = field(default_factory=list)  # users never sent yet, in creation order
    next_rule: int = 0
    next_segment: int = 0

    def managed(self) -> list[_Segment]:
        return [s for s in self.segments.values() if s.managed]

    def live_rules(self) -> list[_Rule]:
        return [r for r in self.rules.values() if not r.broken]

    def broken_rules(self) -> list[_Rule]:
        return [r for r in self.rules.values() if r.broken]


def _fields_of(cond: Any) -> set[str]:
    if isinstance(cond, dict):
        if "field" in cond:
            return {cond["field"]}
        out: set[str] = set()
        for k in ("all", "any"):
            for c in cond.get(k, ()):
                out |= _fields_of(c)
        if "not" in cond:
            out |= _fields_of(cond["not"])
        return out
    return set()


# ------------------------------------------------------------------ generator


class _Generator:
    def __init__(self, seed: int, n_events: int, n_sites: int, users_per_site: int, rule_changes: int,
                 segments_per_site: int, initial_rules_per_segment: int, duplicate_rate: float,
                 delete_rate: float, suspend_rate: float, invalid_commands: int, duplicate_commands: int,
                 structural_changes: bool, site_prefix: str, start_ms: int) -> None:
        self.rng = random.Random(seed)
        self.fake = Faker("en_US")
        self.fake.seed_instance(seed)
        self.seed = seed
        self.n_events = n_events
        self.users_per_site = users_per_site
        self.rule_changes = rule_changes
        self.segments_per_site = segments_per_site
        self.initial_rules_per_segment = initial_rules_per_segment
        self.duplicate_rate = duplicate_rate
        self.delete_rate = delete_rate
        self.suspend_rate = suspend_rate
        self.invalid_commands = invalid_commands
        self.duplicate_commands = duplicate_commands
        self.structural = structural_changes
        self.prefix = f"{site_prefix}-{seed}"
        self.clock = start_ms
        self.steps: list[Step] = []
        self.intents: list[str] = []
        self.sent: list[Command] = []
        self.n_cmd = 0
        self.n_ev = 0
        self.pending: list[tuple[int, str, str]] = []  # (due event index, site id, segment id) re-enables
        self.sites = [_Site(f"{self.prefix}-s{k}") for k in range(n_sites)]
        for site in self.sites:
            site.unseen = [f"u{i:04d}" for i in range(users_per_site)]
            site.users = {u: _User(u) for u in site.unseen}
        self._pools()

    # -- helpers
    def _pools(self) -> None:
        f = self.fake

        def unique(make: Any, n: int) -> tuple[str, ...]:
            out: list[str] = []
            for _ in range(n * 6):
                v = make()
                if v.casefold() not in {o.casefold() for o in out}:
                    out.append(v)
                if len(out) == n:
                    break
            return tuple(out)

        self.cities = unique(f.city, 7) + ("São Paulo", "Zürich", "Kraków")  # casefold, not just lower
        self.countries = unique(f.country_code, 6)
        self.institutions = unique(f.company, 4) + tuple(f"University of {c}" for c in unique(f.city, 2))
        self.jobs = unique(f.job, 8)
        self.employers = unique(f.company, 6)
        self.domains = unique(f.free_email_domain, 3) + unique(f.domain_name, 2)

    def _tick(self) -> int:
        self.clock += 1000
        return self.clock

    def _weighted(self, items: Any) -> Any:
        names = [n for n, _ in items]
        return self.rng.choices(names, weights=[w for _, w in items], k=1)[0]

    def _variant(self, s: str) -> str:
        r = self.rng.random()
        if r < 0.75:
            return s
        return self.rng.choice((s.upper(), s.lower(), f" {s} ", s.title()))

    def _command(self, site: _Site, ptype: str, payload: dict[str, Any], intent: str = "ACCEPTED",
                 actor: Actor = ADMIN) -> Command:
        self.n_cmd += 1
        cmd = Command(f"{self.prefix}-c{self.n_cmd:05d}", site.site_id, self._tick(), actor, ptype, payload)
        self.steps.append((COMMAND, cmd))
        self.intents.append(intent)
        self.sent.append(cmd)
        return cmd

    # -- values
    def _suspended(self) -> Any:
        if self.rng.random() < self.suspend_rate:
            return self.rng.choice((True, 1, "1", "yes"))
        return self.rng.choice((False, False, False, 0, "0"))

    def _value(self, key: str) -> Any:
        """A plausible (never null) profile value for ``key``."""
        r = self.rng
        if key == "department":
            return self._variant(r.choice(DEPARTMENTS))
        if key == "city":
            return self._variant(r.choice(self.cities))
        if key == "country":
            c = r.choice(self.countries)
            return c.lower() if r.random() < 0.1 else c
        if key == "institution":
            return self._variant(r.choice(self.institutions))
        if key == "lang":
            return r.choice(LANGS)
        if key == "auth":
            return r.choice(AUTHS)
        if key == "timezone":
            return r.choice(TIMEZONES)
        if key == "email":
            return f"{self.fake.user_name()}{r.randint(1, 99)}@{r.choice(self.domains)}"
        if key == "suspended":
            return self._suspended()
        if key == "confirmed":
            return r.choice((True, True, True, False, 1))
        if key == "interests":
            return r.sample(INTERESTS, r.randint(0, 3))
        if key == "lastaccess":
            return 0 if r.random() < 0.2 else TIME_BASE - r.randint(0, YEAR)
        if key == "timecreated":
            return TIME_BASE - r.randint(YEAR, 3 * YEAR)
        if key == "firstaccess":
            return 0 if r.random() < 0.3 else TIME_BASE - r.randint(0, 2 * YEAR)
        short = key[len("profile_field_"):]
        spec = next(f for f in CUSTOM_FIELDS if f[0] == short)
        dtype, options = spec[2], spec[3] + spec[4]
        if dtype == "MENU":
            return self._variant(r.choice(options))
        if dtype == "MULTISELECT":
            return [self._variant(o) for o in r.sample(options, r.randint(0, 3))]
        if dtype == "CHECKBOX":
            return r.choice((True, False, False, 1, 0, "yes", "0"))
        if dtype == "NUMBER":
            x = r.randint(0, 120)
            return r.choice((x, x, x + 0.5, str(x)))
        if dtype == "DATETIME":
            return 0 if r.random() < 0.15 else TIME_BASE - r.randint(0, 10 * YEAR)
        if short == "employer":
            return self._variant(r.choice(self.employers))
        return self._variant(r.choice(self.jobs))

    def _profile(self) -> dict[str, Any]:
        f, r = self.fake, self.rng
        first, last = f.first_name(), f.last_name()
        username = f"{first}.{last}{r.randint(1, 999)}".lower().replace(" ", "")
        p: dict[str, Any] = {
            "username": username,
            "email": f"{username}@{r.choice(self.domains)}",
            "firstname": first,
            "lastname": last,
            "idnumber": f"{r.randint(0, 999_999):06d}",
            "auth": self._value("auth"),
            "confirmed": self._value("confirmed"),
            "suspended": self._suspended(),
            "lang": self._value("lang"),
            "timezone": self._value("timezone"),
            "timecreated": self._value("timecreated"),
            "firstaccess": self._value("firstaccess"),
            "lastaccess": self._value("lastaccess"),
        }
        for key, prob in (("department", 0.9), ("city", 0.9), ("country", 0.9), ("institution", 0.8),
                          ("interests", 0.6)):
            if r.random() < prob:
                p[key] = self._value(key)
        for spec in CUSTOM_FIELDS:
            if r.random() < 0.75:
                p["profile_field_" + spec[0]] = self._value("profile_field_" + spec[0])
        if r.random() < 0.05:
            p["department"] = r.choice(("", "   "))  # blank, not missing
        return p

    def _patch(self) -> dict[str, Any]:
        r = self.rng
        keys = r.sample(PATCHABLE, r.randint(1, 3))
        if r.random() < 0.1 and "suspended" not in keys:
            keys.append("suspended")
        out: dict[str, Any] = {}
        for k in keys:
            if r.random() < 0.15:
                out[k] = None  # clears the field
            elif k == "suspended":
                out[k] = r.choice((True, 1, "1")) if r.random() < 0.35 else r.choice((False, 0, "0"))
            else:
                out[k] = self._value(k)
        return out

    # -- conditions
    def _rule_fields(self, site: _Site) -> list[tuple[tuple[str, str], float]]:
        items: list[tuple[tuple[str, str], float]] = [((k, t), w) for k, t, w in STANDARD_RULE_FIELDS]
        items += [((f.key, f.datatype), 2.5) for f in site.fields.values()]
        return items

    def _text_domain(self, key: str) -> tuple[str, ...]:
        return {
            "department": DEPARTMENTS, "city": self.cities, "country": self.countries,
            "institution": self.institutions, "lang": LANGS, "auth": AUTHS,
            "profile_field_employer": self.employers, "profile_field_jobtitle": self.jobs,
        }[key]

    def _leaf(self, site: _Site) -> dict[str, Any]:
        r = self.rng
        key, dtype = self._weighted(self._rule_fields(site))
        leaf: dict[str, Any] = {"field": key}
        if dtype == "TEXT" and key == "email":
            op = self._weighted(EMAIL_OPS)
            dom = r.choice(self.domains)
            value: Any = {"ends_with": "@" + dom, "not_ends_with": "@" + dom, "contains": dom.split(".")[0],
                          "starts_with": r.choice("abcdefghijklmnoprstw")}.get(op)
        elif dtype == "TEXT":
            op = self._weighted(TEXT_OPS)
            domain = self._text_domain(key)
            base = r.choice(domain).strip()
            if op in ("equals", "not_equals"):
                value = self._variant(base)
            elif op in ("in", "not_in"):
                value = [self._variant(v) for v in r.sample(domain, min(len(domain), r.randint(1, 3)))]
            elif op in ("contains", "not_contains"):
                i = r.randrange(len(base))
                value = base[i:r.randint(i + 1, min(len(base), i + 5))]
                if not value.strip():
                    value = base
            elif op in ("starts_with", "not_starts_with"):
                value = base[:r.randint(1, min(len(base), 5))]
            elif op in ("ends_with", "not_ends_with"):
                value = base[-r.randint(1, min(len(base), 5)):]
            else:
                value = None
        elif dtype in ("MENU", "MULTISELECT"):
            options = list(site.fields[key[len("profile_field_"):]].options) if key.startswith(
                "profile_field_") else list(INTERESTS)
            op = self._weighted(MENU_OPS if dtype == "MENU" else MULTI_OPS)
            if op in ("equals", "not_equals"):
                value = self._variant(r.choice(options))
            elif op in NO_VALUE_OPS:
                value = None
            else:
                value = [self._variant(v) for v in r.sample(options, min(len(options), r.randint(1, 3)))]
        elif dtype == "CHECKBOX":
            op, value = self._weighted(CHECK_OPS), None
        elif dtype == "NUMBER":
            op = self._weighted(NUMBER_OPS)
            value = r.choice((r.randint(0, 120), r.choice((10, 30, 60, 90)), r.randint(0, 240) / 2))
        else:  # DATETIME
            op = self._weighted(DATE_OPS)
            ts = TIME_BASE - r.randint(-YEAR, 3 * YEAR)
            if op in NO_VALUE_OPS:
                value = None
            elif r.random() < 0.3:
                value = _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).date().isoformat()
            else:
                value = ts
        leaf["op"] = op
        if value is not None:
            leaf["value"] = value
            if dtype == "TEXT" and r.random() < 0.07:
                leaf["case_sensitive"] = True
        if r.random() < 0.05:
            leaf["missing"] = r.choice(("match", "no_match"))
        return leaf

    def _condition(self, site: _Site, depth: int = 0) -> dict[str, Any]:
        r = self.rng
        if depth >= 3 or r.random() < (0.35 if depth == 0 else 0.55):
            return self._leaf(site)
        x = r.random()
        if x < 0.15:
            return {"not": self._condition(site, depth + 1)}
        key = "all" if x < 0.6 else "any"
        n = 2 if key == "all" and r.random() < 0.8 else r.randint(2, 3)
        return {key: [self._condition(site, depth + 1) for _ in range(n)]}

    # -- catalog commands (valid by construction; the model follows)
    def _setup(self, site: _Site) -> None:
        r = self.rng
        for short, name, dtype, options, extra in CUSTOM_FIELDS:
            site.fields[short] = _Field(short, name, dtype, list(options), list(extra))
            self._command(site, "UpsertProfileField",
                          {"shortname": short, "name": name, "datatype": dtype, "options": list(options)},
                          actor=SYSTEM if r.random() < 0.7 else ADMIN)
        n = max(1, min(self.segments_per_site, len(SEGMENT_NAMES)))
        for seg_id, name in SEGMENT_NAMES[:n]:
            site.segments[seg_id] = _Segment(seg_id, name)
            self._command(site, "UpsertSegment", {"segment_id": seg_id, "name": name}, actor=SYSTEM)
        site.segments[RESERVED_SEGMENT[0]] = _Segment(*RESERVED_SEGMENT, reserved=True)
        self._command(site, "UpsertSegment", {"segment_id": RESERVED_SEGMENT[0], "name": RESERVED_SEGMENT[1]},
                      actor=SYSTEM)
        for seg in list(site.segments.values()):
            if not seg.reserved:
                self._enable(site, seg)
        for seg in site.managed():
            for _ in range(self.initial_rules_per_segment):
                self._create_rule(site, seg, enabled=True)

    def _enable(self, site: _Site, seg: _Segment) -> None:
        self._command(site, "EnableSegmentAutomation", {"segment_id": seg.segment_id})
        seg.managed, seg.frozen = True, False
        self.pending = [p for p in self.pending if (p[1], p[2]) != (site.site_id, seg.segment_id)]

    def _new_rule_id(self, site: _Site) -> str:
        site.next_rule += 1
        return f"rule-{site.next_rule:03d}"

    def _rule_payload(self, rid: str, seg: _Segment, cond: dict[str, Any], enabled: bool) -> dict[str, Any]:
        return {"rule_id": rid, "segment_id": seg.segment_id, "name": f"{seg.name} / {rid}",
                "condition_json": json.dumps(cond), "enabled": enabled}

    def _create_rule(self, site: _Site, seg: _Segment, enabled: bool | None = None) -> None:
        rid = self._new_rule_id(site)
        cond = self._condition(site)
        on = self.rng.random() < 0.85 if enabled is None else enabled
        self._command(site, "CreateRule", self._rule_payload(rid, seg, cond, on))
        site.rules[rid] = _Rule(rid, seg.segment_id, cond, on)

    def _update_rule(self, site: _Site, rule: _Rule, new_condition: bool = True) -> None:
        r = self.rng
        managed = site.managed()
        seg = site.segments.get(rule.segment_id)
        if seg is None or not seg.managed or r.random() < 0.2:
            seg = r.choice(managed)
        if new_condition or rule.broken:  # a broken rule needs a condition on existing fields
            cond = self._condition(site)
            enabled = True if rule.broken else rule.enabled if r.random() < 0.8 else not rule.enabled
        else:  # same condition: toggle enabled (or move it to another segment)
            cond, enabled = rule.condition, not rule.enabled if r.random() < 0.7 else rule.enabled
        self._command(site, "UpdateRule", self._rule_payload(rule.rule_id, seg, cond, enabled))
        site.rules[rule.rule_id] = _Rule(rule.rule_id, seg.segment_id, cond, enabled)

    def _rule_change(self, site: _Site, index: int) -> None:
        r = self.rng
        managed = site.managed()
        live, broken = site.live_rules(), site.broken_rules()
        unmanaged = [s for s in site.segments.values() if not s.managed and not s.reserved]
        menus = [f for f in site.fields.values() if f.extra and f.datatype in ("MENU", "MULTISELECT")]
        deletable_segments = [s for s in site.segments.values()
                              if not s.reserved and (not s.managed or len(managed) > 1)]
        choices: list[tuple[str, float]] = []
        if managed:
            choices += [("create", 25), ("new_segment", 2), ("rename_segment", 1.5), ("reenable", 1.5)]
            if live:
                choices.append(("update", 25))
            if broken:
                choices.append(("fix_broken", 12))
        else:
            choices.append(("new_segment", 10))
        if site.rules:
            choices.append(("delete_rule", 8))
        if len(managed) > 1:
            choices += [("disable_remove", 5), ("disable_freeze", 7)]
        if unmanaged:
            choices.append(("enable", 6))
        if menus:
            choices.append(("add_option", 2))
        if self.structural:
            if len(site.fields) > 3:
                choices.append(("delete_field", 3))
            if site.deleted_fields:
                choices.append(("recreate_field", 5))
            if deletable_segments:
                choices.append(("delete_segment", 2))
        kind = self._weighted(choices)
        if kind == "create":
            self._create_rule(site, r.choice(managed))
        elif kind == "update":
            self._update_rule(site, r.choice(live), new_condition=r.random() < 0.75)
        elif kind == "fix_broken":
            self._update_rule(site, r.choice(broken))
        elif kind == "delete_rule":
            rule = r.choice(list(site.rules.values()))
            self._command(site, "DeleteRule", {"rule_id": rule.rule_id})
            del site.rules[rule.rule_id]
        elif kind in ("disable_remove", "disable_freeze"):
            seg = r.choice(managed)
            remove = kind == "disable_remove"
            self._command(site, "DisableSegmentAutomation",
                          {"segment_id": seg.segment_id, "remove_members": remove})
            seg.managed, seg.frozen = False, not remove
            if not remove:
                due = index + r.randint(5, max(10, self.n_events // 4))
                self.pending.append((due, site.site_id, seg.segment_id))
        elif kind == "enable":
            self._enable(site, r.choice(unmanaged))
        elif kind == "reenable":  # already managed: a harmless RECONCILE
            self._enable(site, r.choice(managed))
        elif kind == "rename_segment":  # keeps its automation state
            seg = r.choice(list(site.segments.values()))
            seg.name = f"{seg.name.split(' (')[0]} ({self.fake.word()})"
            self._command(site, "UpsertSegment", {"segment_id": seg.segment_id, "name": seg.name},
                          actor=SYSTEM)
        elif kind == "add_option":
            f = r.choice(menus)
            f.options.append(f.extra.pop(0))
            self._command(site, "UpsertProfileField", {"shortname": f.shortname, "name": f.name,
                                                       "datatype": f.datatype, "options": list(f.options)},
                          actor=SYSTEM)
        elif kind == "delete_field":
            used = sorted({k for rule in live for k in rule.fields if k.startswith("profile_field_")})
            keys = [f.key for f in site.fields.values()]
            key = r.choice(used) if used and r.random() < 0.7 else r.choice(keys)
            f = site.fields.pop(key[len("profile_field_"):])
            site.deleted_fields[f.shortname] = f
            self._command(site, "DeleteProfileField", {"shortname": f.shortname}, actor=SYSTEM)
            for rule in live:
                if f.key in rule.fields:
                    rule.broken = True
        elif kind == "recreate_field":
            f = site.deleted_fields.pop(r.choice(list(site.deleted_fields)))
            site.fields[f.shortname] = f
            self._command(site, "UpsertProfileField", {"shortname": f.shortname, "name": f.name,
                                                       "datatype": f.datatype, "options": list(f.options)},
                          actor=SYSTEM)
        elif kind == "delete_segment":
            seg = r.choice(deletable_segments)
            self._command(site, "DeleteSegment", {"segment_id": seg.segment_id}, actor=SYSTEM)
            del site.segments[seg.segment_id]
            site.deleted_segments.append((seg.segment_id, seg.name))
            site.rules = {k: v for k, v in site.rules.items() if v.segment_id != seg.segment_id}
            self.pending = [p for p in self.pending if (p[1], p[2]) != (site.site_id, seg.segment_id)]
        elif kind == "new_segment":
            if site.deleted_segments and r.random() < 0.6:
                seg_id, name = site.deleted_segments.pop(r.randrange(len(site.deleted_segments)))
            else:
                site.next_segment += 1
                seg_id, name = f"extra-{site.next_segment}", f"Extra segment {site.next_segment}"
            seg = site.segments[seg_id] = _Segment(seg_id, name)
            self._command(site, "UpsertSegment", {"segment_id": seg_id, "name": name}, actor=SYSTEM)
            self._enable(site, seg)
            if r.random() < 0.7:
                self._create_rule(site, seg, enabled=True)

    # -- deliberately invalid commands (rejected; the model does not change)
    def _invalid(self, site: _Site) -> None:
        r = self.rng
        managed = site.managed()
        kinds = ["forbidden", "not_found_rule", "unknown_segment", "not_found_field", "forbidden_catalog"]
        if managed:
            kinds += ["unknown_field", "bad_value", "bad_operator", "bad_condition"]
        if site.rules:
            kinds.append("duplicate_rule")
        if [s for s in site.segments.values() if not s.managed]:
            kinds.append("not_managed")
        in_use = sorted({k for rule in site.live_rules() for k in rule.fields
                         if k.startswith("profile_field_") and k[14:] in site.fields
                         and site.fields[k[14:]].datatype == "MENU"})
        if in_use:
            kinds.append("field_in_use")
        kind = r.choice(kinds)
        seg = r.choice(managed) if managed else None
        if kind == "forbidden":
            rid = f"rule-forbidden-{self.n_cmd}"
            target = seg or next(iter(site.segments.values()))
            self._command(site, "CreateRule", self._rule_payload(rid, target, self._condition(site), True),
                          "FORBIDDEN", actor=Actor("lms-sync", r.choice((("system",), ("teacher",), ()))))
        elif kind == "forbidden_catalog":
            self._command(site, "UpsertSegment", {"segment_id": "sneaky", "name": "Not allowed"}, "FORBIDDEN",
                          actor=Actor("teacher-7", ("teacher",)))
        elif kind == "not_found_rule":
            rid = f"rule-missing-{self.n_cmd}"
            if r.random() < 0.5 or seg is None:
                self._command(site, "DeleteRule", {"rule_id": rid}, "NOT_FOUND")
            else:
                self._command(site, "UpdateRule", self._rule_payload(rid, seg, self._condition(site), True),
                              "NOT_FOUND")
        elif kind == "unknown_segment":
            self._command(site, "EnableSegmentAutomation", {"segment_id": f"no-such-segment-{self.n_cmd}"},
                          "UNKNOWN_SEGMENT")
        elif kind == "not_found_field":
            self._command(site, "DeleteProfileField", {"shortname": "nosuchfield"}, "NOT_FOUND", actor=SYSTEM)
        elif kind == "duplicate_rule":
            rule = r.choice(list(site.rules.values()))
            target = seg or site.segments[rule.segment_id]
            payload = self._rule_payload(rule.rule_id, target, self._condition(site), True)
            self._command(site, "CreateRule", payload, "DUPLICATE_RULE")
        elif kind == "not_managed":
            target = r.choice([s for s in site.segments.values() if not s.managed])
            rid = self._new_rule_id(site)
            self._command(site, "CreateRule", self._rule_payload(rid, target, self._condition(site), True),
                          "SEGMENT_NOT_MANAGED")
        elif kind == "field_in_use":
            f = site.fields[r.choice(in_use)[14:]]
            self._command(site, "UpsertProfileField",
                          {"shortname": f.shortname, "name": f.name, "datatype": "CHECKBOX", "options": []},
                          "FIELD_IN_USE", actor=SYSTEM)
        else:
            assert seg is not None
            good = self._leaf(site)
            bad: Any
            if kind == "unknown_field":
                name = r.choice(["departmnt", "jobtitle", "profile_field_nosuch",
                                 *(f.key for f in site.deleted_fields.values())])
                bad, code = {"field": name, "op": "equals", "value": "x"}, "UNKNOWN_FIELD"
            elif kind == "bad_value":
                menus = [f for f in site.fields.values() if f.datatype == "MENU"]
                if menus:
                    bad = {"field": r.choice(menus).key, "op": "equals", "value": "Not An Option"}
                else:
                    bad = {"field": "department", "op": "in", "value": []}
                code = "INVALID_VALUE"
            elif kind == "bad_operator":
                bad = r.choice(({"field": "department", "op": "gt", "value": 5},
                                {"field": "city", "op": "equal", "value": "x"},
                                {"field": "interests", "op": "contains", "value": "chess"}))
                code = "INVALID_OPERATOR"
            else:
                bad = r.choice(({"all": []}, {"field": "city"}, {"any": [good], "op": "x"}))
                code = "INVALID_CONDITION"
            cond = {"all": [good, bad]} if code != "INVALID_CONDITION" else bad
            rid = self._new_rule_id(site)
            if code == "INVALID_CONDITION" and r.random() < 0.3:
                payload = self._rule_payload(rid, seg, {}, True)
                payload["condition_json"] = '{"all": [ {"field": "city", '  # not JSON
            else:
                payload = self._rule_payload(rid, seg, cond, True)
            self._command(site, "CreateRule", payload, code)

    def _duplicate_command(self) -> None:
        if not self.sent:
            return
        cmd = self.rng.choice(self.sent)
        self.steps.append((COMMAND, cmd))
        self.intents.append("DUPLICATE")

    # -- user events
    def _event(self) -> None:
        r = self.rng
        site = r.choice(self.sites)
        if r.random() < self.duplicate_rate:
            sent = [u for u in site.users.values() if u.applied]
            if sent:
                u = r.choice(sent)
                self.steps.append((EVENT, r.choice(u.applied[-DUPLICATE_WINDOW:])))
                return
        if site.unseen and r.random() < 0.6:
            user = site.users[site.unseen.pop(0)]
        else:
            user = site.users[r.choice(list(site.users))]
            if user.dormant and r.random() < 0.9:
                awake = [u for u in site.users.values() if not u.dormant]
                user = r.choice(awake) if awake else user
            if user.user_id in site.unseen:
                site.unseen.remove(user.user_id)
        x = r.random()
        if not user.exists:
            etype = "USER_CREATED" if x < 0.85 else "USER_UPDATED" if x < 0.95 else "USER_DELETED"
        else:
            etype = ("USER_DELETED" if x < self.delete_rate else
                     "USER_CREATED" if x < self.delete_rate + 0.06 else "USER_UPDATED")
        if etype == "USER_CREATED":
            profile = self._profile()
        elif etype == "USER_UPDATED":
            profile = self._patch()
        else:
            profile = {}
        self.n_ev += 1
        ev = UserEvent(f"{self.prefix}-e{self.n_ev:06d}", etype, site.site_id, user.user_id, self._tick(),
                       profile)
        self.steps.append((EVENT, ev))
        user.applied.append(ev)
        user.exists = etype != "USER_DELETED"
        user.dormant = etype == "USER_DELETED" and r.random() < 0.6

    def _flush_pending(self, index: int | None) -> None:
        due = [p for p in self.pending if index is None or p[0] <= index]
        for _, site_id, seg_id in due:
            site = next(s for s in self.sites if s.site_id == site_id)
            seg = site.segments.get(seg_id)
            if seg is not None and seg.frozen:
                self._enable(site, seg)
        self.pending = [p for p in self.pending if p not in due]

    def run(self) -> Workload:
        r = self.rng
        for site in self.sites:
            self._setup(site)
        ops = ([(r.randrange(max(1, self.n_events)), "rule") for _ in range(self.rule_changes)]
               + [(r.randrange(max(1, self.n_events)), "invalid") for _ in range(self.invalid_commands)]
               + [(r.randrange(max(1, self.n_events)), "dup") for _ in range(self.duplicate_commands)])
        ops.sort(key=lambda o: o[0])  # stable: same positions keep generation order
        j = 0
        for i in range(self.n_events):
            self._flush_pending(i)
            while j < len(ops) and ops[j][0] == i:
                kind = ops[j][1]
                if kind == "rule":
                    self._rule_change(r.choice(self.sites), i)
                elif kind == "invalid":
                    self._invalid(r.choice(self.sites))
                else:
                    self._duplicate_command()
                j += 1
            self._event()
        for _, kind in ops[j:]:  # only when n_events == 0
            if kind == "rule":
                self._rule_change(r.choice(self.sites), self.n_events)
            elif kind == "invalid":
                self._invalid(r.choice(self.sites))
            else:
                self._duplicate_command()
        self._flush_pending(None)
        assert not any(s.frozen for site in self.sites for s in site.segments.values())
        return Workload(self.seed, self.steps, self.intents, tuple(s.site_id for s in self.sites))


def generate(
    seed: int,
    n_events: int,
    sites: int = 2,
    users_per_site: int = 40,
    rule_changes: int = 30,
    *,
    segments_per_site: int = 6,
    initial_rules_per_segment: int = 2,
    duplicate_rate: float = 0.03,
    delete_rate: float = 0.04,
    suspend_rate: float = 0.05,
    invalid_commands: int | None = None,
    duplicate_commands: int | None = None,
    structural_changes: bool = True,
    site_prefix: str = "site",
    start_ms: int = DEFAULT_START_MS,
) -> Workload:
    """A deterministic workload for ``seed`` (see the module docstring for what it contains).

    ``n_events`` user events (re-sent duplicates included) over ``sites`` sites
    of ``users_per_site`` users, with ``rule_changes`` rule/automation/catalog
    changes, ``invalid_commands`` deliberately invalid commands (default
    ``max(1, rule_changes // 8)``) and ``duplicate_commands`` re-sent command
    ids (default ``max(1, rule_changes // 15)``) at random points.
    ``segments_per_site`` managed segments (at most 8) plus one unmanaged one.
    ``structural_changes=False`` leaves out DeleteProfileField/DeleteSegment.
    """
    if sites < 1 or users_per_site < 1 or n_events < 0 or rule_changes < 0:
        raise ValueError("sites and users_per_site must be >= 1; n_events and rule_changes >= 0")
    if invalid_commands is None:
        invalid_commands = max(1, rule_changes // 8)
    if duplicate_commands is None:
        duplicate_commands = max(1, rule_changes // 15)
    params = dict(seed=seed, n_events=n_events, sites=sites, users_per_site=users_per_site,
                  rule_changes=rule_changes, segments_per_site=segments_per_site,
                  initial_rules_per_segment=initial_rules_per_segment, duplicate_rate=duplicate_rate,
                  delete_rate=delete_rate, suspend_rate=suspend_rate,
                  invalid_commands=invalid_commands, duplicate_commands=duplicate_commands,
                  structural_changes=structural_changes, site_prefix=site_prefix, start_ms=start_ms)
    gen = _Generator(seed, n_events, sites, users_per_site, rule_changes, segments_per_site,
                     initial_rules_per_segment, duplicate_rate, delete_rate, suspend_rate,
                     params["invalid_commands"], params["duplicate_commands"], structural_changes,
                     site_prefix, start_ms)
    wl = gen.run()
    return Workload(wl.seed, wl.steps, wl.intents, wl.sites, params)
