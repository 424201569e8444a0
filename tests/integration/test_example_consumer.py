"""The reference enrolment consumer, against the real broker and worker output."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from tests.support.harness import Cluster, fold_membership, make_command, make_event

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "segment_sync_consumer.py"


def _load():
    spec = importlib.util.spec_from_file_location("segment_sync_consumer", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_consumer_applies_changes_once_and_matches_membership(cluster: Cluster, site: str, tmp_path: Path) -> None:
    """The example de-duplicates by change_id: re-delivered (duplicated) changes enrol nobody
    twice, and its store ends equal to the processor's membership."""
    mod = _load()
    cmds = [make_command(site, "UpsertSegment", segment_id="s", name="S"),
            make_command(site, "EnableSegmentAutomation", segment_id="s"),
            make_command(site, "CreateRule", rule_id="r", segment_id="s", name="r",
                         condition={"field": "city", "op": "equals", "value": "Oslo"})]
    for c in cmds:
        cluster.producer.command(c)
    cluster.producer.flush()
    cluster.wait_results([c.command_id for c in cmds])
    for i in range(12):
        cluster.producer.user_event(make_event(site, f"u{i}", city="Oslo" if i % 2 else "Rome"))
    cluster.producer.flush()
    cluster.wait(lambda: any(c.user_id == "u1" for c in cluster.changes_for(site)), what="u1 added")
    cluster.producer.user_event(make_event(site, "u1", "USER_UPDATED", city="Rome"))
    cluster.producer.flush()
    want = {f"u{i}" for i in range(3, 12, 2)}  # odd users live in Oslo; u1 moves away
    cluster.wait(lambda: fold_membership(cluster.changes_for(site)).get((site, "s")) == want, what="membership")
    # duplicate one already-published change, as a crash would
    dup = cluster.changes_for(site)[0]
    from processor.contract.codec import encode_membership_change

    cluster.producer.raw(cluster.settings.topics.membership_changes, f"{site}:{dup.user_id}".encode(),
                         encode_membership_change(dup))
    cluster.producer.flush()
    lines: list[str] = []
    store = mod.run(cluster.settings.bootstrap_servers, str(tmp_path / "sync.db"), f"example-{site}",
                    max_idle_s=3.0, out=lambda s: lines.append(s) if site in s else None)
    assert store.members(site, "s") == want
    enrols = [x for x in lines if x.startswith("ENROL")]
    assert len(enrols) == len(want) + 1  # u1 was enrolled, then unenrolled
    assert sum(1 for x in lines if x.startswith("UNENROL")) == 1
