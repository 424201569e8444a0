"""The CLI on the same code paths: help, publishing command files, the dev runner, and what a new
user meets (issue 22): exit codes, errors, member pages, times, hand-made user events."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from processor.broker import free_port
from tests.support.harness import TEST_JWT_SECRET, Cluster, fold_membership, make_command, make_event

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "processor", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=timeout)


def test_help_lists_the_contract_commands() -> None:
    """`python -m processor --help` lists worker, topics, dev and commands."""
    out = _cli("--help")
    assert out.returncode == 0
    for name in ("worker", "topics", "dev", "commands"):
        assert name in out.stdout


def test_publish_yaml_file_prints_results(cluster: Cluster, site: str, tmp_path: Path) -> None:
    """`commands publish FILE` sends every command, waits, prints results; exit 1 if any is rejected."""
    f = tmp_path / "cmds.yaml"
    f.write_text(f"""
site_id: {site}
actor: {{user_id: ops, roles: [site_admin]}}
commands:
  - UpsertSegment: {{segment_id: sales, name: Sales}}
  - EnableSegmentAutomation: {{segment_id: sales}}
  - CreateRule:
      rule_id: r1
      segment_id: sales
      name: Sales
      condition: {{field: department, op: equals, value: Sales}}
""")
    env = {"KAFKA_BOOTSTRAP_SERVERS": cluster.settings.bootstrap_servers}
    out = _cli("commands", "publish", str(f), env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("ACCEPTED") == 3

    bad = tmp_path / "bad.json"
    bad.write_text('{"site_id": "%s", "actor": {"user_id": "t", "roles": ["teacher"]}, '
                   '"commands": [{"DeleteRule": {"rule_id": "r1"}}]}' % site)
    out = _cli("commands", "publish", str(bad), env=env)
    assert out.returncode == 4  # REJECTED (README "Exit codes")
    assert "REJECTED" in out.stdout and "FORBIDDEN" in out.stdout


def test_publish_reports_malformed_file(tmp_path: Path) -> None:
    """A command file with an unknown command type fails before anything is sent."""
    f = tmp_path / "x.yaml"
    f.write_text("site_id: s\ncommands:\n  - CreateRuel: {rule_id: r}\n")
    out = _cli("commands", "publish", str(f), env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert out.returncode != 0
    assert "INVALID_COMMAND" in out.stderr


def test_dev_runner_smoke(tmp_path: Path) -> None:
    """`make run`'s command seeds the product-doc example and ends with bob alone in Sales."""
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "STATE_DIR", "WEB_PORT")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")  # this checkout, from another cwd
    out = subprocess.run([sys.executable, "-m", "processor", "dev", "--once", "--timeout", "120"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ok: segment sales = ['bob']" in out.stdout
    assert "ADDED" in out.stdout and "REMOVED" in out.stdout


# ------------------------------------------------------------------ issue 22: the first hour

RAW_LIBRDKAFKA = re.compile(r"^%\d\|", re.M)
ISO_WITH_OFFSET = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d")


def _admin_env(cluster: Cluster) -> dict[str, str]:
    """The CLI against the session cluster: its API, its Kafka and topics, a secret to mint tokens."""
    t = cluster.settings.topics
    return {"API_URL": cluster.workers[0].url, "ADMIN_JWT_SECRET": TEST_JWT_SECRET, "ADMIN_TOKEN": "",
            "KAFKA_BOOTSTRAP_SERVERS": cluster.settings.bootstrap_servers, "TOPIC_USER_EVENTS": t.user_events,
            "TOPIC_COMMANDS": t.commands, "TOPIC_COMMAND_RESULTS": t.command_results,
            "TOPIC_MEMBERSHIP_CHANGES": t.membership_changes}


def _setup(cluster: Cluster, site: str, *cmds: object) -> None:
    for c in cmds:
        cluster.producer.command(c)  # type: ignore[arg-type]
    cluster.producer.flush()
    results = cluster.wait_results([c.command_id for c in cmds])  # type: ignore[attr-defined]
    assert all(r.status == "ACCEPTED" for r in results.values()), results


def test_users_upsert_types_values_with_the_field_catalog(cluster: Cluster, site: str) -> None:
    """`users upsert` produces a UserEvent whose values have their field's type (read from the API's
    field catalog): the worker stores numbers, booleans, epoch seconds and lists, and a rule on the
    number matches; without the catalog, custom fields go as text (and it says so)."""
    _setup(cluster, site,
           make_command(site, "UpsertProfileField", shortname="score", name="Score", datatype="NUMBER"),
           make_command(site, "UpsertProfileField", shortname="mentor", name="Mentor", datatype="CHECKBOX"),
           make_command(site, "UpsertProfileField", shortname="hired", name="Hired", datatype="DATETIME"),
           make_command(site, "UpsertSegment", segment_id="high", name="High score"),
           make_command(site, "EnableSegmentAutomation", segment_id="high"),
           make_command(site, "CreateRule", rule_id="gt10", segment_id="high", name="score > 10",
                        condition={"field": "profile_field_score", "op": "gt", "value": 10}, enabled=True))
    env = _admin_env(cluster)
    out = _cli("users", "upsert", "--site", site, "ann", "department=Sales", "profile_field_score=42",
               "profile_field_mentor=yes", "profile_field_hired=2024-05-01", "interests=golf,chess",
               "suspended=false", "lastaccess=now-P3D", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "sent USER_UPDATED" in out.stdout and not out.stderr.strip(), out.stderr
    cluster.wait(lambda: fold_membership(cluster.changes_for(site)).get((site, "high")) == {"ann"}, what="ann in high")
    token = __import__("processor.api.auth", fromlist=["make_token"]).make_token(TEST_JWT_SECRET, "t", site,
                                                                                 ["site_admin"])
    import urllib.request

    req = urllib.request.Request(f"{cluster.workers[0].url}/sites/{site}/users",
                                 headers={"Authorization": f"Bearer {token}"})
    profile = json.loads(urllib.request.urlopen(req, timeout=15).read())["users"][0]["profile"]
    assert profile["profile_field_score"] == 42 and profile["profile_field_mentor"] is True
    assert profile["profile_field_hired"] == 1714521600 and profile["interests"] == ["golf", "chess"]
    assert profile["suspended"] is False and abs(profile["lastaccess"] - (time.time() - 3 * 86400)) < 120

    plain = _cli("users", "upsert", "--site", site, "bo", "profile_field_score=5", "--no-catalog", "--json",
                 env=env)
    assert plain.returncode == 0, plain.stderr
    assert json.loads(plain.stdout)["profile"] == {"profile_field_score": "5"}
    assert "not in the field catalog, sent as text" in plain.stderr
    bad = _cli("users", "upsert", "--site", site, "bo", "profile_field_score=many", "departmnt=x", env=env)
    assert bad.returncode == 1 and "nothing was sent" in bad.stderr, bad.stderr
    assert "profile_field_score (number): 'many' is not a number" in bad.stderr
    assert "did you mean department" in bad.stderr
    gone = _cli("users", "delete", "--site", site, "ann", env=env)
    assert gone.returncode == 0 and "USER_DELETED" in gone.stdout, gone.stderr
    cluster.wait(lambda: fold_membership(cluster.changes_for(site)).get((site, "high")) == set(), what="ann removed")


def test_members_pages_say_the_total_and_how_to_go_on(cluster: Cluster, site: str) -> None:
    """`members` prints how many of the total it shows, how to get the next page, and times as
    ISO-8601 with their offset; --site defaults to ADMIN_TOKEN's site."""
    from processor.api.auth import make_token

    _setup(cluster, site, make_command(site, "UpsertSegment", segment_id="s", name="S"),
           make_command(site, "EnableSegmentAutomation", segment_id="s"),
           make_command(site, "CreateRule", rule_id="r", segment_id="s", name="R",
                        condition={"field": "department", "op": "equals", "value": "Sales"}, enabled=True))
    users = [f"m{i}" for i in range(7)]
    for u in users:
        cluster.producer.user_event(make_event(site, u, department="Sales"))
    cluster.producer.flush()
    cluster.wait(lambda: fold_membership(cluster.changes_for(site)).get((site, "s")) == set(users), what="members")
    env = {**_admin_env(cluster), "ADMIN_TOKEN": make_token(TEST_JWT_SECRET, "t", site, ["site_admin"])}
    deadline = time.monotonic() + 30
    while True:  # the segment's count follows the members tab entries within moments
        first = _cli("members", "s", "--limit", "3", env=env)
        if "showing 3 of 7 member(s)" in first.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert first.returncode == 0, first.stderr
    assert "showing 3 of 7 member(s)" in first.stdout, first.stdout
    hint = re.search(r"next page with --cursor (\S+), every page with --all", first.stderr)
    assert hint, first.stderr
    assert len(ISO_WITH_OFFSET.findall(first.stdout)) == 3, first.stdout
    second = _cli("members", "s", "--limit", "3", "--cursor", hint.group(1), "--json", env=env)
    page2 = json.loads(second.stdout)
    assert page2["total"] == 7 and [m["user_id"] for m in page2["members"]] == users[3:6]
    every = json.loads(_cli("members", "s", "--all", "--limit", "3", "--json", env=env).stdout)
    assert [m["user_id"] for m in every["members"]] == users and every["next_cursor"] is None


def test_exit_codes_tell_rejected_timed_out_and_unreachable_apart(cluster: Cluster, site: str,
                                                                  tmp_path: Path) -> None:
    """0 ok, 1 error, 2 usage, 3 unreachable, 4 rejected, 5 timed out (README "Exit codes"); errors
    without a path print no empty "at :"; an unreachable Kafka gives one clear line, not librdkafka's."""
    env = _admin_env(cluster)
    f = tmp_path / "c.yaml"
    f.write_text(f"site_id: {site}\nactor: {{user_id: ops, roles: [site_admin]}}\ncommands:\n"
                 "  - UpsertSegment: {segment_id: s, name: S}\n"
                 "  - CreateRule: {rule_id: r, segment_id: s, name: R, condition: 'department == \"x\"'}\n")
    rejected = _cli("commands", "publish", str(f), env=env)
    assert rejected.returncode == 4, rejected.stdout + rejected.stderr
    assert "REJECTED" in rejected.stdout and "SEGMENT_NOT_MANAGED" in rejected.stdout
    assert "segments manage s" in rejected.stdout and "EnableSegmentAutomation" not in rejected.stdout
    pending = _cli("commands", "publish", str(f), "--timeout", "0", env=env)
    assert pending.returncode == 5 and "PENDING" in pending.stdout and "may still be applied" in pending.stderr
    deleted = _cli("rules", "delete", "no-such-rule", "--site", site, env=env)
    assert deleted.returncode == 4 and '"NOT_FOUND"' in deleted.stdout, deleted.stdout + deleted.stderr

    closed = f"127.0.0.1:{free_port()}"
    unreachable = [["commands", "publish", str(f)], ["topics", "create"], ["export"],
                   ["users", "upsert", "--site", site, "x", "a=b", "--no-catalog"]]
    started = time.monotonic()
    running = [(args, subprocess.Popen([sys.executable, "-m", "processor", *args], stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True,
                                       env={**os.environ, **env, "KAFKA_BOOTSTRAP_SERVERS": closed}))
               for args in unreachable]  # at once: each waits for the 10 s metadata timeout
    for args, proc in running:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 3, (args, err)
        assert f"KAFKA_UNREACHABLE: Kafka at {closed} did not answer" in err, (args, err)
        assert not RAW_LIBRDKAFKA.search(err) and "Traceback" not in err, (args, err)
    assert time.monotonic() - started < 60
    api_down = _cli("segments", "list", "--site", site, env={**env, "API_URL": f"http://127.0.0.1:{free_port()}"})
    assert api_down.returncode == 3 and "API_UNREACHABLE" in api_down.stderr, api_down.stderr

    no_path = _cli("members", "no-such-segment", "--site", site, env=env)
    assert no_path.returncode == 1 and "UNKNOWN_SEGMENT: segment 'no-such-segment'" in no_path.stderr
    assert " at :" not in no_path.stderr, no_path.stderr
    usage = _cli("segments", "list", env={**env, "ADMIN_TOKEN": ""})
    assert usage.returncode == 2 and "give --site" in usage.stderr, usage.stderr


def test_a_command_file_reports_every_bad_entry(tmp_path: Path) -> None:
    """Several bad entries: each is reported at its path, in words, nothing is sent (no traceback)."""
    f = tmp_path / "bad.yaml"
    f.write_text("site_id: s\nactor: {user_id: a, roles: [site_admin]}\ncommands:\n"
                 "  - UpsertProfileField: {shortname: level, name: Level, datatype: DROPDOWN}\n"
                 "  - UpsertProfileField: {shortname: team, name: Team, datatype: TXT}\n"
                 "  - UpsertSegment: {segment_id: 'sales dept!', name: S}\n")
    out = _cli("commands", "publish", str(f), env={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"})
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and "fastavro" not in out.stderr, out.stderr
    for path in ("$.commands[0].UpsertProfileField.datatype", "$.commands[1].UpsertProfileField.datatype",
                 "$.commands[2].UpsertSegment.segment_id"):
        assert f"INVALID_COMMAND at {path}: " in out.stderr, out.stderr
    assert "did you mean MENU" in out.stderr and "3 problem(s); nothing was published" in out.stderr


def test_rebuild_help_lists_the_environment_it_needs() -> None:
    out = _cli("rebuild", "--help")
    assert out.returncode == 0
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "APP_ID", "TOPIC_USER_EVENTS", "TOPIC_CONTROL", "TOPIC_CATALOG",
                 "TOPIC_MEMBERSHIP_CHANGES", "PARTITIONS"):
        assert name in out.stdout, name


def test_the_worker_writes_each_log_line_once_as_json(cluster: Cluster) -> None:
    """LOG_FORMAT=json (the default): every log record is one JSON line; Faust's own plain handler
    (which duplicated every line) is not installed, and librdkafka writes no raw line."""
    text = cluster.workers[0].log_path.read_text(errors="replace")
    records = [ln for ln in text.splitlines() if ln.startswith("{")]
    assert len(records) > 10, text[-2000:]
    plain = [ln for ln in text.splitlines() if re.match(r"^\[\d{4}-\d\d-\d\d ", ln)]
    assert not plain, plain[:5]
    assert not RAW_LIBRDKAFKA.search(text)
    for ln in records:
        json.loads(ln)
