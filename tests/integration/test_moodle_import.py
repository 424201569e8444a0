"""``moodle import``, ``resync`` and ``reconcile``'s removal guard as subprocesses, against the
real worker (ingest endpoint, catalog writes, stored profiles) and the Moodle double."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.support.harness import Cluster, make_command
from tests.integration.test_api import call
from tests.integration.test_moodle_e2e import Env
from tests.support.moodle_double import MoodleDouble


@pytest.fixture
def env(cluster: Cluster, site: str, tmp_path: Path) -> Iterator[Env]:
    moodle = MoodleDouble(plugin=True).start()
    try:
        yield Env(cluster, site, moodle, tmp_path)
    finally:
        moodle.stop()


def held(env: Env) -> dict[str, dict[str, Any]]:
    st, body = call(env.api, "GET", f"/sites/{env.site}/users?limit=500", env.admin_token)
    assert st == 200, body
    return {u["user_id"]: u for u in body["users"]}


def test_import_then_resync_publishes_only_what_differs(env: Env) -> None:
    m = env.moodle
    m.add_cohort("sales", "Sales")
    m.add_cohort("", "No idnumber")
    m.add_field("level", "menu", "Level", ["Junior", "Senior", "Lead"])
    m.add_field("vip", "checkbox", "VIP")
    m.add_field("hired", "datetime", "Hired")
    m.add_field("team", "text", "Team")
    alice = m.add_user("alice", firstname="Alice", lastname="A", email="alice@example.org", department="Sales",
                       city="Oslo", country="NO", lastaccess=1764790000, interests=["chess", "go"],
                       custom={"level": "Senior", "vip": "1", "hired": "1700000000", "team": "Blue"})
    bob = m.add_user("bob", firstname="Bob", department="Sales", custom={"vip": "0"})
    carol = m.add_user("carol", firstname="Carol", department="HR", custom={"team": "Red"})
    dave = m.add_user("dave", firstname="Dave", department="HR")
    others = [m.add_user(f"u{i:02d}", department="HR") for i in range(20)]

    code, rep, err = env.cli("import", "--gap", "150", "--page-size", "10")
    assert code == 0, err
    assert rep["users_read"] == rep["published"] == 24 and rep["rejected_count"] == 0
    assert rep["field_source"] == "plugin"
    assert rep["fields"]["level"] == {"datatype": "MENU", "options": ["Junior", "Senior", "Lead"], "source": "plugin",
                                      "complete": True, "status": "ACCEPTED"}
    assert {k: v["datatype"] for k, v in rep["fields"].items()} == {
        "level": "MENU", "vip": "CHECKBOX", "hired": "DATETIME", "team": "TEXT"}
    assert rep["segments_accepted"] == 1 and any("No idnumber" in n for n in rep["notes"])
    progress = [json.loads(line) for line in err.splitlines() if line.startswith('{"progress"')]
    assert progress and progress[-1]["progress"] == "users" and progress[-1]["done"] >= 25
    env.cluster.wait(lambda: len(held(env)) == 24, what="24 users held")
    st, segs = call(env.api, "GET", f"/sites/{env.site}/segments", env.admin_token)
    assert [(s["segment_id"], s["name"], s["managed"]) for s in segs["segments"]] == [("sales", "Sales", False)]
    a = held(env)[str(alice.id)]["profile"]
    assert a == {"username": "alice", "firstname": "Alice", "lastname": "A", "email": "alice@example.org",
                 "department": "Sales", "city": "Oslo", "country": "NO", "suspended": False, "confirmed": True,
                 "firstaccess": 0, "lastaccess": 1764790000, "interests": ["chess", "go"], "auth": "manual",
                 "lang": "en", "theme": "", "timezone": "99", "profile_field_level": "Senior",
                 "profile_field_vip": True, "profile_field_hired": 1700000000, "profile_field_team": "Blue"}
    assert held(env)[str(bob.id)]["profile"]["profile_field_vip"] is False

    # What Moodle changed without telling: lastaccess, a department, a cleared field, a new user,
    # a deleted one. Plus a field only the plugin sends, which resync must keep.
    env.ingest({"op": "upsert", "user_id": str(dave.id), "event_type": "USER_UPDATED",
                "profile": {"timecreated": 1600000000}})
    env.cluster.wait(lambda: held(env)[str(dave.id)]["profile"].get("timecreated") == 1600000000, what="timecreated")
    with m.lock:
        alice.lastaccess = 1764899999
        bob.department = "HR"
        carol.custom["team"] = ""
        erin = m.add_user("erin", department="Sales")
        m.delete_user(others[0].id)
    code, rep, err = env.cli("resync", "--gap", "150", "--page-size", "10")
    assert code == 0, err
    assert (rep["differed"], rep["created"], rep["missing_in_moodle"], rep["unchanged"]) == (3, 1, 1, 20), rep
    assert rep["published"] == 4
    assert rep["differing_fields"] == {"lastaccess": 1, "department": 1, "profile_field_team": 1}
    env.cluster.wait(lambda: held(env).get(str(erin.id)) is not None
                     and held(env)[str(bob.id)]["profile"]["department"] == "HR", what="resync applied")
    h = held(env)
    assert h[str(alice.id)]["profile"]["lastaccess"] == 1764899999
    assert h[str(carol.id)]["profile"].get("profile_field_team") is None
    assert h[str(dave.id)]["profile"]["timecreated"] == 1600000000  # kept: Moodle's services never return it
    code, rep, _ = env.cli("resync", "--gap", "150", "--page-size", "10")
    assert (code, rep["differed"], rep["created"], rep["published"]) == (0, 0, 0, 0), rep


def test_reconcile_refuses_a_mass_removal(env: Env) -> None:
    m = env.moodle
    sales = m.add_cohort("sales")
    users = [m.add_user(f"u{i}", department="Sales" if i < 2 else "HR") for i in range(6)]
    assert env.cli("import", "--gap", "100")[0] == 0
    cmds = [make_command(env.site, "EnableSegmentAutomation", segment_id="sales"),
            make_command(env.site, "CreateRule", rule_id="r", segment_id="sales", name="r",
                         condition={"field": "department", "op": "equals", "value": "Sales"})]
    for c in cmds:
        env.cluster.producer.command(c)
    env.cluster.producer.flush()
    env.cluster.wait_results([c.command_id for c in cmds])
    env.cluster.wait(lambda: env.members("sales") == {str(users[0].id), str(users[1].id)}, what="2 members")
    with m.lock:
        for u in users[2:]:
            m.members[sales.id][u.id] = time.time()
    code, rep, _ = env.cli("reconcile", "--repair", "--max-removals", "3")
    assert code == 1
    assert "more than --max-removals 3" in rep["refused"]
    assert rep["repaired"]["added"] == 2 and rep["repaired"]["removed"] == 0
    assert m.member_ids("sales") == {u.id for u in users}
    code, rep, _ = env.cli("reconcile", "--repair", "--max-removals", "4")
    assert (code, rep["repaired"]["removed"]) == (0, 4)
    assert m.member_ids("sales") == {users[0].id, users[1].id}
