"""Queries over the history index (pure: the handle is the index's committed store).

Lists are newest first, in pages: a cursor names the last item of the previous page (a
change by its ``(emitted_at, change_id)``, an audit record by its catalog offset), so pages
stay stable while new items arrive. Times are epoch milliseconds; days are UTC.
"""

from __future__ import annotations

import base64
import datetime as _dt
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from processor.history import keys as K
from processor.history import records
from processor.history.summary import summarize
from processor.history.writer import Retention

Handle = Any  # get(key), keys(from_key=, backwards=): the index's store


class BadCursor(ValueError):
    """A cursor that is not one this index handed out."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise BadCursor(text) from None


def day_text(day: int) -> str:
    return (_dt.date(1970, 1, 1) + _dt.timedelta(days=day)).isoformat()


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


class HistoryReads:
    """What the API reads; ``handle()`` is None while the index is not open (starting, stopped)."""

    def __init__(self, handle: Callable[[], Handle | None], retention: Retention,
                 status: Callable[[], dict[str, Any]] | None = None) -> None:
        self._handle = handle
        self.retention = retention
        self._status = status or (lambda: {})

    @property
    def db(self) -> Handle | None:
        return self._handle()

    def status(self) -> dict[str, Any]:
        """How far the index is (the reader's lag); shown with every answer."""
        return {"max_age_days": self.retention.max_age_days,
                "max_changes_per_user": self.retention.max_changes_per_user, **self._status()}

    # ---------------------------------------------------------------- helpers
    def _back(self, db: Handle, prefix: bytes, start: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Items of ``prefix`` from ``start`` (exclusive) backwards."""
        for k, v in db.items(from_key=start, backwards=True):
            if not k.startswith(prefix):
                return
            if k >= start:
                continue  # seek_for_prev lands on ``start`` itself when it exists
            yield k, v

    def _newest_first(self, db: Handle, prefix: bytes, cursor: str | None, since: int | None,
                      until: int | None) -> Iterator[tuple[bytes, bytes, int, str]]:
        """(key, value, emitted at, change id) of ``prefix``'s changes, from ``cursor`` (or before
        ``until``) back to ``since`` (inclusive)."""
        for k, v in self._back(db, prefix, self._start(prefix, cursor, until)):
            emitted, cid = K.parse_tail(k, len(prefix))
            if since is not None and emitted < since:
                return
            yield k, v, emitted, cid

    def _start(self, prefix: bytes, cursor: str | None, until: int | None) -> bytes:
        if cursor:
            tail = _unb64(cursor)
            if len(tail) < 9:
                raise BadCursor(cursor)
            return prefix + tail
        if until is not None:
            return prefix + K.ms(until)  # before ``until``: exclusive
        return K.end_of(prefix)

    def _actors(self, db: Handle, site: str) -> Callable[[str, str], dict[str, Any] | None]:
        cache: dict[str, dict[str, Any] | None] = {}

        def actor(kind: str, cause_id: str) -> dict[str, Any] | None:
            if kind not in records.COMMAND_CAUSES:
                return None
            if cause_id not in cache:
                a = self._audit_of(db, site, cause_id)
                cache[cause_id] = None if a is None else {"user_id": a.actor_user, "roles": list(a.actor_roles)}
            return cache[cause_id]

        return actor

    def _audit_of(self, db: Handle, site: str, command_id: str) -> records.AuditRecord | None:
        off = db.get(K.command_key(site, command_id))
        if off is None:
            return None
        raw = db.get(K.audit_key(site, int.from_bytes(off, "big")))
        return records.audit(raw) if raw else None

    @staticmethod
    def _change(site: str, user: str, emitted: int, cid: str, rec: records.ChangeRecord,
                actor: dict[str, Any] | None) -> dict[str, Any]:
        return {"change_id": cid, "site_id": site, "user_id": user, "segment_id": rec.segment_id,
                "change": rec.change, "cause_kind": rec.cause_kind, "cause_id": rec.cause_id,
                "matched_rule_ids": list(rec.matched_rule_ids), "occurred_at": rec.occurred_at,
                "emitted_at": emitted, "evidence": rec.evidence, "actor": actor}

    # ---------------------------------------------------------------- changes
    def user_history(self, db: Handle, site: str, user: str, limit: int, cursor: str | None = None,
                     since: int | None = None, until: int | None = None, segment: str | None = None) -> Page:
        """A user's changes, newest first; optionally of one segment, within [since, until)."""
        prefix = K.user_prefix(site, user)
        actor = self._actors(db, site)
        items: list[dict[str, Any]] = []
        last = b""
        for k, v, emitted, cid in self._newest_first(db, prefix, cursor, since, until):
            rec = records.change(v)
            last = k
            if segment is not None and rec.segment_id != segment:
                continue
            items.append(self._change(site, user, emitted, cid, rec, actor(rec.cause_kind, rec.cause_id)))
            if len(items) >= limit:
                break
        more = len(items) >= limit and last
        return Page(items, _b64(last[len(prefix):]) if more else None)

    def segment_history(self, db: Handle, site: str, segment: str, limit: int, cursor: str | None = None,
                        since: int | None = None, until: int | None = None) -> Page:
        """A segment's changes within [since, until), newest first."""
        prefix = K.segment_prefix(site, segment)
        actor = self._actors(db, site)
        items: list[dict[str, Any]] = []
        last = b""
        for k, v, emitted, cid in self._newest_first(db, prefix, cursor, since, until):
            user = v.decode()
            raw = db.get(K.user_key(site, user, emitted, cid))
            if raw is None:
                continue  # pruned between the two reads
            rec = records.change(raw)
            items.append(self._change(site, user, emitted, cid, rec, actor(rec.cause_kind, rec.cause_id)))
            last = k
            if len(items) >= limit:
                break
        return Page(items, _b64(last[len(prefix):]) if len(items) >= limit else None)

    def series(self, db: Handle, site: str, segment: str, since: int, until: int,
               now_size: int | None = None) -> list[dict[str, Any]]:
        """The segment's size at the end of each UTC day from ``since`` to ``until`` (inclusive),
        with that day's ADDED and REMOVED (de-duplicated changes).

        Counted forward from the baseline of the days already expired; or, with ``now_size`` (the
        segment's member count now), backwards from it: exact also for an index that did not see
        the topic from its start (a worker added later, a topic whose retention dropped its
        beginning), since only the kept days' counts are needed."""
        raw = db.get(K.base_key(site, segment))
        size = records.decode(raw) if raw else 0
        first, last = since // K.DAY_MS, until // K.DAY_MS
        days: dict[int, list[int]] = {}
        later = 0  # net change of the days after ``last``
        prefix = K.day_prefix(site, segment)
        for k, v in db.items(from_key=prefix):
            if not k.startswith(prefix):
                break
            day = K.parse_day_key(k)[2]
            a, r = records.pair(v)
            if day > last:
                later += a - r
            elif day < first:
                size += a - r
            else:
                days[day] = [a, r]
        if now_size is not None:  # size at the start of the window = now - everything since
            size = now_size - later - sum(a - r for a, r in days.values())
        out = []
        for day in range(first, last + 1):
            a, r = days.get(day, (0, 0))
            size += a - r
            out.append({"date": day_text(day), "added": a, "removed": r, "size": size})
        return out

    def complete(self, db: Handle) -> bool:
        """Whether the index read the changes topic from its very first record (its counts then add
        up to every segment's size: the series is counted forward, locally)."""
        return db.get(K.COMPLETE) == b"1"

    def change_as_of(self, db: Handle, site: str, user: str, segment: str, as_of: int) -> dict[str, Any] | None:
        """The user's last change for ``segment`` decided at or before ``as_of`` (None if the kept
        history holds none)."""
        page = self.user_history(db, site, user, 1, None, None, as_of + 1, segment)
        return page.items[0] if page.items else None

    def user_has_pruned(self, db: Handle, site: str, user: str) -> bool:
        """Whether the per-user limit already let some of this user's changes go."""
        raw = db.get(K.count_key(site, user))
        return bool(raw) and records.pair(raw)[1] > 0

    # ------------------------------------------------------------------ rules
    def rules_as_of(self, db: Handle, site: str, segment: str, at: int) -> list[dict[str, Any]]:
        """The segment's rules as the catalog held them at ``at``: each rule's last accepted
        version decided at or before it, unless that version deleted the rule."""
        prefix = K.rule_site_prefix(site)
        latest: dict[str, records.RuleVersion] = {}
        for k, v in db.items(from_key=prefix):
            if not k.startswith(prefix):
                break
            _, rid, _ = K.parse_rule_key(k)
            ver = records.rule(v)
            if ver.processed_at <= at:
                latest[rid] = ver
        return [{"rule_id": rid, "name": v.name, "segment_id": v.segment_id, "condition_json": v.condition_json,
                 "enabled": v.enabled, "since": v.processed_at, "command_id": v.command_id}
                for rid, v in sorted(latest.items()) if v.segment_id == segment and not v.deleted]

    # ------------------------------------------------------------------ audit
    def audit(self, db: Handle, site: str, limit: int, cursor: str | None = None, since: int | None = None,
              until: int | None = None) -> Page:
        """Every command of the site, newest first, with its decision and its impact so far."""
        prefix = K.audit_prefix(site)
        if cursor:
            try:
                start = prefix + int(cursor).to_bytes(8, "big")
            except (ValueError, OverflowError):
                raise BadCursor(cursor) from None
        else:
            start = K.end_of(prefix)
        items: list[dict[str, Any]] = []
        for k, v in self._back(db, prefix, start):
            offset = int.from_bytes(k[len(prefix):], "big")
            rec = records.audit(v)
            if until is not None and rec.processed_at >= until:
                continue
            if since is not None and rec.processed_at < since:
                continue  # catalog order is nearly time order, not exactly: keep scanning
            items.append(self.audit_item(db, site, offset, rec))
            if len(items) >= limit:
                break
        return Page(items, str(items[-1]["catalog_offset"]) if len(items) >= limit else None)

    def audit_item(self, db: Handle, site: str, offset: int, rec: records.AuditRecord) -> dict[str, Any]:
        impact = db.get(K.impact_key(site, rec.command_id))
        added, removed = records.pair(impact)
        first = db.get(K.command_key(site, rec.command_id)) == offset.to_bytes(8, "big")
        return {"catalog_offset": offset, "command_id": rec.command_id, "type": rec.payload_type,
                "actor": {"user_id": rec.actor_user, "roles": list(rec.actor_roles)},
                "issued_at": rec.issued_at, "processed_at": rec.processed_at, "status": rec.status,
                "code": rec.code, "message": rec.message, "summary": summarize(rec.payload_type, rec.payload),
                "payload": rec.payload,
                # the impact of a re-sent id counts once, with its first decision
                "impact": {"added": added, "removed": removed} if first else {"added": 0, "removed": 0}}

    def command(self, db: Handle, site: str, command_id: str) -> dict[str, Any] | None:
        off = db.get(K.command_key(site, command_id))
        if off is None:
            return None
        offset = int.from_bytes(off, "big")
        raw = db.get(K.audit_key(site, offset))
        return None if raw is None else self.audit_item(db, site, offset, records.audit(raw))
