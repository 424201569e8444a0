"""History and audit across two workers (issue 21 part 4), against the oracle and the topics.

Two real workers share the partitions; each keeps its own index of the whole membership-changes
topic and catalog log. After a generated workload (tests/support/oracle), every user's history,
every segment's history and size series, and the audit log are checked on BOTH workers against
what the test observed on the topics itself (the de-duplicated changes, the command results)
and against the oracle's final membership. Then a worker is killed (-9) and restarted on its
state directory: its history is still complete, nothing is doubled, and it resumed from its
stored positions instead of re-reading the topics.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import pytest

from processor.api.auth import make_token
from processor.contract.models import Actor, Command, MembershipChange
from tests.support.harness import (TEST_JWT_SECRET, Cluster, WorkerProcess, make_command, make_event,
                                   produce_steps, wait_checker_ok)
from tests.support.oracle import expected_membership, generate

from .conftest import SharedPair
from .test_api import call


@pytest.fixture(scope="module")
def pair(shared_pair: SharedPair) -> Cluster:
    return shared_pair.get()


def token(site: str) -> str:
    return make_token(TEST_JWT_SECRET, "auditor", site, ["site_admin"], ttl_s=3600)


def pages(w: WorkerProcess, path: str, key: str, tok: str, limit: int = 37) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = ""
    sep = "&" if "?" in path else "?"
    while True:
        code, page = call(w.url, "GET", f"{path}{sep}limit={limit}&cursor={quote(cursor)}", tok)
        assert code == 200, (w.name, path, page)
        out += page[key]
        cursor = page["next_cursor"]
        if not cursor:
            return out


def distinct(changes: list[MembershipChange]) -> list[MembershipChange]:
    seen: set[str] = set()
    out = []
    for c in changes:
        if c.change_id not in seen:
            seen.add(c.change_id)
            out.append(c)
    return out


def row(c: MembershipChange) -> tuple[Any, ...]:
    return (c.change_id, c.user_id, c.segment_id, c.change, c.cause_kind, c.cause_id, list(c.matched_rule_ids),
            c.occurred_at, c.emitted_at, dict(c.evidence) if c.evidence is not None else None)


def got_row(h: dict[str, Any]) -> tuple[Any, ...]:
    return (h["change_id"], h["user_id"], h["segment_id"], h["change"], h["cause_kind"], h["cause_id"],
            h["matched_rule_ids"], h["occurred_at"], h["emitted_at"], h["evidence"])


def newest_first(changes: list[MembershipChange]) -> list[tuple[Any, ...]]:
    return [row(c) for c in sorted(changes, key=lambda c: (c.emitted_at, c.change_id), reverse=True)]


def check_complete(pair: Cluster, w: WorkerProcess, site: str, wl: Any, expected: dict[Any, set[str]]) -> None:
    tok = token(site)
    changes = distinct(pair.changes_for(site))
    pair.wait_results({c.command_id for c in wl.commands if c.site_id == site})
    # every segment: its changes (all pages) and its final size
    for seg in sorted({c.segment_id for c in changes}):
        got = pages(w, f"/sites/{site}/segments/{seg}/history", "changes", tok)
        assert [got_row(h) for h in got] == newest_first([c for c in changes if c.segment_id == seg]), (w.name, seg)
        code, first = call(w.url, "GET", f"/sites/{site}/segments/{seg}/history?limit=1", tok)
        # counted forward from the index alone (it read the topic from its start), against the oracle
        assert (first["index"]["complete"], first["series_basis"]) == (True, "history")
        assert first["series"][-1]["size"] == len(expected.get((site, seg), set())), (w.name, seg)
        assert sum(p["added"] for p in first["series"]) == sum(c.change == "ADDED" for c in changes
                                                                if c.segment_id == seg)
    # every user: their changes; the latest per segment is the oracle's membership
    members: dict[tuple[str, str], set[str]] = {}
    users = sorted({e.user_id for e in wl.events if e.site_id == site})
    for user in users:
        got = pages(w, f"/sites/{site}/users/{quote(user, safe='')}/history", "changes", tok, limit=500)
        assert [got_row(h) for h in got] == newest_first([c for c in changes if c.user_id == user]), (w.name, user)
        latest: dict[str, str] = {}
        for h in reversed(got):
            latest[h["segment_id"]] = h["change"]
        for seg, kind in latest.items():
            if kind == "ADDED":
                members.setdefault((site, seg), set()).add(user)
        for h in got:  # a command's change names the admin who issued it
            cmd = next((c for c in wl.commands if c.command_id == h["cause_id"]), None)
            assert (h["actor"] or {}).get("user_id") == (cmd.actor.user_id if cmd else None), h
    assert {k: v for k, v in members.items() if v} == {k: v for k, v in expected.items() if k[0] == site and v}
    # the audit log: every distinct command once, its decision, actor and impact
    audit = pages(w, f"/sites/{site}/audit", "commands", tok)
    ids = list(dict.fromkeys(c.command_id for c in wl.commands if c.site_id == site))
    assert sorted(a["command_id"] for a in audit) == sorted(ids), w.name
    impact = Counter((c.cause_id, c.change) for c in changes)
    for a in audit:
        cmd = next(c for c in wl.commands if c.command_id == a["command_id"])
        assert a["actor"] == {"user_id": cmd.actor.user_id, "roles": list(cmd.actor.roles)}
        assert a["type"] == cmd.payload_type and a["issued_at"] == cmd.issued_at
        assert a["status"] == pair.out.results[cmd.command_id].status, a
        assert a["impact"] == {"added": impact[(cmd.command_id, "ADDED")],
                               "removed": impact[(cmd.command_id, "REMOVED")]}, a
    assert sum(a["impact"]["added"] + a["impact"]["removed"] for a in audit) > 0


def wait_indexed(pair: Cluster, site: str, wl: Any, workers: list[WorkerProcess]) -> None:
    """Until each worker's index holds as many of the site's changes and commands as the topics."""
    tok = token(site)
    n_commands = len({c.command_id for c in wl.commands if c.site_id == site})

    def done(w: WorkerProcess) -> bool:
        changes = distinct(pair.changes_for(site))
        segs = {c.segment_id for c in changes}
        try:
            code, audit = call(w.url, "GET", f"/sites/{site}/audit?limit=500", tok)
            if code != 200 or len(audit["commands"]) < n_commands:
                return False
            total = 0
            for seg in segs:
                code, h = call(w.url, "GET", f"/sites/{site}/segments/{seg}/history?limit=1", tok)
                total += sum(p["added"] + p["removed"] for p in h["series"])
        except OSError:
            return False
        return total == len(changes)

    for w in workers:
        pair.wait(lambda: done(w), 120, f"{w.name} indexed every change and command of {site}")


def test_history_and_audit_are_complete_on_both_workers(pair: Cluster) -> None:
    wl = generate(2121, 900, sites=1, users_per_site=120, rule_changes=16, site_prefix="hist")
    expected = expected_membership(wl.steps)
    (site,) = wl.sites
    produce_steps(pair.producer, wl.steps)
    pair.producer.flush()
    wait_checker_ok(pair, expected, wl.sites, timeout=150, what="workload == oracle")
    pair.catch_up()
    wait_indexed(pair, site, wl, pair.workers)
    for w in pair.workers:
        check_complete(pair, w, site, wl, expected)
        # every record of both topics was ours and decodable (progress reports included)
        index = call(w.url, "GET", f"/sites/{site}/audit?limit=1", token(site))[1]["index"]
        assert index["skipped"] == 0, (w.name, index)
    # nothing is readable without a token, or with another site's
    for path in (f"/sites/{site}/audit", f"/sites/{site}/segments/x/history", f"/sites/{site}/users/u/history"):
        for w in pair.workers:
            assert call(w.url, "GET", path)[0] == 401
            assert call(w.url, "GET", path, token("other-site"))[0] == 403
    test_history_and_audit_are_complete_on_both_workers.state = (site, wl, expected)  # type: ignore[attr-defined]


def test_history_survives_a_kill_9_restart_without_duplicates(pair: Cluster) -> None:
    """b is killed (-9) and started again on its state directory while more changes arrive: its
    history is still complete with nothing doubled, and it read only what was new (it resumed
    from the positions stored with its data, not from the topics' start)."""
    site, wl, expected = test_history_and_audit_are_complete_on_both_workers.state  # type: ignore[attr-defined]
    b = next(w for w in pair.workers if w.name == "b")
    tok = token(site)
    before = call(b.url, "GET", f"/sites/{site}/audit?limit=1", tok)[1]["index"]
    assert before["read"] > 0
    on_topic = len(pair.catch_up().changes)  # every record of the changes topic (duplicates too)
    b.kill()
    pair.workers.remove(b)
    wl2 = generate(2122, 300, sites=1, users_per_site=40, rule_changes=6, site_prefix="hist2")
    produce_steps(pair.producer, wl2.steps)
    pair.producer.flush()
    back = pair.start_worker("b")  # same name: same STATE_DIR
    assert back.state_dir == b.state_dir
    exp2 = expected_membership(wl2.steps)
    wait_checker_ok(pair, exp2, wl2.sites, timeout=150, what="second workload == oracle")
    pair.catch_up()
    (site2,) = wl2.sites
    wait_indexed(pair, site2, wl2, [back])
    wait_indexed(pair, site, wl, [back])
    check_complete(pair, back, site, wl, expected)
    check_complete(pair, back, site2, wl2, exp2)
    after = call(back.url, "GET", f"/sites/{site}/audit?limit=1", tok)[1]["index"]
    new = len(pair.out.changes) - on_topic
    assert new < on_topic // 2, (new, on_topic)  # (so the next check can tell a resume from a re-read)
    assert after["read"] < on_topic, (after, on_topic, new)  # resumed where it was, not from the start


def sales_segment(site: str) -> list[Command]:
    """The commands of a managed segment "sales" whose rule r1 takes the department Sales."""
    return [make_command(site, "UpsertSegment", segment_id="sales", name="Sales"),
            make_command(site, "EnableSegmentAutomation", segment_id="sales"),
            make_command(site, "CreateRule", rule_id="r1", segment_id="sales", name="Sales dept",
                         condition={"field": "department", "op": "equals", "value": "Sales"})]


def test_explain_as_of_a_past_time(pair: Cluster, site: str) -> None:
    """Bob is in Sales (rule: department equals Sales); then alice narrows the rule and Bob leaves.
    Asked as of a time in between, the explain shows him a member, the rule as it was then, and
    the department recorded with the change; asked as of now: not a member, removed by alice's
    command, the rule as it is now."""
    cmds = sales_segment(site)
    for c in cmds:
        pair.producer.command(c)
    pair.producer.flush()
    pair.wait_results([c.command_id for c in cmds])
    pair.producer.user_event(make_event(site, "bob", department="Sales", city="Oslo"))
    pair.producer.flush()
    pair.wait(lambda: any(c.user_id == "bob" for c in pair.changes_for(site)), what="bob added")
    time.sleep(0.05)
    between = int(time.time() * 1000)
    time.sleep(0.05)
    narrow = replace(make_command(site, "UpdateRule", rule_id="r1", segment_id="sales", name="Sales EMEA",
                                  condition={"field": "department", "op": "equals", "value": "Sales EMEA"}),
                     actor=Actor("alice", ("site_admin",)))
    pair.producer.command(narrow)
    pair.producer.flush()
    pair.wait(lambda: [c.change for c in pair.changes_for(site) if c.user_id == "bob"] == ["ADDED", "REMOVED"],
              what="bob removed by the narrowed rule")
    added, removed = pair.changes_for(site)
    tok = token(site)
    for w in pair.workers:
        url = f"/sites/{site}/users/bob/segments/sales/explain"

        def then(as_of: Any) -> dict[str, Any]:
            code, body = call(w.url, "GET", f"{url}?as_of={as_of}", tok)
            assert code == 200, body
            return body

        pair.wait(lambda: then(int(time.time() * 1000))["member"] is False, 60, f"{w.name} indexed the removal")
        past = then(between)
        assert (past["member"], past["change"]["change_id"], past["values"]) == (True, added.change_id,
                                                                                 {"department": "Sales"})
        (rule,) = past["rules"]
        assert (rule["condition"]["value"], rule["matched"], rule["result"]) == ("Sales", True, True)
        now = then(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60)))
        assert (now["member"], now["change"]["change_id"]) == (False, removed.change_id)
        assert now["change"]["actor"] == {"user_id": "alice", "roles": ["site_admin"]}
        assert now["change"]["cause_kind"] == "RULE_UPDATED"
        (rule,) = now["rules"]
        assert (rule["condition"]["value"], rule["result"]) == ("Sales EMEA", False)
        assert rule["tree"]["actual"] == "Sales"  # the value recorded with the removal
        before = then(added.emitted_at - 1)
        assert (before["member"], before["change"]) == (False, None)  # the history starts with the site
        assert call(w.url, "GET", f"{url}?as_of=yesterday", tok)[0] == 400


