"""Security of a running worker: only declared routes are served, and with COMMANDS_REQUIRE_TOKEN=1
a command on the bus counts only with a valid token of its site's admin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from processor.api.auth import make_token
from processor.client import TopicReader
from processor.contract.codec import encode_command
from processor.state.keys import user_key
from tests.support.harness import TEST_JWT_SECRET, Cluster, WorkerProcess, make_command, make_event
from tests.integration.conftest import warm_up


def http(method: str, url: str, token: str | None = None, body: Any = None) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def test_faust_views_answer_404_and_no_profile_data(cluster: Cluster, site: str) -> None:
    """A stored user's profile is not readable through Faust's /table/ view (nor /router/, /, the
    stats pages) without a token: every one of them is 404 NOT_FOUND and carries no data."""
    email = f"alice-{uuid.uuid4().hex[:6]}@example.com"
    cluster.producer.user_event(make_event(site, "alice", email=email, department="Sales"))
    marker = make_command(site, "UpsertSegment", segment_id="s", name="S")
    cluster.producer.command(marker)
    cluster.producer.flush()
    cluster.wait_results([marker.command_id])
    base = cluster.workers[0].url
    admin = make_token(TEST_JWT_SECRET, "alice", site, ["site_admin"])
    cluster.wait(lambda: http("GET", f"{base}/sites/{site}/users/alice/segments", admin)[0] == 200,
                 30, "the user is stored")
    key = urllib.parse.quote(user_key(site, "alice").decode("latin-1"), safe="")
    served = []
    for path in (f"/table/users/{key}/", "/table/", "/table/users/", "/router/", "/router/topics",
                 f"/router/users/{key}/", "/", "/graph/", "/stats/", "/assignment/", "/performance/",
                 "/sites/", f"/sites/{site}/"):
        status, body = http("GET", base + path)
        if status != 404 or _code(body) != "NOT_FOUND" or email in body or "alice" in body:
            served.append((path, status, body[:300]))
    assert served == []
    # the same user is readable through the API with the site's token, and only with it
    assert email not in http("GET", f"{base}/sites/{site}/users/alice/segments")[1]
    assert http("GET", f"{base}/sites/{site}/users/alice/segments")[0] == 401


# ------------------------------------------------------------------ COMMANDS_REQUIRE_TOKEN=1


@pytest.fixture(scope="module")
def strict(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One extra worker with COMMANDS_REQUIRE_TOKEN=1 on the session's broker, with its own app id
    and topics (2 partitions: cheap)."""
    c = Cluster(Path(tmp_path_factory.mktemp("strict")), bootstrap=cluster.settings.bootstrap_servers,
                partitions=2, app_id="sa-strict", topic_suffix="-strict")
    try:
        w = WorkerProcess(c.settings, "strict", c.work_dir, extra_env={"COMMANDS_REQUIRE_TOKEN": "1"}).start()
        c.workers.append(w)
        warm_up(c)
        yield c
    finally:
        c.close()


def _send(c: Cluster, cmd: Any) -> str:
    c.producer.raw(c.settings.topics.commands, cmd.site_id.encode(), encode_command(cmd))
    return cmd.command_id


