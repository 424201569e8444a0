"""Today's ``Processor`` as the HTTP layer's read model (processor/http/model.py).

A stop-gap on the runtime side: the runtime's own read model over its store replaces it. It is
the one place outside processor/app.py that reaches into the Faust app for the API (the users
table's open RocksDB handles, the assignor, the canonical URL); the HTTP layer sees only the
Protocols. The key-space reads themselves are processor/state/reads.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from processor.config import Settings
from processor.state import reads
from processor.state.user_state import UserState

if TYPE_CHECKING:
    from processor.app import Processor


def ingest_producer(settings: Settings, delivery_timeout_s: float) -> Any:
    """The producer of ``POST /sites/{site}/ingest/users``: ``acks=all``, the workers' (Java
    client's) partitioner, one request in flight so a user's records stay in request order."""
    from confluent_kafka import Producer

    from processor.librdkafka import KAFKA_LOG

    s = settings
    return Producer({
        "bootstrap.servers": s.bootstrap_servers, "client.id": f"{s.app_id}-ingest", "acks": "all",
        "linger.ms": 5, "partitioner": "murmur2_random",
        "max.in.flight.requests.per.connection": 1,
        "message.timeout.ms": int(delivery_timeout_s * 1000), "log.connection.close": False,
        "logger": KAFKA_LOG,
    })


class ProcessorTableReads:
    """Reads over the users table partitions this worker holds as active."""

    def __init__(self, proc: "Processor") -> None:
        self.proc = proc

    def owned_partitions(self) -> list[int]:
        try:
            return sorted(tp.partition for tp in self.proc.app.assignor.assigned_actives()
                          if tp.topic == self.proc.s.topics.user_events)
        except Exception:  # noqa: BLE001 - not assigned yet
            return []

    def _handles(self) -> list[tuple[int, Any]]:
        store = self.proc.users.data
        return [(p, store._db_for_partition(p)) for p in self.owned_partitions()]

    def _dbs(self) -> list[Any]:
        return [db for _, db in self._handles()]

    def user(self, site_id: str, user_id: str) -> UserState | None:
        return reads.user(self._dbs(), site_id, user_id)

    def members(self, site_id: str, segment_id: str, after: str = "", limit: int = 50) -> list[reads.Member]:
        return reads.members(self._dbs(), site_id, segment_id, after, limit)

    def users(self, site_id: str, after: str = "", limit: int = 50) -> list[UserState]:
        return reads.users(self._dbs(), site_id, after, limit)

    def scan(self, site_id: str) -> reads.HandleScan:
        handles = self._handles()
        open_dbs = self.proc.users.data._dbs

        def current() -> bool:  # each handle is still its partition's open one (not revoked or re-opened)
            return all(open_dbs.get(p) is db for p, db in handles)

        return reads.HandleScan([db for _, db in handles], site_id, current)


class ProcessorReadModel:
    """What processor/http needs from the worker, read from a ``Processor``."""

    def __init__(self, proc: "Processor") -> None:
        self.proc = proc
        self.registry = proc.registry
        self.store = ProcessorTableReads(proc)
        self.metrics = proc.metrics
        self.log = proc.log
        self.history = proc.history.reads if proc.history else None  # processor/history (None: disabled)

    def counters(self) -> Mapping[str, int]:
        return self.proc.counters

    def readiness(self) -> tuple[bool, bool]:
        return self.proc.readiness()

    def update_gauges(self) -> None:
        self.proc._update_gauges()

    def self_url(self) -> str:
        return str(self.proc.app.conf.canonical_url).rstrip("/")

    def peer_urls(self) -> list[str]:
        try:
            meta = self.proc.app.router.table_metadata(self.proc.users.name)
            urls = sorted({str(u).rstrip("/") for u in meta})
        except Exception:  # noqa: BLE001 - not assigned yet
            urls = []
        return urls or [self.self_url()]

    async def send_command(self, site_id: str, value: bytes) -> None:
        await self.proc.commands_out.send(key=site_id.encode(), value=value)

    def ingest_producer(self, delivery_timeout_s: float) -> Any:
        return ingest_producer(self.proc.s, delivery_timeout_s)
