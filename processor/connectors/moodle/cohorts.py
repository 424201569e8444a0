"""Apply membership assertions to Moodle cohorts: the one write path of ``sync`` and ``reconcile``.

An assertion says "user U is (not) a member of segment S now". Adds go to
``core_cohort_add_cohort_members`` by cohort idnumber, many per call; Moodle answers warnings per
member (code 3: already a member, so re-applying is harmless; code 2: no such cohort or user).
Removals go to ``core_cohort_delete_cohort_members``, which takes numeric ids, so cohort
idnumbers and user ids are resolved (``core_cohort_get_cohorts`` / ``core_cohort_search_cohorts``,
``core_user_get_users_by_field``) and cached. That function reads every cohort and user with
MUST_EXIST inside one transaction: one deleted user fails the whole call and nothing is applied.
A failed call is therefore split in halves and retried until the record(s) that cannot be
applied are isolated; they come back as :class:`Failure` (the caller dead-letters them).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from processor.connectors.moodle.mapping import SiteMapping
from processor.connectors.moodle.ws import MoodleClient, MoodleRecordError, chunks

log = logging.getLogger("processor.connectors.moodle")

NEGATIVE_TTL_S = 60.0  # how long "no such cohort/user" is believed before asking Moodle again


@dataclass
class Assertion:
    segment_id: str
    user_id: str
    member: bool
    ref: Any = None  # the caller's handle (the Kafka message behind it), returned with the outcome


@dataclass
class Failure:
    assertion: Assertion
    code: str  # UNKNOWN_COHORT, USER_NOT_FOUND, INVALID_USER_ID, MOODLE_REFUSED
    message: str


@dataclass
class ApplyReport:
    applied: list[Assertion] = field(default_factory=list)
    already: list[Assertion] = field(default_factory=list)  # Moodle already had it (warning 3)
    failed: list[Failure] = field(default_factory=list)
    splits: int = 0  # calls retried as halves after a whole-call failure

    def merge(self, other: "ApplyReport") -> None:
        self.applied += other.applied
        self.already += other.already
        self.failed += other.failed
        self.splits += other.splits


class Resolver:
    """Cached lookups: cohort idnumber -> cohort id, processor user id <-> Moodle user id."""

    def __init__(self, client: MoodleClient, mapping: SiteMapping, lookup_batch: int = 100) -> None:
        self.client = client
        self.mapping = mapping
        self.lookup_batch = lookup_batch
        self._cohorts: dict[str, int] | None = None
        self._cohort_misses: dict[str, float] = {}
        self._users: dict[str, int] = {}  # processor user id -> Moodle id
        self._user_keys: dict[int, str] = {}  # Moodle id -> processor user id
        self._user_misses: dict[str, float] = {}

    # ------------------------------------------------------------------ cohorts
    def cohorts(self, refresh: bool = False) -> dict[str, int]:
        """Every cohort's idnumber -> id (core_cohort_get_cohorts with no ids = all)."""
        if self._cohorts is None or refresh:
            rows = self.client.call("core_cohort_get_cohorts")
            self._cohorts = {str(r["idnumber"]): int(r["id"]) for r in rows if r.get("idnumber")}
        return self._cohorts

    def cohort_id(self, idnumber: str) -> int | None:
        known = self.cohorts()
        if idnumber in known:
            return known[idnumber]
        missed = self._cohort_misses.get(idnumber)
        if missed is not None and time.monotonic() - missed < NEGATIVE_TTL_S:
            return None
        found = self._search_cohort(idnumber)
        if found is None:
            self._cohort_misses[idnumber] = time.monotonic()
            return None
        known[idnumber] = found
        return found

    def _search_cohort(self, idnumber: str) -> int | None:
        """core_cohort_search_cohorts over all contexts; it matches substrings of name, idnumber and
        description, so keep the exact idnumber. ``limitfrom`` is a page number there."""
        page, per = 0, 100
        while True:
            res = self.client.call("core_cohort_search_cohorts", query=idnumber,
                                   context={"contextlevel": "system", "instanceid": 0}, includes="all",
                                   limitfrom=page, limitnum=per)
            rows = res.get("cohorts", []) if isinstance(res, dict) else []
            for r in rows:
                if str(r.get("idnumber")) == idnumber:
                    return int(r["id"])
            if len(rows) < per:
                return None
            page += 1

    def forget_cohort(self, idnumber: str) -> None:
        if self._cohorts is not None:
            self._cohorts.pop(idnumber, None)

    # -------------------------------------------------------------------- users
    def user_ids(self, user_ids: Iterable[str]) -> dict[str, int]:
        """Moodle ids for processor user ids (absent: no such live user in Moodle)."""
        out: dict[str, int] = {}
        todo: list[str] = []
        now = time.monotonic()
        for u in dict.fromkeys(user_ids):
            if self.mapping.user_field == "id":
                if u.isdigit():
                    out[u] = int(u)
                continue
            if u in self._users:
                out[u] = self._users[u]
            elif now - self._user_misses.get(u, -NEGATIVE_TTL_S) >= NEGATIVE_TTL_S:
                todo.append(u)
        for batch in chunks(todo, self.lookup_batch):
            for rec in self.lookup(self.mapping.user_field, batch):
                key = self.mapping.user_key(rec)
                if key in batch:
                    self.remember(key, int(rec["id"]))
                    out[key] = int(rec["id"])
            for u in batch:
                if u not in out:
                    self._user_misses[u] = time.monotonic()
        return out

    def user_keys(self, moodle_ids: Iterable[int]) -> dict[int, str]:
        """Processor user ids for Moodle ids (reconcile reads members as Moodle ids)."""
        ids = list(dict.fromkeys(moodle_ids))
        if self.mapping.user_field == "id":
            return {i: str(i) for i in ids}
        out = {i: self._user_keys[i] for i in ids if i in self._user_keys}
        todo = [i for i in ids if i not in out]
        for batch in chunks(todo, self.lookup_batch):
            for rec in self.lookup("id", [str(i) for i in batch]):
                key = self.mapping.user_key(rec)
                if key:
                    self.remember(key, int(rec["id"]))
                    out[int(rec["id"])] = key
        return out

    def remember(self, key: str, moodle_id: int) -> None:
        self._users[key] = moodle_id
        self._user_keys[moodle_id] = key
        self._user_misses.pop(key, None)

    def forget_user(self, key: str) -> None:
        mid = self._users.pop(key, None)
        if mid is not None:
            self._user_keys.pop(mid, None)

    def lookup(self, field_name: str, values: Sequence[str]) -> list[dict[str, Any]]:
        """core_user_get_users_by_field, bisecting a call Moodle refuses as a whole (a value its
        cleaning rejects, or an id of a deleted user) so the other values are still found."""
        if not values:
            return []
        try:
            return list(self.client.call("core_user_get_users_by_field", field=field_name, values=list(values)))
        except MoodleRecordError as err:
            if len(values) == 1:
                log.info("moodle: %s=%s not found (%s)", field_name, values[0], err.message)
                return []
            mid = len(values) // 2
            return self.lookup(field_name, values[:mid]) + self.lookup(field_name, values[mid:])


