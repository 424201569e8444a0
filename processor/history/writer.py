"""Index membership changes and catalog entries, and keep the index within its retention (pure).

Every worker indexes the whole membership-changes topic and the catalog log (docs/api.md
"History and audit" says why), so ingest must be idempotent: a change id seen within the
retention is never indexed or counted twice (the processor re-emits a change byte for byte
after a crash, and a re-read after a restart sees it again), in whatever order changes arrive.
A change older than the retention is a re-emission of one already let go: skipped.

Retention (:class:`Retention`): changes older than ``max_age_days`` go, and a user keeps at
most ``max_changes_per_user`` (the oldest go first). The daily ADDED/REMOVED counts of a segment
are kept for ``max_age_days`` and then folded into the segment's baseline, so its size series
stays exact whatever the per-user limit removed. Audit records go with the age limit; a rule's
versions once superseded before it (the last one before the limit stays: it is the definition
in force at that time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from processor.catalog.entry import CatalogEntry
from processor.contract.models import MembershipChange
from processor.history import keys as K
from processor.history import records
from processor.history.overlay import Overlay


@dataclass(frozen=True, slots=True)
class Retention:
    max_age_days: int = 90
    max_changes_per_user: int = 1000

    def horizon(self, now_ms: int) -> int:
        """Changes and commands before this instant (epoch ms) are let go."""
        return now_ms - self.max_age_days * K.DAY_MS


RULE_COMMANDS = ("CreateRule", "UpdateRule", "DeleteRule", "DeleteSegment")


class Writer:
    """Writes through an :class:`Overlay` (committed by the caller, with the read positions)."""

    def __init__(self, store: Overlay, retention: Retention) -> None:
        self.store = store
        self.retention = retention

    # ----------------------------------------------------------------- changes
    def add_change(self, ch: MembershipChange, now_ms: int) -> bool:
        """Index ``ch``; False when it is a duplicate or already past the retention."""
        st = self.store
        if ch.emitted_at < self.retention.horizon(now_ms):
            return False
        xkey = K.seen_key(ch.site_id, ch.change_id)
        if st.get(xkey) is not None:
            return False
        st.put(xkey, b"")
        ukey = K.user_key(ch.site_id, ch.user_id, ch.emitted_at, ch.change_id)
        ckey = K.count_key(ch.site_id, ch.user_id)
        count, pruned = records.pair(st.get(ckey))
        st.put(ukey, records.encode(records.ChangeRecord(
            ch.segment_id, ch.change, ch.cause_kind, ch.cause_id, tuple(ch.matched_rule_ids), ch.occurred_at,
            None if ch.evidence is None else dict(ch.evidence))))
        st.put(K.segment_key(ch.site_id, ch.segment_id, ch.emitted_at, ch.change_id), ch.user_id.encode())
        st.put(K.time_key(ch.emitted_at, ch.site_id, ch.user_id, ch.change_id), b"")
        count += 1
        if count > self.retention.max_changes_per_user:
            prefix = K.user_prefix(ch.site_id, ch.user_id)
            for old in st.keys(prefix):
                if count <= self.retention.max_changes_per_user:
                    break
                emitted, cid = K.parse_tail(old, len(prefix))
                self._drop(ch.site_id, ch.user_id, old, emitted, cid)  # its T key goes in the age sweep
                count -= 1
                pruned = max(pruned, emitted)
        st.put(ckey, records.encode([count, pruned]))
        added = ch.change == "ADDED"
        dkey = K.day_key(ch.site_id, ch.segment_id, ch.emitted_at // K.DAY_MS)
        day = records.pair(st.get(dkey))
        day[0 if added else 1] += 1
        st.put(dkey, records.encode(day))
        if ch.cause_kind in records.COMMAND_CAUSES:
            ikey = K.impact_key(ch.site_id, ch.cause_id)
            impact = records.pair(st.get(ikey))
            impact[0 if added else 1] += 1
            st.put(ikey, records.encode(impact))
        return True

    def _drop(self, site: str, user: str, ukey: bytes, emitted: int, cid: str) -> bool:
        raw = self.store.get(ukey)
        if raw is None:
            return False
        rec = records.change(raw)
        self.store.delete(ukey)
        self.store.delete(K.segment_key(site, rec.segment_id, emitted, cid))
        return True

    # ----------------------------------------------------------------- catalog
    def add_catalog(self, offset: int, entry: CatalogEntry, now_ms: int) -> bool:
        """Index one catalog entry; False when it is past the retention or already indexed."""
        cmd = entry.command
        st = self.store
        if entry.processed_at < self.retention.horizon(now_ms):
            # past the retention for the audit log, but a rule defined then may still be in force
            # (a fresh index reads the whole catalog log): its version is kept until superseded
            if entry.status == "ACCEPTED" and cmd.payload_type in RULE_COMMANDS:
                self._rule_versions(cmd.site_id, offset, entry)
            return False
        akey = K.audit_key(cmd.site_id, offset)
        if st.get(akey) is not None:
            return False
        st.put(akey, records.encode(records.AuditRecord(
            cmd.command_id, cmd.payload_type, cmd.actor.user_id, tuple(cmd.actor.roles), cmd.issued_at,
            entry.processed_at, entry.status, entry.code, entry.message, dict(cmd.payload))))
        st.put(K.audit_time_key(entry.processed_at, cmd.site_id, offset), b"")
        ckey = K.command_key(cmd.site_id, cmd.command_id)
        first = st.get(ckey) is None
        if first:  # a re-sent command id decided again later: the first decision is the one folded
            st.put(ckey, offset.to_bytes(8, "big"))
        if first and entry.status == "ACCEPTED" and cmd.payload_type in RULE_COMMANDS:
            self._rule_versions(cmd.site_id, offset, entry)
        return True

    def _rule_versions(self, site: str, offset: int, entry: CatalogEntry) -> None:
        cmd, p = entry.command, entry.command.payload
        at = entry.processed_at
        if cmd.payload_type in ("CreateRule", "UpdateRule"):
            v = records.RuleVersion(at, cmd.command_id, p["segment_id"], p.get("name") or p["rule_id"],
                                    p["condition_json"], bool(p.get("enabled", True)))
            self.store.put(K.rule_key(site, p["rule_id"], offset), records.encode(v))
            return
        latest = _latest_versions(self.store, site)
        if cmd.payload_type == "DeleteRule":
            gone = [p["rule_id"]] if p["rule_id"] in latest else []
        else:  # DeleteSegment deletes the segment's rules
            gone = [rid for rid, (_, v) in latest.items() if v.segment_id == p["segment_id"] and not v.deleted]
        for rid in gone:
            old = latest[rid][1]
            v = records.RuleVersion(at, cmd.command_id, old.segment_id, old.name, old.condition_json, old.enabled,
                                    deleted=True)
            self.store.put(K.rule_key(site, rid, offset), records.encode(v))

    # --------------------------------------------------------------- retention
    def expire_changes(self, now_ms: int, budget: int = 5000) -> int:
        """Drop changes (and their per-user counts) past the age limit; at most ``budget`` per call
        (the caller commits and calls again). Returns how many time-index entries it removed."""
        horizon = self.retention.horizon(now_ms)
        st = self.store
        done = 0
        expired = []  # from the committed store: what this batch adds is recent (the next call sees it)
        for tkey in st.db.keys(from_key=K.T):
            if not tkey.startswith(K.T) or len(expired) >= budget or K.parse_time_key(tkey)[0] >= horizon:
                break
            expired.append(tkey)
        for tkey in expired:
            emitted, site, user, cid = K.parse_time_key(tkey)
            st.delete(tkey)
            st.delete(K.seen_key(site, cid))  # older than the horizon: refused by age from now on
            done += 1
            if self._drop(site, user, K.user_key(site, user, emitted, cid), emitted, cid):
                ckey = K.count_key(site, user)
                count, pruned = records.pair(st.get(ckey))
                if count <= 1:
                    st.delete(ckey)  # nothing left: the age check now covers what was pruned
                else:
                    st.put(ckey, records.encode([count - 1, pruned]))
        return done

    def expire_aggregates(self, now_ms: int) -> int:
        """Fold daily counts past the age limit into each segment's baseline; drop audit records
        (with their command's impact) past it, and rule versions superseded before it."""
        horizon = self.retention.horizon(now_ms)
        st = self.store
        done = 0
        cutoff_day = horizon // K.DAY_MS
        folded: dict[tuple[str, str], int] = {}
        for dkey in list(st.keys(K.D)):
            site, seg, day = K.parse_day_key(dkey)
            if day >= cutoff_day:
                continue
            added, removed = records.pair(st.get(dkey))
            folded[(site, seg)] = folded.get((site, seg), 0) + added - removed
            st.delete(dkey)
            done += 1
        for (site, seg), net in folded.items():
            bkey = K.base_key(site, seg)
            base = records.decode(st.get(bkey)) if st.get(bkey) else 0
            st.put(bkey, records.encode(base + net))
        for qkey in list(st.keys(K.Q)):
            processed, site, offset = K.parse_audit_time_key(qkey)
            if processed >= horizon:
                break
            raw = st.get(K.audit_key(site, offset))
            if raw is not None:
                rec = records.audit(raw)
                st.delete(K.impact_key(site, rec.command_id))
                ckey = K.command_key(site, rec.command_id)
                if st.get(ckey) == offset.to_bytes(8, "big"):
                    st.delete(ckey)
                st.delete(K.audit_key(site, offset))
            st.delete(qkey)
            done += 1
        versions: dict[tuple[str, str], list[tuple[bytes, records.RuleVersion]]] = {}
        for rkey in st.keys(K.R):
            site, rid, _ = K.parse_rule_key(rkey)
            versions.setdefault((site, rid), []).append((rkey, records.rule(st.get(rkey))))  # type: ignore[arg-type]
        for vs in versions.values():
            for i, (rkey, v) in enumerate(vs):
                superseded = i + 1 < len(vs) and vs[i + 1][1].processed_at < horizon
                if superseded or (i + 1 == len(vs) and v.deleted and v.processed_at < horizon):
                    st.delete(rkey)
                    done += 1
        return done


def _latest_versions(st: Any, site: str) -> dict[str, tuple[int, records.RuleVersion]]:
    """rule id -> (catalog offset, its latest version) of a site."""
    out: dict[str, tuple[int, records.RuleVersion]] = {}
    prefix = K.rule_site_prefix(site)
    for k in st.keys(prefix):
        _, rid, offset = K.parse_rule_key(k)
        out[rid] = (offset, records.rule(st.get(k)))
    return out
