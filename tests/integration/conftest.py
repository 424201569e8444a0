"""Integration fixtures: one embedded broker and one real worker process per session.

Tests share the worker but each uses its own site id, so they never see
each other's state. Workers are warmed up (every partition of every input
assigned and consumed) before the first test runs.
"""

from __future__ import annotations

import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.harness import Cluster, make_command

pytestmark = pytest.mark.integration


def warm_up(cluster: Cluster, timeout: float = 90.0) -> None:
    """Prove every partition of user events and commands is consumed by some worker."""
    s = cluster.settings
    marker = f"warmup-{uuid.uuid4().hex[:8]}".encode()
    for p in range(s.partitions):
        cluster.producer.raw(s.topics.user_events, marker, b"\x00warmup", partition=p)
    ids = []
    for p in range(s.command_partitions):
        c = make_command(f"warmup-{uuid.uuid4().hex[:6]}", "UpsertSegment", roles=("system",),
                         segment_id="s", name="warm-up")
        cluster.producer.raw(s.topics.commands, c.site_id.encode(), __import__(
            "processor.contract.codec", fromlist=["encode_command"]).encode_command(c), partition=p)
        ids.append(c.command_id)
    cluster.producer.flush()
    cluster.wait(
        lambda: {d.source_partition for d in cluster.out.dead_letters if d.key == marker}
        >= set(range(s.partitions)),
        timeout,
        "warm-up dead letters from every user-event partition",
    )
    cluster.wait_results(ids, timeout)


@contextmanager
def two_workers(root: Path, app_id: str) -> Iterator[Cluster]:
    """A cluster of two workers sharing the partitions: "a" owns (and has consumed) every
    partition before "b" joins and takes half of them in a rebalance; closed on exit."""
    c = Cluster(root, app_id=app_id)
    try:
        c.start_worker("a")
        warm_up(c, timeout=120)
        c.start_worker("b")
        warm_up(c, timeout=120)
        yield c
    finally:
        c.close()


class SharedPair:
    """One two-worker cluster (``two_workers``) shared by the modules that need "two workers on
    the standard settings" and use their own site ids: each cluster costs a group join per worker
    and a teardown. ``get()`` hands out the current one while it is intact (workers "a" and "b",
    both alive: a test may kill and restart one of them on its state directory), else closes it
    and starts a fresh one (after a module that replaced its workers, e.g. test_two_workers.py)."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self._factory = factory
        self._stack: ExitStack | None = None
        self._cluster: Cluster | None = None

    def _intact(self) -> bool:
        c = self._cluster
        return c is not None and [w.name for w in c.workers] == ["a", "b"] and all(w.alive for w in c.workers)

    def get(self) -> Cluster:
        if not self._intact():
            self.close()
            self._stack = ExitStack()
            self._cluster = self._stack.enter_context(
                two_workers(Path(self._factory.mktemp("pair")), "sa-pair"))
        assert self._cluster is not None
        return self._cluster

    def close(self) -> None:
        if self._stack is not None:
            self._stack.close()
        self._stack, self._cluster = None, None


@pytest.fixture(scope="session")
def shared_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedPair]:
    pairs = SharedPair(tmp_path_factory)
    try:
        yield pairs
    finally:
        pairs.close()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(Path(tmp_path_factory.mktemp("cluster")))
    try:
        c.start_worker("w0")
        warm_up(c)
        yield c
    finally:
        c.close()


@pytest.fixture
def site() -> str:
    """A fresh site id per test: tests never share catalog or users."""
    return f"site-{uuid.uuid4().hex[:10]}"