def test_cli_history_and_audit(pair: Cluster, site: str) -> None:
    """``history user``, ``history segment`` and ``audit`` print the API's answers (``--json``: the
    same items) and tables a person can read."""
    import os
    import subprocess
    import sys

    cmds = sales_segment(site)
    for c in cmds:
        pair.producer.command(c)
    for i in range(3):
        pair.producer.user_event(make_event(site, f"u{i}", department="Sales"))
    pair.producer.flush()
    pair.wait_results([c.command_id for c in cmds])
    w = pair.workers[0]
    tok = token(site)
    pair.wait(lambda: len(call(w.url, "GET", f"/sites/{site}/segments/sales/history", tok)[1]["changes"]) == 3,
              60, "three changes indexed")
    env = {**os.environ, "API_URL": w.url, "ADMIN_TOKEN": tok, "COLUMNS": "250"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([sys.executable, "-m", "processor", *args, "--site", site], capture_output=True,
                             text=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        return out

    user = json.loads(cli("history", "user", "u1", "--json").stdout)
    assert [(c["segment_id"], c["change"], c["evidence"]) for c in user["changes"]] == [
        ("sales", "ADDED", {"department": '"Sales"'})]
    segment = json.loads(cli("history", "segment", "sales", "--limit", "2", "--all", "--json").stdout)
    assert sorted(c["user_id"] for c in segment["changes"]) == ["u0", "u1", "u2"]
    assert segment["series"][-1]["size"] == 3
    audit = json.loads(cli("audit", "--json").stdout)
    assert [a["command_id"] for a in audit["commands"]] == [c.command_id for c in reversed(cmds)]
    text = cli("audit").stdout
    assert "create rule r1 in sales" in text and "tester" in text
    assert "ADDED" in cli("history", "user", "u1").stdout
    bad = subprocess.run([sys.executable, "-m", "processor", "history", "segment", "sales", "--since", "soon",
                          "--site", site], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 1 and "INVALID_PARAMETER" in bad.stderr
