"""Command progress and batches on the real broker with two worker processes.

* A rule's backfill goes ACCEPTED -> APPLYING -> APPLIED: each worker's partitions report on
  the catalog log, both workers answer the same progress, the results topic carries APPLYING
  and APPLIED records, and the segment shows which command is applying, then when it became
  current.
* A batch of rules (``POST /sites/{site}/rules:bulk``) is one command with one backfill order per
  users partition on the control topic, and gives the members the rules call for.
* A worker killed (kill -9) in the middle of a backfill: the survivor takes its partitions over,
  runs their orders again, reports them, and the command reaches APPLIED with every user
  evaluated once per partition and every member added.

* The console (Playwright, Debian's Chromium): turning automation on shows the command applying
  with a progress bar and the segment updating, then applied, and the segment current as of then.

The cluster's workers slow the backfills of commands whose id starts with ``slow-`` (1.5 s per
chunk) or ``api-`` (0.8 s: the API's, for the console), with ``FAULT_BACKFILL_DELAY``, so a test
sees them in flight and can kill a worker mid-way.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from processor.api.auth import make_token
from processor.client import TopicReader
from tests.support.harness import TEST_JWT_SECRET, Cluster, WorkerProcess, fold_membership, make_command, make_event

from .conftest import warm_up
from .test_api import call
from .test_console import TOKEN_KEY, browser, shot  # noqa: F401 - the browser fixture

DEPTS = ["sales", "hr", "ops", "legal"]
SLOW = {"FAULT_BACKFILL_DELAY": "1500:slow-,800:api-"}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(Path(tmp_path_factory.mktemp("progress")), app_id="sa-progress")
    try:
        for name in ("a", "b"):
            c.workers.append(WorkerProcess(c.settings, name, c.work_dir, extra_env=SLOW).start())
            warm_up(c, timeout=120)
        c.wait(lambda: _owners(c) == 2, 60, "both workers own partitions")
        yield c
    finally:
        c.close()


def _owners(c: Cluster) -> int:
    """How many live workers own user-event partitions (report their lag)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    n = 0
    for w in c.workers:
        try:
            text = urllib.request.urlopen(f"{w.url}/metrics", timeout=5).read().decode()
        except OSError:
            continue
        n += any(s.name == "segment_consumer_lag" and s.labels["topic"] == c.settings.topics.user_events
                 for f in text_string_to_metric_families(text) for s in f.samples)
    return n


def backfilled(w: WorkerProcess, cid: str) -> set[int]:
    """The partitions whose backfill of ``cid`` the worker logged as done."""
    import re

    text = w.log_path.read_text(errors="replace")
    return {int(p) for p in re.findall(rf"backfill {re.escape(cid)} site=\S+ partition=(\d+)", text)}


def tok(site: str) -> str:
    return make_token(TEST_JWT_SECRET, "ops", site, ["site_admin"])


def seed(c: Cluster, site: str, n: int, segment: str = "s") -> dict[str, str]:
    """A managed segment and ``n`` stored users (department round robin)."""
    cmds = [make_command(site, "UpsertSegment", segment_id=segment, name=segment),
            make_command(site, "EnableSegmentAutomation", segment_id=segment)]
    for cmd in cmds:
        c.producer.command(cmd)
    c.producer.flush()
    c.wait_applied([x.command_id for x in cmds], 60)
    users = {f"u{i:05d}": DEPTS[i % len(DEPTS)] for i in range(n)}
    for uid, dept in users.items():
        c.producer.user_event(make_event(site, uid, department=dept))
    c.producer.flush()
    c.wait(lambda: c.stored_users(site) == n, 120, "every user stored")
    return users


def status(w: WorkerProcess, site: str, cid: str) -> dict[str, Any]:
    code, body = call(w.url, "GET", f"/sites/{site}/commands/{cid}", tok(site))
    assert code == 200, body
    return body


