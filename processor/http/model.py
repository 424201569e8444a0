"""What the HTTP layer needs from the worker: a narrow read model, and a sink for writes.

The HTTP layer never sees the Faust app, the consumer or a RocksDB handle: it reads the catalog
view, the stored state of this worker's own partitions, readiness and metrics through these
Protocols, and hands writes (commands, ingested records) back to the runtime. The runtime's
object satisfies them structurally (today processor/read_model.py adapts ``Processor``).
"""

from __future__ import annotations

import logging
from typing import Any, Iterator, Mapping, Protocol, Sequence

from processor.catalog.registry import CatalogRegistry
from processor.state.user_state import UserState


class MemberRow(Protocol):
    """One entry of a segment's members tab (processor.state.reads.Member)."""

    user_id: str

    def as_dict(self) -> dict[str, Any]: ...


class SiteScan(Protocol):
    """A full-site scan of this worker's partitions, driven item by item by the time-sliced
    scanner (processor/http/scans.py)."""

    def users(self) -> Iterator[UserState]: ...  # every stored user of the site, decoded

    def user_deleted_flags(self) -> Iterator[bool]: ...  # per stored user: is it a deleted user's tombstone

    def member_segments(self) -> Iterator[str]: ...  # the segment of every member entry

    def segment_members(self, segment_id: str, after: str = "") -> Iterator[tuple[str, bytes, bytes | None]]:
        """(user id, members-tab entry, encoded user state) per member past ``after``, in user-id order."""
        ...

    def current(self) -> bool: ...  # False once a partition it reads was revoked or re-opened


class TableReads(Protocol):
    """Reads over THIS worker's active partitions of the users table."""

    def owned_partitions(self) -> list[int]: ...

    def user(self, site_id: str, user_id: str) -> UserState | None: ...

    def members(self, site_id: str, segment_id: str, after: str = "", limit: int = 50) -> Sequence[MemberRow]:
        """Members with user_id > ``after``, sorted by user_id, at most ``limit``."""
        ...

    def users(self, site_id: str, after: str = "", limit: int = 50) -> Sequence[UserState]:
        """Stored users with user_id > ``after``, sorted by user_id, at most ``limit``."""
        ...

    def scan(self, site_id: str) -> SiteScan: ...


class ApiMetrics(Protocol):
    def observe_api(self, method: str, endpoint: str, status: int, seconds: float) -> None: ...

    def render(self) -> bytes: ...


class ReadModel(Protocol):
    """The worker as the HTTP layer sees it."""

    registry: CatalogRegistry  # the catalog view: .site(id), .command(site, id), .commands.oldest(site)
    store: TableReads
    metrics: ApiMetrics
    log: logging.Logger
    # history: processor.history.reads.HistoryReads | None, read with getattr (optional: None
    # or absent when the worker keeps no history index, HISTORY_ENABLED=0)

    def counters(self) -> Mapping[str, int]: ...  # shown by /readyz

    def readiness(self) -> tuple[bool, bool]: ...  # (catalog loaded, table recovery complete)

    def update_gauges(self) -> None: ...  # before /metrics renders

    def self_url(self) -> str: ...  # this worker's base URL, no trailing "/"

    def peer_urls(self) -> list[str]: ...  # every worker owning user partitions, this one included

    async def send_command(self, site_id: str, value: bytes) -> None: ...  # an encoded Command

    def ingest_producer(self, delivery_timeout_s: float) -> Any: ...  # a confluent_kafka Producer