_EXISTS = re.compile(r"record already exists: cohort\((\w+)=(.*) (\w+)=(.*)\)$")
_NO_COHORT = re.compile(r"cohort (\w+)=(.*) not exists$")
_NO_USER = re.compile(r"user (\w+)=(.*) not exists$")


class CohortWriter:
    """Applies assertions in calls of at most ``batch_size`` members (``on_split`` counts splits)."""

    def __init__(self, client: MoodleClient, resolver: Resolver, batch_size: int = 100,
                 on_split: Callable[[str], None] | None = None) -> None:
        self.client = client
        self.resolver = resolver
        self.mapping = resolver.mapping
        self.batch_size = max(1, batch_size)
        self.on_split = on_split

    def apply(self, assertions: Sequence[Assertion]) -> ApplyReport:
        report = ApplyReport()
        adds = [a for a in assertions if a.member]
        removes = [a for a in assertions if not a.member]
        if adds:
            report.merge(self._add(adds))
        if removes:
            report.merge(self._remove(removes))
        return report

    # --------------------------------------------------------------------- adds
    def _add(self, adds: list[Assertion]) -> ApplyReport:
        report = ApplyReport()
        ready: list[tuple[Assertion, dict[str, str], dict[str, str]]] = []
        field_name = self.mapping.user_field
        if field_name == "idnumber":  # add_cohort_members takes usertype id or username only
            ids = self.resolver.user_ids(a.user_id for a in adds)
        for a in adds:
            ct = {"type": "idnumber", "value": self.mapping.cohort_for(a.segment_id)}
            if field_name == "id":
                if not a.user_id.isdigit():
                    report.failed.append(Failure(a, "INVALID_USER_ID", f"user id {a.user_id!r} is not a Moodle "
                                                 "user id (digits); set --user-field to idnumber or username"))
                    continue
                ut = {"type": "id", "value": a.user_id}
            elif field_name == "username":
                ut = {"type": "username", "value": a.user_id}
            else:
                if a.user_id not in ids:
                    report.failed.append(Failure(a, "USER_NOT_FOUND", f"no Moodle user has idnumber {a.user_id!r}"))
                    continue
                ut = {"type": "id", "value": str(ids[a.user_id])}
            ready.append((a, ct, ut))
        for batch in chunks(ready, self.batch_size):
            report.merge(self._add_call(batch))
        return report

    def _add_call(self, batch: list[tuple[Assertion, dict[str, str], dict[str, str]]]) -> ApplyReport:
        report = ApplyReport()
        try:
            res = self.client.call("core_cohort_add_cohort_members",
                                   members=[{"cohorttype": ct, "usertype": ut} for _, ct, ut in batch])
        except MoodleRecordError as err:
            return self._split("core_cohort_add_cohort_members", batch, err, self._add_call,
                               lambda item: item[0])
        outcome: dict[int, tuple[str, str]] = {}
        for w in (res or {}).get("warnings", []) if isinstance(res, dict) else []:
            msg, code = str(w.get("message", "")), str(w.get("warningcode", ""))
            hit: Callable[[dict[str, str], dict[str, str]], bool]
            if (m := _EXISTS.search(msg)) and code == "3":
                kind = "already"
                hit = lambda ct, ut, m=m: (ct["type"], ct["value"], ut["type"], ut["value"]) == m.groups()  # noqa: E731
            elif m := _NO_COHORT.search(msg):
                kind = "UNKNOWN_COHORT"
                hit = lambda ct, ut, m=m: (ct["type"], ct["value"]) == m.groups()  # noqa: E731
            elif m := _NO_USER.search(msg):
                kind = "USER_NOT_FOUND"
                hit = lambda ct, ut, m=m: (ut["type"], ut["value"]) == m.groups()  # noqa: E731
            else:
                log.warning("moodle: unattributed warning from core_cohort_add_cohort_members: %s", w)
                continue
            for i, (_, ct, ut) in enumerate(batch):
                if i not in outcome and hit(ct, ut):
                    outcome[i] = (kind, msg)
        for i, (a, ct, _) in enumerate(batch):
            kind, msg = outcome.get(i, ("applied", ""))
            if kind == "applied":
                report.applied.append(a)
            elif kind == "already":
                report.already.append(a)
            else:
                if kind == "UNKNOWN_COHORT":
                    msg = (f"{msg}: create a cohort with idnumber {ct['value']!r} in Moodle or map segment "
                           f"{a.segment_id!r} to an existing one (--cohort)")
                report.failed.append(Failure(a, kind, f"Moodle: {msg}"))
        return report

    # ----------------------------------------------------------------- removals
    def _remove(self, removes: list[Assertion]) -> ApplyReport:
        report = ApplyReport()
        users = self.resolver.user_ids(a.user_id for a in removes)
        ready: list[tuple[Assertion, int, int]] = []
        for a in removes:
            idn = self.mapping.cohort_for(a.segment_id)
            cid = self.resolver.cohort_id(idn)
            if cid is None:
                report.failed.append(Failure(a, "UNKNOWN_COHORT", f"no cohort with idnumber {idn!r} in Moodle "
                                             f"(segment {a.segment_id!r})"))
                continue
            uid = users.get(a.user_id)
            if uid is None:
                code = "INVALID_USER_ID" if self.mapping.user_field == "id" else "USER_NOT_FOUND"
                report.failed.append(Failure(a, code, f"no live Moodle user with {self.mapping.user_field} "
                                             f"{a.user_id!r}"))
                continue
            ready.append((a, cid, uid))
        for batch in chunks(ready, self.batch_size):
            report.merge(self._remove_call(batch))
        return report

    def _remove_call(self, batch: list[tuple[Assertion, int, int]]) -> ApplyReport:
        try:
            self.client.call("core_cohort_delete_cohort_members",
                             members=[{"cohortid": cid, "userid": uid} for _, cid, uid in batch])
        except MoodleRecordError as err:
            return self._split("core_cohort_delete_cohort_members", batch, err, self._remove_call,
                               lambda item: item[0])
        return ApplyReport(applied=[a for a, _, _ in batch])

    # -------------------------------------------------------------------- split
    def _split(self, function: str, batch: list[Any], err: MoodleRecordError,
               again: Callable[[list[Any]], ApplyReport], assertion_of: Callable[[Any], Assertion]) -> ApplyReport:
        if len(batch) == 1:
            a = assertion_of(batch[0])
            code = "MOODLE_REFUSED"
            if "table user" in err.message:
                code = "USER_NOT_FOUND"
                self.resolver.forget_user(a.user_id)
            elif "table cohort" in err.message:
                code = "UNKNOWN_COHORT"
                self.resolver.forget_cohort(self.mapping.cohort_for(a.segment_id))
            return ApplyReport(failed=[Failure(a, code, err.message)])
        if self.on_split:
            self.on_split(function)
        log.info("moodle: %s refused a batch of %d (%s); retrying it in halves", function, len(batch),
                 err.errorcode)
        mid = len(batch) // 2
        report = again(batch[:mid])
        report.merge(again(batch[mid:]))
        report.splits += 1
        return report
