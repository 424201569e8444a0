"""Guarded changes and bulk segments on the real broker and a real worker (docs/api.md#guarded-changes).

A site with 120 members in Sales, 40 of them also matched by a second rule: deleting the first
rule would remove 80 people. Through the API that is held back (409 LARGE_CHANGE with the counts
and a sample of named people) and nothing reaches the commands topic, which a later marker command
proves; re-sent with the count it applies; a confirmation of a count that has changed since is
refused with the new count. The same command produced straight to the topic is trusted automation
and is applied unguarded. The threshold is the site's setting, changed by a command. Bulk segments
answer every row, bad ones with why, and never drop the good ones; the CLI imports a CSV the same
way and asks before a large change.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from processor.api.auth import make_token
from tests.integration.test_api import call
from tests.support.harness import TEST_JWT_SECRET, Cluster, fold_membership, make_command, make_event

SALES = {"field": "department", "op": "equals", "value": "Sales"}
LEAD = {"field": "institution", "op": "equals", "value": "Lead"}


def admin(site: str, roles: tuple[str, ...] = ("site_admin",)) -> str:
    return make_token(TEST_JWT_SECRET, "alice", site, list(roles))


def members(cluster: Cluster, site: str, seg: str = "sales") -> set[str]:
    return fold_membership(cluster.changes_for(site)).get((site, seg), set())


def wait_command(base: str, token: str, poll: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, body = call(base, "GET", poll, token)
        if body["status"] != "PENDING":
            return body
        time.sleep(0.1)
    raise AssertionError(f"{poll} still PENDING")


@pytest.fixture
def big_site(cluster: Cluster, site: str) -> str:
    """Sales (managed): rule "dept" (department Sales) and "lead" (institution Lead). u000-u119 are in
    Sales, u080-u119 also Leads: 120 members, 80 of them only through "dept"."""
    cmds = [make_command(site, "UpsertSegment", segment_id="sales", name="Sales"),
            make_command(site, "EnableSegmentAutomation", segment_id="sales"),
            make_command(site, "CreateRule", rule_id="dept", segment_id="sales", name="Dept", condition=SALES,
                         enabled=True),
            make_command(site, "CreateRule", rule_id="lead", segment_id="sales", name="Leads", condition=LEAD,
                         enabled=True)]
    for c in cmds:
        cluster.producer.command(c)
    for i in range(120):
        cluster.producer.user_event(make_event(site, f"u{i:03d}", department="Sales", firstname=f"Ann{i}",
                                               lastname="Lee", email=f"ann{i}@example.org",
                                               institution="Lead" if i >= 80 else "Staff"))
    cluster.producer.flush()
    results = cluster.wait_results([c.command_id for c in cmds])
    assert all(r.status == "ACCEPTED" for r in results.values()), results
    cluster.wait(lambda: len(members(cluster, site)) == 120, what="120 Sales members")
    return site


def marker(cluster: Cluster, base: str, token: str, site: str) -> None:
    """A command through the API, decided after anything produced before it for this site (one
    commands partition per site, in order)."""
    status, body = call(base, "PUT", f"/sites/{site}/segments/marker-{time.monotonic_ns()}", token, {"name": "m"})
    assert status == 202, body
    assert wait_command(base, token, body["poll"])["status"] == "ACCEPTED"


def test_large_change_is_held_back_until_confirmed(cluster: Cluster, big_site: str) -> None:
    site, base, token = big_site, cluster.workers[0].url, admin(big_site)
    status, body = call(base, "DELETE", f"/sites/{site}/rules/dept", token)
    assert status == 409, body
    assert body["code"] == "LARGE_CHANGE"
    imp = body["impact"]
    assert (imp["members"], imp["removed"], imp["added"]) == (120, 80, 0)
    assert body["confirm"] == {"removed": 80}
    sample = imp["segments"][0]["sample_removed"]
    assert len(sample) == 20 and sample[0] == {"user_id": "u000", "name": "Ann0 Lee", "email": "ann0@example.org"}
    assert {p["user_id"] for p in sample} <= {f"u{i:03d}" for i in range(80)}

    # nothing was produced: a later command is decided, and the rule and the members are still there
    marker(cluster, base, token, site)
    assert "dept" in {r["rule_id"] for r in call(base, "GET", f"/sites/{site}/rules", token)[1]["rules"]}
    cluster.catch_up()
    assert len(members(cluster, site)) == 120

    status, body = call(base, "DELETE", f"/sites/{site}/rules/dept", token, {"confirm": {"removed": 80}})
    assert status == 202, body
    assert wait_command(base, token, body["poll"])["status"] == "ACCEPTED"
    cluster.wait(lambda: members(cluster, site) == {f"u{i:03d}" for i in range(80, 120)}, what="80 removed")


def test_a_confirmation_of_a_changed_count_is_refused_with_the_new_count(cluster: Cluster, big_site: str) -> None:
    site, base, token = big_site, cluster.workers[0].url, admin(big_site)
    body = {"enabled": False, "remove_members": True}
    status, first = call(base, "POST", f"/sites/{site}/segments/sales/automation", token, body)
    assert (status, first["confirm"]) == (409, {"removed": 120})
    # meanwhile another person joins Sales
    cluster.producer.user_event(make_event(site, "u999", department="Sales"))
    cluster.producer.flush()
    cluster.wait(lambda: "u999" in members(cluster, site), what="u999 joined")
    status, again = call(base, "POST", f"/sites/{site}/segments/sales/automation", token,
                         {**body, "confirm": {"removed": 120}})
    assert status == 409, again
    assert (again["code"], again["path"], again["confirm"], again["confirmed"]) == (
        "LARGE_CHANGE", "$.confirm.removed", {"removed": 121}, 120)
    assert "121" in again["message"] and "120" in again["message"]
    status, ok = call(base, "POST", f"/sites/{site}/segments/sales/automation", token,
                      {**body, "confirm": {"removed": 121}})
    assert status == 202, ok
    assert wait_command(base, token, ok["poll"])["status"] == "ACCEPTED"
    cluster.wait(lambda: members(cluster, site) == set(), what="everyone removed")


def test_commands_on_the_topic_are_not_guarded(cluster: Cluster, big_site: str) -> None:
    """Trusted automation: the same deletion produced straight to the commands topic is applied."""
    site = big_site
    c = make_command(site, "DeleteRule", rule_id="dept")
    cluster.producer.command(c)
    cluster.producer.flush()
    assert cluster.wait_results([c.command_id])[c.command_id].status == "ACCEPTED"
    cluster.wait(lambda: len(members(cluster, site)) == 40, what="80 removed without confirmation")


def test_the_threshold_is_a_site_setting_changed_by_a_command(cluster: Cluster, big_site: str) -> None:
    site, base, token = big_site, cluster.workers[0].url, admin(big_site)
    assert call(base, "GET", f"/sites/{site}/settings", token)[1] == {
        "large_change_min_removed": 50, "large_change_ratio": 0.1,
        "defaults": {"large_change_min_removed": 50, "large_change_ratio": 0.1}}
    status, body = call(base, "PUT", f"/sites/{site}/settings", admin(site, ("system",)),
                        {"large_change_min_removed": 500})
    assert (status, body["code"]) == (403, "FORBIDDEN")  # site_admin only
    status, body = call(base, "PUT", f"/sites/{site}/settings", token, {"large_change_ratio": 2})
    assert (status, body["path"]) == (400, "$.large_change_ratio")
    status, body = call(base, "PUT", f"/sites/{site}/settings", token, {"large_change_min_removed": 81})
    assert status == 202, body
    assert wait_command(base, token, body["poll"])["status"] == "ACCEPTED"
    assert call(base, "GET", f"/sites/{site}/settings", token)[1]["large_change_min_removed"] == 81
    status, body = call(base, "DELETE", f"/sites/{site}/rules/dept", token)  # 80 < 81: not large now
    assert status == 202, body


def test_bulk_segments_answer_every_row(cluster: Cluster, site: str) -> None:
    base, token = cluster.workers[0].url, admin(site)
    seed = make_command(site, "UpsertSegment", segment_id="old", name="Old name")
    cluster.producer.command(seed)
    cluster.producer.flush()
    cluster.wait_results([seed.command_id])
    rows = [{"segment_id": "sales", "name": "Sales", "managed": True},
            {"segment_id": "bad id!", "name": "Bad"},
            {"segment_id": "hr", "name": ""},
            {"segment_id": "old", "name": "New name"},
            {"segment_id": "sales", "name": "Twice"},
            {"segment_id": "ops", "name": "Ops", "managed": "yes"},
            {"segment_id": "it", "name": "IT"}]
    status, dry = call(base, "POST", f"/sites/{site}/segments:bulk?dry_run=true", token, {"segments": rows})
    assert status == 200, dry
    assert [r["status"] for r in dry["results"]] == ["VALID", "REJECTED", "REJECTED", "VALID", "REJECTED",
                                                     "REJECTED", "VALID"]
    status, res = call(base, "POST", f"/sites/{site}/segments:bulk", token, {"segments": rows})
    assert status == 200, res
    assert (res["created"], res["updated"], res["rejected"]) == (2, 1, 4)
    by = {r["index"]: r for r in res["results"]}
    assert [(i, by[i]["code"], by[i]["path"]) for i in (1, 2, 4, 5)] == [
        (1, "INVALID_ID", "$.segments[1].segment_id"), (2, "INVALID_FIELD", "$.segments[2].name"),
        (4, "DUPLICATE_ROW", "$.segments[4].segment_id"), (5, "INVALID_FIELD", "$.segments[5].managed")]
    assert [c["type"] for c in by[0]["commands"]] == ["UpsertSegment", "EnableSegmentAutomation"]
    for r in res["results"]:
        for c in r.get("commands", []):
            assert wait_command(base, token, c["poll"])["status"] == "ACCEPTED", (r, c)
    segs = {s["segment_id"]: s for s in call(base, "GET", f"/sites/{site}/segments", token)[1]["segments"]}
    assert {k: (v["name"], v["managed"]) for k, v in segs.items()} == {
        "sales": ("Sales", True), "old": ("New name", False), "it": ("IT", False)}
    # run again: nothing left to do
    status, res = call(base, "POST", f"/sites/{site}/segments:bulk", token, {"segments": [rows[0], rows[3], rows[6]]})
    assert [r["status"] for r in res["results"]] == ["UNCHANGED"] * 3


def _cli(*args: str, site: str, base: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "API_URL": base, "ADMIN_TOKEN": admin(site)}
    return subprocess.run([sys.executable, "-m", "processor", *args], input=stdin, capture_output=True, text=True,
                          env=env, timeout=120)


def test_cli_imports_a_csv_with_bad_rows(cluster: Cluster, site: str, tmp_path: Path) -> None:
    base = cluster.workers[0].url
    f = tmp_path / "segments.csv"
    f.write_text('id,name,managed\nsales,Sales,yes\nbad id,Bad,\nhr,"Human, Resources",\nops,Ops,perhaps\n'
                 "lab,Lab,no,extra\n")
    out = _cli("segments", "import", str(f), "--json", site=site, base=base)
    assert out.returncode == 1, out.stdout + out.stderr  # some rows failed (README "Exit codes")
    import json

    rows = {r["line"]: r for r in json.loads(out.stdout)["rows"]}
    assert {n: (r["status"], r.get("code")) for n, r in rows.items()} == {
        2: ("ACCEPTED", None), 3: ("REJECTED", "INVALID_ID"), 4: ("ACCEPTED", None),
        5: ("REJECTED", "INVALID_FIELD"), 6: ("REJECTED", "INVALID_ROW")}
    assert "perhaps" in rows[5]["message"]
    segs = {s["segment_id"]: s for s in call(base, "GET", f"/sites/{site}/segments", admin(site))[1]["segments"]}
    assert {k: (v["name"], v["managed"]) for k, v in segs.items()} == {
        "sales": ("Sales", True), "hr": ("Human, Resources", False)}
    text = _cli("segments", "import", str(f), site=site, base=base)
    assert "line     3" in text.stdout and "INVALID_ID" in text.stdout and "UNCHANGED" in text.stdout


def test_cli_asks_before_a_large_change(cluster: Cluster, big_site: str, tmp_path: Path) -> None:
    site, base = big_site, cluster.workers[0].url
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {rule_id: dept, segment_id: sales, condition: 'department == \"Nobody\"'}\n"
                     "  - {rule_id: new, segment_id: sales, condition: 'firstname == \"Ann0\"'}\n")
    dry = _cli("rules", "apply", str(rules), "--dry-run", site=site, base=base)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "Sales (sales): 120 members now, +0 would be added, -79 would be removed  LARGE" in dry.stdout
    no = _cli("rules", "delete", "dept", site=site, base=base, stdin="n\n")
    assert no.returncode == 1, no.stdout + no.stderr
    assert "-80 would be removed" in no.stderr and "u000 (Ann0 Lee, ann0@example.org)" in no.stderr
    assert "not applied" in no.stderr
    yes = _cli("rules", "delete", "dept", "--yes", "--json", site=site, base=base)
    assert yes.returncode == 0, yes.stdout + yes.stderr
    cluster.wait(lambda: len(members(cluster, site)) == 40, what="80 removed after --yes")
