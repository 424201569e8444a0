"""The bridge endpoints on a real worker: ingest, catalog writes over HTTP, stored profiles."""

from __future__ import annotations

import time

from processor.api.auth import make_token
from tests.support.harness import TEST_JWT_SECRET, Cluster, make_command
from tests.integration.test_api import call


def token(site: str, *roles: str) -> str:
    return make_token(TEST_JWT_SECRET, "bridge", site, list(roles))


def wait_command(base: str, site: str, command_id: str, tok: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st, body = call(base, "GET", f"/sites/{site}/commands/{command_id}", tok)
        if st == 200 and body["status"] != "PENDING":
            return body
        time.sleep(0.1)
    raise AssertionError(f"command {command_id} still PENDING")


def test_ingest_catalog_writes_and_profiles_end_to_end(cluster: Cluster, site: str) -> None:
    """Catalog over HTTP (role system), records over HTTP (role ingest): accepted ones change
    membership and show up in the stored profiles, the rejected one says why and changes nothing."""
    base = cluster.workers[0].url
    system, ingest, admin = token(site, "system"), token(site, "ingest"), token(site, "site_admin")
    st, seg = call(base, "PUT", f"/sites/{site}/segments/sales", system, {"name": "Sales"})
    assert st == 202, seg
    st, fld = call(base, "PUT", f"/sites/{site}/fields/level", system,
                   {"name": "Level", "datatype": "MENU", "options": ["Junior", "Senior"]})
    assert st == 202, fld
    for c in (seg, fld):
        assert wait_command(base, site, c["command_id"], admin)["status"] == "ACCEPTED"
    cmds = [make_command(site, "EnableSegmentAutomation", segment_id="sales"),
            make_command(site, "CreateRule", rule_id="r", segment_id="sales", name="r",
                         condition={"all": [{"field": "department", "op": "equals", "value": "Sales"},
                                            {"field": "profile_field_level", "op": "equals", "value": "Senior"}]})]
    for c in cmds:
        cluster.producer.command(c)
    cluster.producer.flush()
    cluster.wait_results([c.command_id for c in cmds])

    body = {"records": [
        {"op": "upsert", "user_id": "42", "event_id": f"{site}-1", "occurred_at": 1764800000000,
         "event_type": "USER_CREATED", "profile": {"username": "alice", "department": "Sales",
                                                   "profile_field_level": "Senior", "lastaccess": 1764790000}},
        {"op": "upsert", "user_id": "43", "event_id": f"{site}-2", "occurred_at": 1764800000001,
         "profile": {"username": "bob", "department": "Sales", "profile_field_level": {"bad": 1}}},
        {"op": "upsert", "user_id": "44", "event_id": f"{site}-3", "occurred_at": 1764800000002,
         "profile": {"username": "carol", "department": "HR"}},
    ]}
    assert call(base, "POST", f"/sites/{site}/ingest/users", admin, body)[0] == 403  # site_admin may not ingest
    st, res = call(base, "POST", f"/sites/{site}/ingest/users", ingest, body)
    assert st == 200, res
    assert (res["accepted"], res["rejected"]) == (2, 1)
    assert [r["status"] for r in res["results"]] == ["ACCEPTED", "REJECTED", "ACCEPTED"]
    assert res["results"][1]["path"] == "$.records[1].profile.profile_field_level"
    assert res["results"][1]["code"] == "INVALID_VALUE" and res["results"][1]["event_id"] == f"{site}-2"
    cluster.wait(lambda: any(c.user_id == "42" and c.change == "ADDED" for c in cluster.changes_for(site)),
                 what="alice (ingested over HTTP) added to sales")

    st, res = call(base, "POST", f"/sites/{site}/ingest/users", token(site, "system"), {"records": [
        {"op": "delete", "user_id": "42", "event_id": f"{site}-4", "occurred_at": 1764800000003}]})
    assert (st, res["accepted"]) == (200, 1)
    cluster.wait(lambda: any(c.user_id == "42" and c.change == "REMOVED" for c in cluster.changes_for(site)),
                 what="alice removed after her deletion")

    pages, cursor = [], ""
    while True:
        st, page = call(base, "GET", f"/sites/{site}/users?limit=1" + (f"&cursor={cursor}" if cursor else ""), admin)
        assert st == 200, page
        pages.append(page["users"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    users = [u for p in pages for u in p]
    assert [u["user_id"] for u in users] == ["42", "44"]  # bob was never accepted
    assert users[0]["deleted"] is True
    assert users[1]["profile"] == {"username": "carol", "department": "HR"}
    assert call(base, "GET", f"/sites/{site}/users?colour=red", admin)[0] == 400
    assert call(base, "GET", f"/sites/{site}/users", ingest)[0] == 403


def test_catalog_writes_need_a_catalog_role_and_reject_through_the_command(cluster: Cluster, site: str) -> None:
    base = cluster.workers[0].url
    assert call(base, "PUT", f"/sites/{site}/segments/s", token(site, "ingest"), {"name": "S"})[0] == 403
    assert call(base, "PUT", f"/sites/{site}/fields/f", token(site, "system"), {"datatype": "menu"})[0] == 400
    st, res = call(base, "PUT", f"/sites/{site}/fields/f", token(site, "system"), {"datatype": "MENU"})
    assert st == 202
    done = wait_command(base, site, res["command_id"], token(site, "site_admin"))
    assert (done["status"], done["code"]) == ("REJECTED", "INVALID_FIELD")  # a MENU needs options
    st, res = call(base, "DELETE", f"/sites/{site}/segments/never", token(site, "site_admin"))
    assert st == 202
    assert wait_command(base, site, res["command_id"], token(site, "site_admin"))["status"] == "REJECTED"


def test_a_body_that_arrives_in_pieces_is_read_whole(cluster: Cluster, site: str) -> None:
    """A large request whose body reaches the worker in two parts (a pause between them) is
    parsed whole, not as the part that had arrived (which was INVALID_JSON)."""
    import http.client
    import json
    from urllib.parse import urlsplit

    records = [{"op": "upsert", "user_id": f"u{i}", "event_id": f"{site}-{i}", "occurred_at": 1,
                "profile": {"username": f"u{i}", "description": "x" * 300}} for i in range(400)]
    body = json.dumps({"records": records}).encode()
    assert 100_000 < len(body) < 256 * 1024
    url = urlsplit(cluster.workers[0].url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    conn.putrequest("POST", f"/sites/{site}/ingest/users")
    conn.putheader("Authorization", f"Bearer {token(site, 'ingest')}")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    conn.send(body[: len(body) // 2])
    time.sleep(0.5)
    conn.send(body[len(body) // 2:])
    resp = conn.getresponse()
    answer = json.loads(resp.read())
    assert (resp.status, answer.get("accepted")) == (200, 400), answer
