"""``moodle import`` and ``moodle resync``: bring Moodle's truth into the processor.

* **Cohorts** -> ``UpsertSegment`` (segment id = the cohort's idnumber, or the mapped segment;
  cohorts without an idnumber cannot be mapped and are reported). The segments are *not*
  managed: automating one stays an explicit admin action.
* **Custom profile fields** -> ``UpsertProfileField`` from the plugin's definitions, or derived
  from the users' ``customfields`` (see profiles.py for what that misses).
* **Users**, read in pages with ``core_user_get_users_by_field`` over id ranges (Moodle has no
  paged user listing: ``core_user_get_users`` returns every match at once), -> snapshots in our
  profile format through the ingest endpoint (``USER_CREATED``).

``resync`` reads what the processor holds (``GET /sites/{site}/users``, the admin API: the same
state every answer comes from, paged, no internal formats) and publishes only the users whose
snapshot differs: new or deleted-then-back users as ``USER_CREATED``; changed ones as
``USER_UPDATED`` carrying the fields Moodle returns plus ``null`` for those it returns for other
users but no longer for this one, so fields only the plugin sends (``timecreated``, ``lastlogin``)
are kept. Held users Moodle no longer has are counted, and deleted with ``--delete-missing``.
Memory: what the processor holds is kept as one compact JSON string per user during the run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from processor.connectors.moodle.cohorts import Resolver
from processor.connectors.moodle.mapping import SiteMapping
from processor.connectors.moodle.processor_api import ProcessorApi
from processor.connectors.moodle.profiles import FieldCollector, FieldDef, normalize, plugin_fields, to_profile
from processor.connectors.moodle.progress import Progress
from processor.connectors.moodle.ws import MoodleClient

log = logging.getLogger("processor.connectors.moodle")

INGEST_RECORDS = 500
INGEST_BYTES = 200 * 1024  # under the endpoint's 256 KiB


@dataclass
class ImportReport:
    mode: str
    site_id: str
    cohorts: int = 0
    segments_accepted: int = 0
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    field_source: str = ""
    users_read: int = 0
    published: int = 0
    created: int = 0
    differed: int = 0
    unchanged: int = 0
    missing_in_moodle: int = 0
    deleted: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    differing_fields: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["users_per_second"] = round(self.users_read / self.seconds, 1) if self.seconds else None
        d["rejected"] = self.rejected[:50]
        d["rejected_count"] = len(self.rejected)
        return d


class UserScanner:
    """Every user Moodle shows the web-service user, in id order, ``page`` ids per call.

    Ids are probed first (windows at page, 2*page, 4*page, ...) to estimate the highest id for
    the progress ETA. The scan stops once ``gap`` consecutive ids past that estimate and past the
    highest id seen held no user (deleted users leave gaps; raise ``gap`` if yours are longer).
    """

    def __init__(self, resolver: Resolver, page: int = 100, gap: int = 2000) -> None:
        self.resolver = resolver
        self.page = max(1, page)
        self.gap = max(gap, self.page)

    def _window(self, start: int) -> list[dict[str, Any]]:
        return self.resolver.lookup("id", [str(i) for i in range(start, start + self.page)])

    def estimate_max_id(self) -> int:
        start, last_hit, empty = 1, 0, 0
        while empty < 3:
            users = self._window(start)
            if users:
                last_hit = max(int(u["id"]) for u in users)
                empty = 0
            else:
                empty += 1
            start = max(start * 2, self.page)
        return last_hit

    def pages(self, estimate: int) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """(ids scanned in this page, users found)."""
        start, highest = 1, 0
        while True:
            users = self._window(start)
            if users:
                highest = max(highest, max(int(u["id"]) for u in users))
            yield self.page, users
            start += self.page
            if start > max(estimate, highest) + self.gap:
                return


def _event_id(kind: str, site: str, user: str, profile: dict[str, Any]) -> str:
    digest = hashlib.sha1(json.dumps([site, user, profile], sort_keys=True, default=str).encode()).hexdigest()
    return f"moodle-{kind}-{digest[:24]}"


class Publisher:
    """Batches records into ingest requests (<= 500 records, <= 200 KiB) and counts the answers."""

    def __init__(self, api: ProcessorApi, site: str, report: ImportReport) -> None:
        self.api, self.site, self.report = api, site, report
        self._batch: list[dict[str, Any]] = []
        self._bytes = 0

    def add(self, record: dict[str, Any]) -> None:
        size = len(json.dumps(record, default=str))
        if self._batch and (len(self._batch) >= INGEST_RECORDS or self._bytes + size > INGEST_BYTES):
            self.flush()
        self._batch.append(record)
        self._bytes += size

    def flush(self) -> None:
        if not self._batch:
            return
        res = self.api.ingest(self.site, self._batch)
        self.report.published += int(res["accepted"])
        for r in res["results"]:
            if r["status"] == "REJECTED":
                rec = self._batch[r["index"]]
                self.report.rejected.append({"user_id": rec["user_id"], "code": r.get("code"), "path": r.get("path"),
                                             "message": r.get("message")})
        self._batch, self._bytes = [], 0


class Importer:
    def __init__(self, client: MoodleClient, api: ProcessorApi, mapping: SiteMapping, page: int = 100,
                 gap: int = 2000, progress: Progress | None = None,
                 now_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self.client = client
        self.api = api
        self.mapping = mapping
        self.site = mapping.site_id
        self.resolver = Resolver(client, mapping)
        self.scanner = UserScanner(self.resolver, page, gap)
        self.progress = progress or Progress(tty=False)
        self.now_ms = now_ms

    # ----------------------------------------------------------------- catalog
    def import_cohorts(self, report: ImportReport) -> None:
        rows = self.client.call("core_cohort_get_cohorts")
        report.cohorts = len(rows)
        ids = []
        for r in rows:
            idn = str(r.get("idnumber") or "")
            if not idn:
                report.notes.append(f"cohort {r.get('name')!r} (id {r.get('id')}) has no idnumber: give it one to "
                                    "map it to a segment")
                continue
            seg = self.mapping.segment_for(idn)
            if not seg:
                report.notes.append(f"cohort {idn!r} is not mapped to a segment (its idnumber is a remapped segment)")
                continue
            ids.append(self.api.put_segment(self.site, seg, str(r.get("name") or idn)))
        results = self.api.wait_commands(self.site, ids)
        report.segments_accepted = sum(1 for r in results.values() if r["status"] == "ACCEPTED")
        for r in results.values():
            if r["status"] != "ACCEPTED":
                report.notes.append(f"segment command {r['command_id']}: {r['status']} {r.get('code')}: "
                                    f"{r.get('message')}")

    def publish_fields(self, report: ImportReport, fields: dict[str, FieldDef]) -> None:
        ids = {}
        for f in fields.values():
            ids[self.api.put_field(self.site, f.shortname, f.payload())] = f
        results = self.api.wait_commands(self.site, list(ids))
        for cid, f in ids.items():
            r = results[cid]
            report.fields[f.shortname] = {"datatype": f.datatype.value, "options": f.options, "source": f.source,
                                          "complete": f.complete, "status": r["status"],
                                          **({"code": r.get("code"), "message": r.get("message")}
                                             if r["status"] != "ACCEPTED" else {})}

    # ------------------------------------------------------------------- users
    def _scan(self, report: ImportReport, fields: dict[str, FieldDef] | None,
              collector: FieldCollector | None) -> Iterator[tuple[str, dict[str, Any]]]:
        estimate = self.scanner.estimate_max_id()
        self.progress.task("users", total=estimate or None)
        if not estimate:
            report.notes.append("Moodle returned no users: the web-service user needs moodle/user:viewdetails "
                                "(and moodle/user:viewalldetails for usernames and idnumbers)")
        for scanned, users in self.scanner.pages(estimate):
            if collector is not None:
                collector.add(users)
            for u in users:
                key = self.mapping.user_key(u)
                if not key or (u.get("username") == "guest" and int(u["id"]) == 1):
                    continue
                report.users_read += 1
                yield key, to_profile(u, fields)
            self.progress.advance("users", scanned)
        self.progress.finish("users")

    def _fields(self, report: ImportReport) -> tuple[dict[str, FieldDef] | None, FieldCollector | None]:
        fields, why = plugin_fields(self.client)
        if fields is not None:
            report.field_source = "plugin"
            return fields, None
        report.field_source = "derived"
        report.notes.append(f"custom field definitions derived from user data ({why})")
        return None, FieldCollector()

    def run_import(self) -> ImportReport:
        started = time.monotonic()
        report = ImportReport("import", self.site)
        self.import_cohorts(report)
        fields, collector = self._fields(report)
        if fields is not None:
            self.publish_fields(report, fields)
        pub = Publisher(self.api, self.site, report)
        for key, profile in self._scan(report, fields, collector):
            pub.add({"op": "upsert", "user_id": key, "event_type": "USER_CREATED", "occurred_at": self.now_ms(),
                     "event_id": _event_id("import", self.site, key, profile), "profile": profile})
        pub.flush()
        report.created = report.published
        if collector is not None:
            self.publish_fields(report, collector.result())
            report.notes += collector.notes()
        report.seconds = round(time.monotonic() - started, 3)
        return report

    def run_resync(self, delete_missing: bool = False) -> ImportReport:
        started = time.monotonic()
        report = ImportReport("resync", self.site)
        held: dict[str, str | None] = {}  # user id -> compact JSON of the held profile (None: deleted)
        self.progress.task("held")
        for page in self.api.profiles(self.site):
            for u in page:
                held[u["user_id"]] = None if u["deleted"] else json.dumps(u["profile"], separators=(",", ":"))
            self.progress.advance("held", len(page))
        self.progress.finish("held")
        fields, collector = self._fields(report)
        pub = Publisher(self.api, self.site, report)
        covered: set[str] = set()
        seen: set[str] = set()
        for key, snap in self._scan(report, fields, collector):
            seen.add(key)
            covered.update(snap)
            old = held.get(key)
            if old is None:  # never held, or deleted
                report.created += 1
                pub.add({"op": "upsert", "user_id": key, "event_type": "USER_CREATED", "occurred_at": self.now_ms(),
                         "event_id": _event_id("resync", self.site, key, snap), "profile": snap})
                continue
            have = json.loads(old)
            diff = sorted(k for k in covered | set(snap) if normalize(snap.get(k)) != normalize(have.get(k)))
            if not diff:
                report.unchanged += 1
                continue
            report.differed += 1
            for k in diff:
                report.differing_fields[k] = report.differing_fields.get(k, 0) + 1
            patch = dict(snap)
            for k in diff:
                if k not in snap:
                    patch[k] = None  # Moodle returns this field for others but not for this user any more
            pub.add({"op": "upsert", "user_id": key, "event_type": "USER_UPDATED", "occurred_at": self.now_ms(),
                     "event_id": _event_id("resync", self.site, key, patch), "profile": patch})
        missing = [k for k, v in held.items() if v is not None and k not in seen]
        report.missing_in_moodle = len(missing)
        if missing and delete_missing:
            for k in missing:
                pub.add({"op": "delete", "user_id": k, "occurred_at": self.now_ms(),
                         "event_id": _event_id("resync-delete", self.site, k, {})})
            report.deleted = len(missing)
        elif missing:
            report.notes.append(f"{len(missing)} users the processor holds were not found in Moodle "
                                "(deleted, or not visible to the web-service user); --delete-missing deletes them")
        pub.flush()
        if collector is not None:
            report.notes += collector.notes()
        report.seconds = round(time.monotonic() - started, 3)
        return report