def test_commands_need_a_valid_token_of_their_site(strict: Cluster) -> None:
    """With COMMANDS_REQUIRE_TOKEN=1 the worker rejects (FORBIDDEN) a command without a token, with a
    token of another site, an expired one, one valid for too long, one signed with another key, and
    one whose token lacks the role the record's actor claims; it accepts a command whose token is
    valid, taking the actor from the token (not from the record). No token reaches the catalog log
    or the results."""
    c = strict
    site = f"strict-{uuid.uuid4().hex[:8]}"
    now = int(time.time())
    good = make_token(TEST_JWT_SECRET, "alice", site, ["site_admin"])
    tokens = {
        "none": None,
        "other_site": make_token(TEST_JWT_SECRET, "alice", "another-site", ["site_admin"]),
        "expired": make_token(TEST_JWT_SECRET, "alice", site, ["site_admin"], ttl_s=60, now=now - 3600),
        "too_long": make_token(TEST_JWT_SECRET, "alice", site, ["site_admin"], ttl_s=30 * 86400),
        "forged": make_token("some-other-secret-0123456789-abcdefgh", "alice", site, ["site_admin"]),
        "teacher": make_token(TEST_JWT_SECRET, "bob", site, ["teacher"]),
    }
    # first a plain command as every producer sends it today: the record claims site_admin
    plain = make_command(site, "UpsertSegment", roles=("site_admin",), segment_id="seg-plain", name="plain")
    _send(c, plain)
    c.producer.flush()
    r = c.wait_results([plain.command_id], timeout=90)[plain.command_id]
    assert (r.status, r.code) == ("REJECTED", "FORBIDDEN"), r
    ids = {}
    for name, tok in tokens.items():
        cmd = make_command(site, "UpsertSegment", roles=("site_admin",), segment_id=f"seg-{name}", name=name)
        ids[name] = _send(c, cmd.__class__(**{**_fields(cmd), "auth_token": tok}))
    # claims no role at all in the record; the token is a site admin's
    accepted = make_command(site, "UpsertSegment", roles=(), segment_id="sales", name="Sales")
    ids["good"] = _send(c, accepted.__class__(**{**_fields(accepted), "auth_token": good}))
    c.producer.flush()
    res = c.wait_results(ids.values(), timeout=90)
    for name in tokens:
        r = res[ids[name]]
        assert (r.status, r.code) == ("REJECTED", "FORBIDDEN"), (name, r)
    assert "no auth_token" in res[ids["none"]].message
    assert "another-site" in res[ids["other_site"]].message
    assert "TOKEN_EXPIRED" in res[ids["expired"]].message
    assert "TOKEN_LIFETIME_TOO_LONG" in res[ids["too_long"]].message
    assert "INVALID_TOKEN" in res[ids["forged"]].message
    assert "site_admin" in res[ids["teacher"]].message and "'bob'" in res[ids["teacher"]].message
    assert res[ids["good"]].status == "ACCEPTED", res[ids["good"]]

    # the API forwards the caller's token: an API write is accepted on this worker
    base = c.workers[0].url
    status, body = http("POST", f"{base}/sites/{site}/segments/sales/automation", good, {"enabled": True})
    assert status == 202, body
    api_cmd = json.loads(body)["command_id"]
    assert c.wait_results([api_cmd], timeout=60)[api_cmd].status == "ACCEPTED"

    # the catalog log records the actor taken from the token, and holds no token
    secrets_ = [t for t in (*tokens.values(), good) if t]
    entries = _read_all(c, c.settings.topics.catalog)
    # (the log also holds other records, e.g. backfill progress: the commands are the ones with "command")
    mine = [e for e in (json.loads(v) for v in entries if site.encode() in v) if "command" in e]
    assert {e["command"]["command_id"] for e in mine} >= {ids["good"], api_cmd}
    by_id = {e["command"]["command_id"]: e for e in mine}
    assert by_id[ids["good"]]["command"]["actor"] == {"user_id": "alice", "roles": ["site_admin"]}
    for raw in entries + _read_all(c, c.settings.topics.command_results):
        assert not any(t.encode() in raw for t in secrets_)


def test_cli_publish_attaches_a_token(strict: Cluster, tmp_path: Path) -> None:
    """`commands publish` mints a token per command from ADMIN_JWT_SECRET, so the strict worker
    accepts; with --no-token the same file is rejected FORBIDDEN."""
    site = f"strict-{uuid.uuid4().hex[:8]}"
    f = tmp_path / "cmds.yaml"
    f.write_text(f"site_id: {site}\nactor: {{user_id: ops, roles: [site_admin]}}\n"
                 "commands:\n  - UpsertSegment: {segment_id: sales, name: Sales}\n")
    t = strict.settings.topics
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": strict.settings.bootstrap_servers,
           "TOPIC_COMMANDS": t.commands, "TOPIC_COMMAND_RESULTS": t.command_results,
           "ADMIN_JWT_SECRET": TEST_JWT_SECRET}
    env.pop("ADMIN_TOKEN", None)
    run = [sys.executable, "-m", "processor", "commands", "publish", str(f), "--timeout", "60"]
    out = subprocess.run(run, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and "ACCEPTED" in out.stdout, out.stdout + out.stderr
    out = subprocess.run([*run, "--no-token"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 4 and "REJECTED" in out.stdout and "FORBIDDEN" in out.stdout, out.stdout  # 4: rejected


def _code(body: str) -> Any:
    try:
        return json.loads(body).get("code")
    except (ValueError, AttributeError):
        return None


def _fields(cmd: Any) -> dict[str, Any]:
    return {f: getattr(cmd, f) for f in ("command_id", "site_id", "issued_at", "actor", "payload_type", "payload")}


def _read_all(c: Cluster, topic: str, idle: float = 1.0) -> list[bytes]:
    reader = TopicReader(c.settings.bootstrap_servers, topic)
    out: list[bytes] = []
    try:
        last = time.monotonic()
        while time.monotonic() - last < idle:
            batch = reader.poll_batch()
            if batch:
                last = time.monotonic()
            out.extend(v for _, v in batch if v is not None)
    finally:
        reader.close()
    return out
