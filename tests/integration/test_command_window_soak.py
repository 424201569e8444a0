"""A real worker under a flood of rejected commands keeps flat memory (issue 17). ``-m soak``.

Its own broker and worker with a small window (COMMAND_DEDUP_WINDOW=200): 300 rejected commands
of one site are decided live; a re-send inside the window gets the original result, a re-send
after it is processed again. Then 100,000 more rejected decisions (the catalog entries a worker
writes for them, many sites, 4 partitions) are folded by the running worker: its RSS after them
is within a few MiB of its RSS after the first 10,000. bench/command_memory_bench.py measures the
200,000-command curve with the default window, and the restart.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from processor.catalog.entry import CatalogEntry
from processor.contract.models import Actor, Command
from tests.support.harness import Cluster, WorkerProcess, proc_memory_kb
from tests.integration.conftest import warm_up

pytestmark = [pytest.mark.integration, pytest.mark.soak]
ADMIN = Actor("adm", ("site_admin",))
WINDOW = 200


@pytest.fixture(scope="module")
def small_window(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(Path(tmp_path_factory.mktemp("cmd-window")), app_id="sa-cmd-window")
    try:
        c.workers.append(WorkerProcess(c.settings, "w0", c.work_dir, {"COMMAND_DEDUP_WINDOW": str(WINDOW)}).start())
        warm_up(c)
        yield c
    finally:
        c.close()


def catalog_offset(c: Cluster) -> int:
    with urllib.request.urlopen(f"{c.workers[0].url}/readyz", timeout=10) as r:
        return int(json.loads(r.read())["catalog_offset"])


def rss_kib(c: Cluster) -> int:
    assert c.workers[0].proc is not None
    return proc_memory_kb(c.workers[0].proc.pid)["VmRSS"]


@pytest.mark.timeout(1800)
def test_rejected_flood_keeps_memory_flat_and_the_window_answers_duplicates(small_window: Cluster) -> None:
    c = small_window
    site, now = "flooded", int(time.time() * 1000)
    cmds = [Command(f"flood-{i:05d}", site, now, ADMIN, "DeleteRule", {"rule_id": f"r{i}"})
            for i in range(WINDOW + 100)]
    for cmd in cmds:
        c.producer.command(cmd)
    c.producer.flush()
    first = c.wait_results([x.command_id for x in cmds], 900)
    assert {r.code for r in first.values()} == {"NOT_FOUND"}

    inside, outside = cmds[WINDOW + 50], cmds[0]
    marker = Command("marker", site, now, ADMIN, "DeleteRule", {"rule_id": "m"})
    for cmd in (inside, outside, marker):
        c.producer.command(cmd)
    c.producer.flush()
    c.wait_results([marker.command_id], 120)
    again = {cid: [r for r in c.out.result_log if r.command_id == cid] for cid in (inside.command_id,
                                                                                  outside.command_id)}
    assert again[inside.command_id] == [first[inside.command_id]] * 2  # the original result, again
    old = again[outside.command_id]
    assert len(old) == 2 and old[1].processed_at > old[0].processed_at  # decided a second time

    # 100,000 more rejections, as the catalog entries the worker writes for them
    base_offset = catalog_offset(c)
    topic = c.settings.topics.catalog
    samples: dict[int, int] = {}
    for start in range(0, 100_000, 10_000):
        for i in range(start, start + 10_000):
            cmd = Command(f"log-{i}", f"site-{i}", now, ADMIN, "DeleteRule", {"rule_id": f"r{i}"})
            entry = CatalogEntry(cmd, "REJECTED", "NOT_FOUND", f"rule 'r{i}' does not exist", now, i % 4,
                                 1_000_000 + i // 4, None)
            c.producer.raw(topic, cmd.site_id.encode(), entry.encode())
        c.producer.flush()
        c.wait(lambda: catalog_offset(c) - base_offset >= start + 10_000, 300, "entries folded")
        samples[start + 10_000] = rss_kib(c)
    growth_mib = (samples[100_000] - samples[10_000]) / 1024
    print(f"\nRSS MiB by entries folded: { {k: round(v / 1024, 1) for k, v in samples.items()} }")
    assert growth_mib < 10, samples
