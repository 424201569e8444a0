"""A generic downstream consumer of membership changes: the pattern, in one small file.

The reference consumer is the Moodle connector, ``python -m processor moodle sync``
(processor/connectors/moodle/, docs/moodle.md): it applies the changes to Moodle cohorts. This
example stays for LMSs without a connector, because it shows the three rules of consuming in a
few lines: de-duplicate by ``change_id``, apply in per-user order as assertions, and commit
offsets only after the store that applied the batch (the applied change ids are stored in the
same transaction: a crash re-delivers, de-duplication absorbs it). Its store is SQLite and its
"action" a printed ``ENROL``/``UNENROL`` line; replace both with your LMS's calls.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 python examples/segment_sync_consumer.py --db sync.db
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sqlite3
import sys
from typing import Callable

import fastavro
from confluent_kafka import Consumer

SCHEMA = os.path.join(os.path.dirname(__file__), "..", "schemas", "membership_change.avsc")
TOPIC = os.environ.get("TOPIC_MEMBERSHIP_CHANGES", "segment-automation.membership-changes.v1")


def load_schema() -> object:
    return fastavro.schema.load_schema(SCHEMA)


class SyncStore:
    """Current members per (site, segment), plus every change id already applied."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path)
        self.db.executescript(
            """
            CREATE TABLE IF NOT EXISTS applied (change_id TEXT PRIMARY KEY);
            CREATE TABLE IF NOT EXISTS members (site_id TEXT, segment_id TEXT, user_id TEXT,
                                                PRIMARY KEY (site_id, segment_id, user_id));
            """
        )

    def apply(self, change: dict, action: Callable[[str], None]) -> bool:
        """Apply one change (idempotent); returns False for a duplicate."""
        cur = self.db.execute("INSERT OR IGNORE INTO applied VALUES (?)", (change["change_id"],))
        if cur.rowcount == 0:
            return False
        key = (change["site_id"], change["segment_id"], change["user_id"])
        if change["change"] == "ADDED":
            cur = self.db.execute("INSERT OR IGNORE INTO members VALUES (?, ?, ?)", key)
            if cur.rowcount:
                action(f"ENROL   {change['user_id']} via segment {change['segment_id']} "
                       f"(site {change['site_id']}, rules {','.join(change['matched_rule_ids'])})")
        else:
            cur = self.db.execute("DELETE FROM members WHERE site_id=? AND segment_id=? AND user_id=?", key)
            if cur.rowcount:
                action(f"UNENROL {change['user_id']} via segment {change['segment_id']} (site {change['site_id']})")
        return True

    def commit(self) -> None:
        self.db.commit()

    def members(self, site: str, segment: str) -> set[str]:
        rows = self.db.execute("SELECT user_id FROM members WHERE site_id=? AND segment_id=?", (site, segment))
        return {r[0] for r in rows}


def run(bootstrap: str, db_path: str, group: str, max_idle_s: float | None = None,
        out: Callable[[str], None] = print) -> SyncStore:
    schema = load_schema()
    store = SyncStore(db_path)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
                  # librdkafka's own lines (a broker that is down) through Python logging, not raw on stderr
                  "logger": logging.getLogger("segment_sync_consumer.kafka")})
    assigned: list[bool] = []
    c.subscribe([TOPIC], on_assign=lambda consumer, parts: assigned.append(True))
    idle = 0.0
    try:
        while max_idle_s is None or idle < max_idle_s:
            msgs = c.consume(500, 0.5)
            if not msgs:
                idle += 0.5 if assigned else 0.0  # joining the group does not count as idle
                continue
            idle = 0.0
            for m in msgs:
                if m.error() or m.value() is None:
                    continue
                change = fastavro.schemaless_reader(io.BytesIO(m.value()), schema, None)
                store.apply(change, out)
            store.commit()  # store first, then offsets: at-least-once + dedupe = exactly-once effect
            c.commit(asynchronous=False)
    finally:
        c.close()
    return store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default="segment_sync.db")
    ap.add_argument("--group", default="segment-sync-example")
    ap.add_argument("--exit-when-idle", type=float, default=None, help="stop after N idle seconds")
    args = ap.parse_args()
    run(os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"), args.db, args.group, args.exit_when_idle)


if __name__ == "__main__":
    sys.exit(main())