def control_orders(c: Cluster) -> list[dict[str, Any]]:
    """Every backfill order on the control topic so far (timer ticks left out)."""
    reader = TopicReader(c.settings.bootstrap_servers, c.settings.topics.control)
    out: list[dict[str, Any]] = []
    try:
        idle = 0
        while idle < 3:
            batch = reader.poll_batch(timeout=0.5, max_messages=10000)
            idle = 0 if batch else idle + 1
            out += [json.loads(v) for _, v in batch if v and b"command_id" in v]
    finally:
        reader.close()
    return out


def test_a_rule_goes_accepted_applying_applied_on_both_workers(pair: Cluster) -> None:
    site = f"pg-{uuid.uuid4().hex[:8]}"
    users = seed(pair, site, 400)
    rule = make_command(site, "CreateRule", command_id=f"slow-{uuid.uuid4().hex[:10]}", rule_id="r",
                        segment_id="s", name="r", condition={"field": "department", "op": "equals", "value": "hr"})
    pair.producer.command(rule)
    pair.producer.flush()
    # while it runs: some partitions done, not all; every worker answers the same
    seen_applying: list[dict[str, Any]] = []
    segment_applying: list[Any] = []

    def in_flight() -> bool:
        st = status(pair.workers[0], site, rule.command_id)
        p = st.get("progress") or {}
        if st.get("state") == "APPLYING" and 0 < p["partitions_done"] < p["partitions_total"]:
            seen_applying.append(st)
            segs = call(pair.workers[1].url, "GET", f"/sites/{site}/segments", tok(site))[1]["segments"]
            segment_applying.append(next(x for x in segs if x["segment_id"] == "s")["applying"])
            return True
        return st.get("state") == "APPLIED"

    pair.wait(in_flight, 60, "the command in flight")
    assert seen_applying, "the command was APPLIED before any progress could be seen (the delay did not hold)"
    st = seen_applying[0]
    assert (st["status"], st["progress"]["partitions_total"]) == ("ACCEPTED", pair.settings.partitions)
    assert 0 < st["progress"]["users_evaluated"] < len(users)
    assert [a["command_id"] for a in segment_applying[0]] == [rule.command_id]

    final = pair.wait_applied([rule.command_id], 90)[rule.command_id]
    want = {u for u, d in users.items() if d == "hr"}
    assert (final.partitions_done, final.partitions_total, final.users_evaluated, final.users_added,
            final.users_removed) == (8, 8, len(users), len(want), 0)
    # both workers fold the same progress; the segment is current as of the last partition's report
    pair.wait(lambda: status(pair.workers[0], site, rule.command_id) == status(pair.workers[1], site, rule.command_id),
              10, "both workers answer the same")
    answer = status(pair.workers[1], site, rule.command_id)
    assert answer["state"] == "APPLIED" and answer["progress"]["applied_at"] == final.applied_at
    assert backfilled(pair.workers[0], rule.command_id) and backfilled(pair.workers[1], rule.command_id)
    segs = call(pair.workers[1].url, "GET", f"/sites/{site}/segments", tok(site))[1]["segments"]
    s = next(x for x in segs if x["segment_id"] == "s")
    assert (s["current_as_of"], s["applying"]) == (final.applied_at, [])
    # the results topic: the decision first, then partitions done, APPLIED last; every change out
    statuses = [r.status for r in pair.out.result_log + pair.out.progress_log if r.command_id == rule.command_id]
    assert statuses[0] == "ACCEPTED" and "APPLYING" in statuses and "APPLIED" in statuses
    # the last partition's changes left before its APPLIED; the other worker's follow within a release
    pair.wait(lambda: fold_membership(pair.changes_for(site)).get((site, "s"), set()) == want, 10, "members")


