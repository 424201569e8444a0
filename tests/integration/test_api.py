"""The admin HTTP API on a real worker: auth matrix, writes via commands, reads from state."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from processor.api.auth import make_token
from tests.support.harness import TEST_JWT_SECRET, Cluster, fold_membership, make_command, make_event


def call(base: str, method: str, path: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            raw = r.read()
            try:
                return r.status, json.loads(raw or b"null")
            except ValueError:
                return r.status, raw.decode(errors="replace")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


def admin(site: str) -> str:
    return make_token(TEST_JWT_SECRET, "alice", site, ["site_admin"])


@pytest.fixture
def api_site(cluster: Cluster, site: str) -> str:
    cmds = [make_command(site, "UpsertSegment", segment_id="sales", name="Sales"),
            make_command(site, "UpsertSegment", segment_id="other", name="Other"),
            make_command(site, "EnableSegmentAutomation", segment_id="sales")]
    for c in cmds:
        cluster.producer.command(c)
    for i in range(30):
        cluster.producer.user_event(make_event(site, f"user{i:02d}", department="Sales" if i % 3 == 0 else "HR"))
    cluster.producer.flush()
    cluster.wait_results([c.command_id for c in cmds])
    cluster.wait(lambda: cluster.stored_users(site) == 30, what="every user stored")
    return site


def test_auth_matrix(cluster: Cluster, api_site: str) -> None:
    """Every endpoint: no token / expired / forged / other site / wrong role -> 401/403; admin -> 2xx.
    Health, readiness and metrics need no token."""
    base = cluster.workers[0].url
    s = api_site
    endpoints = [
        ("GET", f"/sites/{s}/segments", None),
        ("GET", f"/sites/{s}/rules", None),
        ("GET", f"/sites/{s}/segments/sales/members", None),
        ("GET", f"/sites/{s}/users/user00/segments", None),
        ("GET", f"/sites/{s}/users/user00/segments/sales/explain", None),
        ("GET", f"/sites/{s}/commands/nope", None),
        ("POST", f"/sites/{s}/rules/preview", {"segment_id": "sales", "condition": 'department == "Sales"'}),
        ("POST", f"/sites/{s}/rules?dry_run=true", {"rule_id": "x", "segment_id": "sales",
                                                    "condition": {"field": "city", "op": "equals", "value": "a"}}),
        ("PUT", f"/sites/{s}/rules/x?dry_run=true", {"segment_id": "sales", "condition": "city == \"a\""}),
        ("DELETE", f"/sites/{s}/rules/x?dry_run=true", None),
        ("POST", f"/sites/{s}/segments/sales/automation?dry_run=true", {"enabled": True}),
    ]
    expired = make_token(TEST_JWT_SECRET, "alice", s, ["site_admin"], ttl_s=-10)
    forged = make_token("another-secret-of-at-least-32-bytes!", "alice", s, ["site_admin"])
    other_site = make_token(TEST_JWT_SECRET, "alice", "some-other-site", ["site_admin"])
    teacher = make_token(TEST_JWT_SECRET, "bob", s, ["teacher"])
    for method, path, body in endpoints:
        assert call(base, method, path, None, body)[0] == 401, path
        assert call(base, method, path, expired, body)[1]["code"] == "TOKEN_EXPIRED", path
        assert call(base, method, path, forged, body)[0] == 401, path
        code, err = call(base, method, path, other_site, body)
        assert code == 403 and err["code"] == "FORBIDDEN", path
        assert call(base, method, path, teacher, body)[0] == 403, path
        status, _ = call(base, method, path, admin(s), body)
        assert status in (200, 202, 422) or (status == 404 and "commands" in path), (path, status)
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert call(base, "GET", path)[0] == 200


def test_rule_lifecycle_through_the_api(cluster: Cluster, api_site: str) -> None:
    """Create (text form) -> poll ACCEPTED -> members tab lists the matching users with the rule
    -> explain says why -> preview an edit -> update -> delete; a bad rule gets 422 with a code."""
    base, s, tok = cluster.workers[0].url, api_site, admin(api_site)
    code, body = call(base, "POST", f"/sites/{s}/rules?dry_run=true", tok,
                      {"rule_id": "r1", "segment_id": "sales", "condition": {"field": "departmnt", "op": "equals",
                                                                             "value": "Sales"}})
    assert code == 422 and body["errors"][0]["code"] == "UNKNOWN_FIELD"
    assert "department" in body["errors"][0]["message"]  # did-you-mean

    code, body = call(base, "POST", f"/sites/{s}/rules", tok,
                      {"rule_id": "r1", "segment_id": "sales", "name": "Sales", "condition": 'department == "Sales"'})
    assert code == 202
    cmd = body["command_id"]
    cluster.wait(lambda: call(base, "GET", body["poll"], tok)[1]["status"] == "ACCEPTED", what="accepted")
    want = {f"user{i:02d}" for i in range(0, 30, 3)}
    cluster.wait(lambda: fold_membership(cluster.changes_for(s)).get((s, "sales")) == want, what="members")
    time.sleep(0.5)
    page1 = call(base, "GET", f"/sites/{s}/segments/sales/members?limit=4", tok)[1]
    assert [m["user_id"] for m in page1["members"]] == sorted(want)[:4]
    assert page1["members"][0]["matched_rule_ids"] == ["r1"]
    seen = [m["user_id"] for m in page1["members"]]
    cursor = page1["next_cursor"]
    while cursor:
        page = call(base, "GET", f"/sites/{s}/segments/sales/members?limit=4&cursor={cursor}", tok)[1]
        seen += [m["user_id"] for m in page["members"]]
        cursor = page["next_cursor"]
    assert seen == sorted(want)

    # the outbox accounted for releasing those changes, and GC pauses are observed (docs/api.md)
    metrics = {}
    for line in call(base, "GET", "/metrics")[1].splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            metrics[name] = float(value)
    assert metrics["segment_outbox_wait_seconds_count"] >= 1
    assert metrics["segment_outbox_batch_records_sum"] >= len(want)
    assert metrics['segment_outbox_phase_seconds_count{phase="ack"}'] == metrics["segment_outbox_wait_seconds_count"]
    assert sum(v for k, v in metrics.items() if k.startswith("segment_gc_pause_seconds_count")) >= 1

    segs = call(base, "GET", f"/sites/{s}/segments", tok)[1]["segments"]
    assert {x["segment_id"]: x["member_count"] for x in segs} == {"sales": 10, "other": 0}

    ex = call(base, "GET", f"/sites/{s}/users/user03/segments/sales/explain", tok)[1]
    assert ex["member"] is True and ex["rules"][0]["tree"]["actual"] == "Sales"
    ex2 = call(base, "GET", f"/sites/{s}/users/user01/segments/sales/explain", tok)[1]
    assert ex2["member"] is False and ex2["rules"][0]["result"] is False

    prev = call(base, "POST", f"/sites/{s}/rules/preview", tok,
                {"rule_id": "r1", "segment_id": "sales", "condition": 'department in ["Sales", "HR"]'})[1]
    assert (prev["added"], prev["removed"], prev["evaluated"]) == (20, 0, 30)
    assert fold_membership(cluster.changes_for(s)).get((s, "sales")) == want  # preview changed nothing

    code, body = call(base, "PUT", f"/sites/{s}/rules/r1", tok, {"segment_id": "sales", "condition": 'department == "HR"'})
    assert code == 202
    hr = {f"user{i:02d}" for i in range(30) if i % 3}
    cluster.wait(lambda: fold_membership(cluster.changes_for(s)).get((s, "sales")) == hr, what="update applied")
    rules = call(base, "GET", f"/sites/{s}/rules", tok)[1]["rules"]
    assert rules[0]["status"] == "enabled" and rules[0]["condition"]["value"] == "HR"

    code, body = call(base, "DELETE", f"/sites/{s}/rules/r1", tok)
    assert code == 202
    cluster.wait(lambda: fold_membership(cluster.changes_for(s)).get((s, "sales")) == set(), what="deleted")
    assert call(base, "GET", f"/sites/{s}/users/nobody/segments", tok)[0] == 404


def test_bad_requests_get_json_errors(cluster: Cluster, api_site: str) -> None:
    """Malformed bodies and parameters answer 4xx with {code, message}, never 5xx."""
    base, s, tok = cluster.workers[0].url, api_site, admin(api_site)
    for method, path, body in [
        ("POST", f"/sites/{s}/rules", "not an object"),
        ("POST", f"/sites/{s}/rules", {"segment_id": "sales"}),
        ("POST", f"/sites/{s}/rules", {"segment_id": "sales", "rule_id": "", "condition": {}}),
        ("POST", f"/sites/{s}/rules", {"segment_id": "sales", "rule_id": "r", "condition": "department =="}),
        ("GET", f"/sites/{s}/segments/sales/members?limit=0", None),
        ("GET", f"/sites/{s}/segments/sales/members?cursor=%%%", None),
        ("GET", f"/sites/{s}/segments/nope/members", None),
        ("POST", f"/sites/{s}/segments/sales/automation", {"enabled": "yes"}),
        ("POST", f"/sites/{s}/rules/preview", {"segment_id": "nope", "condition": "city == \"x\""}),
    ]:
        code, err = call(base, method, path, tok, body)
        assert 400 <= code < 500, (path, body, code, err)
        assert isinstance(err, dict) and err.get("code") or err.get("errors"), (path, err)


def test_cli_admin_commands_use_the_api(cluster: Cluster, api_site: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`rules apply|list|preview|delete`, `segments list|unmanage`, `members`, `explain` drive the
    same API: JSON output is parseable and reflects the processor's state."""
    import os
    import subprocess
    import sys

    s = api_site
    env = {**os.environ, "API_URL": cluster.workers[0].url, "ADMIN_JWT_SECRET": TEST_JWT_SECRET}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "processor", *args], capture_output=True, text=True,
                              env=env, timeout=120)

    f = tmp_path / "rules.yaml"
    f.write_text('- {rule_id: r-cli, segment_id: sales, name: Sales, condition: \'department == "Sales"\'}\n')
    out = cli("rules", "apply", str(f), "--site", s, "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)[0]["status"] == "ACCEPTED"
    want = {f"user{i:02d}" for i in range(0, 30, 3)}
    cluster.wait(lambda: fold_membership(cluster.changes_for(s)).get((s, "sales")) == want, what="members")
    time.sleep(0.5)
    listed = json.loads(cli("members", "sales", "--site", s, "--json", "--all", "--limit", "3").stdout)
    assert {m["user_id"] for m in listed["members"]} == want
    segs = json.loads(cli("segments", "list", "--site", s, "--json").stdout)
    assert {x["segment_id"]: x["member_count"] for x in segs["segments"]}["sales"] == 10
    rules = json.loads(cli("rules", "list", "--site", s, "--json").stdout)["rules"]
    assert rules[0]["rule_id"] == "r-cli" and rules[0]["status"] == "enabled"
    human = cli("rules", "list", "--site", s)
    assert 'department equals "Sales"' in human.stdout
    prev = json.loads(cli("rules", "preview", 'department == "HR"', "--site", s, "--segment", "sales",
                          "--rule-id", "r-cli", "--json").stdout)
    assert (prev["added"], prev["removed"]) == (20, 10)
    ex = cli("explain", "user03", "sales", "--site", s)
    assert "member=True" in ex.stdout and "department equals 'Sales'" in ex.stdout
    assert cli("rules", "delete", "r-cli", "--site", s).returncode == 0
    cluster.wait(lambda: fold_membership(cluster.changes_for(s)).get((s, "sales")) == set(), what="removed")
    out = cli("segments", "unmanage", "sales", "--site", s)
    assert out.returncode == 0 and '"ACCEPTED"' in out.stdout
    bad = cli("members", "nope", "--site", s)
    assert bad.returncode != 0 and "UNKNOWN_SEGMENT" in bad.stderr