def test_a_batch_of_rules_is_one_backfill_per_partition(pair: Cluster) -> None:
    site = f"pg-{uuid.uuid4().hex[:8]}"
    users = seed(pair, site, 200)
    for seg in ("t", "u"):
        for cmd in (make_command(site, "UpsertSegment", segment_id=seg, name=seg),
                    make_command(site, "EnableSegmentAutomation", segment_id=seg)):
            pair.producer.command(cmd)
    pair.producer.flush()
    before = {o["command_id"] for o in control_orders(pair) if o["site_id"] == site}
    rules = [{"rule_id": f"r{i:02d}", "segment_id": ("s", "t", "u")[i % 3], "name": f"r{i}",
              "condition": {"all": [{"field": "department", "op": "equals", "value": DEPTS[i % 4]},
                                    {"field": "username", "op": "is_not_empty"}]}} for i in range(30)]
    rules[7]["condition"] = f'department == "{DEPTS[3]}"'  # the text form too
    code, body = call(pair.workers[0].url, "POST", f"/sites/{site}/rules:bulk", tok(site), {"rules": rules})
    assert code == 202 and (body["operations"], body["created"]) == (30, 30), body
    final = pair.wait_applied([body["command_id"]], 90)[body["command_id"]]
    orders = [o for o in control_orders(pair) if o["site_id"] == site and o["command_id"] not in before]
    assert {o["command_id"] for o in orders} == {body["command_id"]}
    assert len(orders) == pair.settings.partitions  # one backfill order per partition for 30 rules
    assert sorted({tuple(s) for o in orders for s in o["segments"]}) == [("s", "RECONCILE"), ("t", "RECONCILE"),
                                                                         ("u", "RECONCILE")]
    # the members the rules call for: the users have no username, so only rule 7 (text form) matches
    want = {"s": set(), "t": {u for u, d in users.items() if d == DEPTS[3]}, "u": set()}
    assert rules[7]["segment_id"] == "t" and want["t"]
    pair.wait(lambda: fold_membership(pair.changes_for(site)).get((site, "t"), set()) == want["t"], 30, "members")
    got = fold_membership(pair.changes_for(site))
    assert {seg: got.get((site, seg), set()) for seg in "stu"} == want
    assert final.users_added == sum(len(m) for m in want.values())
    # a batch with one invalid rule changes nothing and says which
    bad = [dict(rules[0], rule_id="new1"), dict(rules[1], rule_id="new2", segment_id="nope")]
    code, body = call(pair.workers[1].url, "POST", f"/sites/{site}/rules:bulk?dry_run=true", tok(site),
                      {"rules": bad})
    assert code == 422 and [(e["index"], e["code"], e["path"]) for e in body["errors"]] == [
        (1, "UNKNOWN_SEGMENT", "$.rules[1].segment_id")], body


def test_a_segments_import_is_one_batch_and_one_backfill_per_partition(pair: Cluster) -> None:
    """``segments:bulk`` (the CSV import's endpoint): the good rows' commands go as one Batch; a
    bad row is answered on its own and does not sink the others."""
    site = f"pg-{uuid.uuid4().hex[:8]}"
    seed(pair, site, 40)
    before = {o["command_id"] for o in control_orders(pair) if o["site_id"] == site}
    rows = [{"segment_id": f"g{i}", "name": f"G{i}", "managed": True} for i in range(6)]
    rows.insert(3, {"segment_id": "bad id!", "name": "x"})
    code, res = call(pair.workers[0].url, "POST", f"/sites/{site}/segments:bulk", tok(site), {"segments": rows})
    assert code == 200 and (res["created"], res["rejected"]) == (6, 1), res
    ids = {c["command_id"] for r in res["results"] for c in r.get("commands", [])}
    assert len(ids) == 1, ids  # 12 commands (6 upserts, 6 enables) in one Batch
    (cid,) = ids
    assert pair.wait_applied([cid], 60)[cid].partitions_total == pair.settings.partitions
    orders = [o for o in control_orders(pair) if o["site_id"] == site and o["command_id"] not in before]
    assert len(orders) == pair.settings.partitions and {o["command_id"] for o in orders} == {cid}
    segs = call(pair.workers[1].url, "GET", f"/sites/{site}/segments", tok(site))[1]["segments"]
    assert sorted(x["segment_id"] for x in segs if x["managed"]) == ["g0", "g1", "g2", "g3", "g4", "g5", "s"]


def test_the_cli_applies_a_rules_file_as_one_batch_and_waits_until_applied(pair: Cluster, tmp_path: Path) -> None:
    """`rules apply FILE`: a file with invalid rules is refused whole, every invalid rule listed,
    nothing sent (exit 4); a good file is one Batch (one backfill order per partition), and the
    command returns once it is APPLIED (exit 0), --json with its state and progress."""
    import os
    import subprocess
    import sys

    site = f"pg-{uuid.uuid4().hex[:8]}"
    users = seed(pair, site, 80)
    env = {**os.environ, "API_URL": pair.workers[0].url, "ADMIN_JWT_SECRET": TEST_JWT_SECRET}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "processor", *args], capture_output=True, text=True,
                              env=env, timeout=120)

    rules = [{"rule_id": f"r{i}", "segment_id": "s", "name": f"r{i}", "condition": f'department == "{d}"'}
             for i, d in enumerate(DEPTS[:2])]
    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps([*rules, {"rule_id": "x1", "segment_id": "nope", "condition": 'city == "a"'},
                               {"rule_id": "x2", "segment_id": "s", "condition": 'nofield == "a"'}]))
    before = {o["command_id"] for o in control_orders(pair) if o["site_id"] == site}
    out = cli("rules", "apply", str(bad), "--site", site, "--json")
    assert out.returncode == 4, out.stdout + out.stderr
    errors = json.loads(out.stdout)["errors"]
    assert [(e["rule_id"], e["code"]) for e in errors] == [("x1", "UNKNOWN_SEGMENT"), ("x2", "UNKNOWN_FIELD")]
    assert call(pair.workers[0].url, "GET", f"/sites/{site}/rules", tok(site))[1]["rules"] == []

    good = tmp_path / "good.yaml"
    good.write_text(json.dumps({"rules": rules}))
    out = cli("rules", "apply", str(good), "--site", site, "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    results = json.loads(out.stdout)
    assert [(r["rule_id"], r["status"], r["state"]) for r in results] == [("r0", "ACCEPTED", "APPLIED"),
                                                                       ("r1", "ACCEPTED", "APPLIED")]
    assert len({r["command_id"] for r in results}) == 1
    assert results[0]["progress"]["users_added"] == sum(d in DEPTS[:2] for d in users.values())
    orders = [o for o in control_orders(pair) if o["site_id"] == site and o["command_id"] not in before]
    assert len(orders) == pair.settings.partitions and {o["command_id"] for o in orders} == {results[0]["command_id"]}


def test_the_console_shows_a_command_applying_then_the_segment_current(pair: Cluster, browser: Any) -> None:
    from playwright.sync_api import expect

    site = f"pg-{uuid.uuid4().hex[:8]}"
    users = seed(pair, site, 120, segment="staff")
    setup = [make_command(site, "UpsertSegment", segment_id="club", name="Club"),
             make_command(site, "EnableSegmentAutomation", segment_id="club"),
             make_command(site, "CreateRule", rule_id="hr", segment_id="club", name="HR",
                          condition={"field": "department", "op": "equals", "value": "hr"}),
             make_command(site, "DisableSegmentAutomation", segment_id="club", remove_members=True)]
    for cmd in setup:
        pair.producer.command(cmd)
    pair.producer.flush()
    pair.wait_applied([c.command_id for c in setup], 60)
    page = browser.new_context(viewport={"width": 1360, "height": 900}).new_page()
    page.set_default_timeout(20_000)
    expect.set_options(timeout=20_000)
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.goto(pair.workers[0].url + "/console/")
    page.get_by_label("Admin token (JWT)").fill(tok(site))
    page.get_by_role("button", name="Sign in").click()
    staff = page.locator('#segments-table tr[data-segment="staff"]')
    club = page.locator('#segments-table tr[data-segment="club"]')
    expect(staff.locator(".currency")).to_contain_text("Segment is current as of")
    expect(club.locator(".currency")).to_have_count(0)  # not managed: nothing to be current

    page.get_by_role("switch", name="Automation for Club").click()
    page.get_by_role("button", name="Enable automation").click()
    entry = page.locator("#command-list li", has_text="Enable automation for Club")
    expect(entry).to_have_attribute("data-state", "APPLYING")  # partitions report while it runs
    expect(entry.locator(".badge.state")).to_have_text("applying…")
    expect(entry).to_contain_text("accepted")  # the decision's badge stays
    bar = entry.locator("progress")
    expect(bar).to_have_attribute("max", "8")
    expect(entry.locator(".counts")).to_contain_text("users evaluated")
    expect(club.locator(".currency.updating")).to_contain_text("partitions done")
    shot(page, "12-command-applying.png")
    expect(entry).to_have_attribute("data-state", "APPLIED")
    expect(entry.locator(".badge.state")).to_have_text("applied")
    expect(page.get_by_role("status")).to_contain_text("Enable automation for Club: applied")
    expect(bar).to_have_attribute("value", "8")
    expect(entry.locator(".counts")).to_contain_text(f"8 of 8 partitions · {len(users)} users evaluated")
    expect(club.locator(".currency.current")).to_contain_text("Segment is current as of")
    shot(page, "13-segment-current.png")
    want = {u for u, d in users.items() if d == "hr"}
    assert fold_membership(pair.changes_for(site)).get((site, "club"), set()) == want
    # a reload keeps the panel, with the command applied
    page.reload()
    expect(page.locator("#command-list li", has_text="Enable automation for Club")).to_have_attribute(
        "data-state", "APPLIED")
    assert problems == []


def test_a_worker_killed_mid_backfill_its_partitions_are_taken_over_and_the_command_applied(
        pair: Cluster) -> None:
    site = f"pg-{uuid.uuid4().hex[:8]}"
    users = seed(pair, site, 400)
    rule = make_command(site, "CreateRule", command_id=f"slow-{uuid.uuid4().hex[:10]}", rule_id="r",
                        segment_id="s", name="r", condition={"field": "department", "op": "in",
                                                             "value": ["sales", "ops"]})
    pair.producer.command(rule)
    pair.producer.flush()
    survivor, victim = pair.workers[0], pair.workers[1]

    def started() -> bool:
        p = status(survivor, site, rule.command_id).get("progress") or {}
        return p.get("partitions_done", 0) >= 1

    pair.wait(started, 60, "a partition done")
    at_kill = status(survivor, site, rule.command_id)
    victim.kill()  # kill -9: no revoke, no commit, no report
    pair.workers.remove(victim)  # (the cluster's waits fail on a dead worker)
    own = backfilled(survivor, rule.command_id)
    victims = backfilled(victim, rule.command_id)
    assert at_kill["state"] == "APPLYING" and at_kill["progress"]["partitions_done"] < 8, at_kill
    final = pair.wait_applied([rule.command_id], 180)[rule.command_id]
    want = {u for u, d in users.items() if d in ("sales", "ops")}
    assert (final.partitions_done, final.users_evaluated, final.users_added) == (8, len(users), len(want))
    pair.wait(lambda: fold_membership(pair.changes_for(site)).get((site, "s"), set()) == want, 60, "members")
    st = status(survivor, site, rule.command_id)
    assert st["state"] == "APPLIED" and st["progress"]["failed_partitions"] == []
    # the survivor took partitions over and ran their orders: between them, every partition was
    # backfilled, and the survivor did some after the kill that the victim had not finished
    after = backfilled(survivor, rule.command_id)
    assert after | victims == set(range(8)), (after, victims)
    assert after - own - victims, (own, after, victims)
