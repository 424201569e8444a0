"""Hostile and sloppy requests against a real worker: every answer is uncacheable, bad bodies
(too deep, too large however sent, malformed internal ones) are 4xx with a code, never a 500, and
writes are rate-limited per token subject and site."""

from __future__ import annotations

import http.client
import json
import re
import time
import uuid
from typing import Any, Iterator
from urllib.parse import urlsplit

import pytest

from processor.api.auth import make_token
from tests.support.harness import TEST_JWT_SECRET, Cluster, make_command
from processor.http.api import Api

from .test_api import admin, api_site, call  # noqa: F401  (api_site is a fixture)

RULE = {"rule_id": "r1", "segment_id": "sales", "condition": {"field": "city", "op": "equals", "value": "a"}}


def raw_request(base: str, method: str, path: str, body: Any = None, token: str | None = None,
                chunks: Iterator[bytes] | None = None) -> tuple[int, dict[str, str], Any]:
    """One request with http.client (headers visible; a chunked body when ``chunks`` is given)."""
    u = urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        if chunks is not None:
            conn.request(method, path, body=chunks, headers=headers, encode_chunked=True)
        else:
            conn.request(method, path, body=None if body is None else
                         (body if isinstance(body, bytes) else json.dumps(body).encode()), headers=headers)
        r = conn.getresponse()
        raw = r.read()
        try:
            parsed: Any = json.loads(raw)
        except ValueError:
            parsed = raw.decode(errors="replace")
        return r.status, {k.lower(): v for k, v in r.getheaders()}, parsed
    finally:
        conn.close()


def route_requests(site: str) -> list[tuple[str, str, Any]]:
    """A valid request for every route of the API (writes as dry runs where a route has them), from its route table:
    a route added later is covered without editing this list."""
    ids = {"site": site, "segment": "sales", "rule": "r1", "user": "user00", "command": "nope", "shortname": "scratch"}
    # catalog writes (no dry run) act on a segment of their own, so the others keep "sales"
    scratch = {"/sites/{site}/segments/{segment}": {"segment": "scratch-seg"}}
    bodies = {("PUT", "/segments/{segment}"): {"name": "Scratch"},
              ("PUT", "/fields/{shortname}"): {"name": "Scratch", "datatype": "TEXT"},
              ("POST", "/ingest/users"): {"records": [{"op": "delete", "user_id": "ghost-nostore",
                                                        "event_id": "e-nostore", "occurred_at": 1}]},
              ("POST", "/automation"): {"enabled": True}, ("POST", "/rules"): {**RULE, "rule_id": "r2"},
              ("PUT", "/{rule}"): {"segment_id": "sales", "condition": 'city == "a"'},
              ("POST", "/rules/preview"): {"segment_id": "sales", "condition": 'department == "Sales"'},
              ("POST", "/internal/sites/{site}/preview"): {"segment_id": "sales", "condition": RULE["condition"]},
              ("PUT", "/settings"): {"large_change_min_removed": 50},
              ("POST", "/segments:bulk"): {"segments": [{"segment_id": "bulk-seg", "name": "Bulk"}]},
              ("POST", "/rules:impact"): {"rules": [{**RULE, "rule_id": "r3"}]},
              ("POST", "/rules:bulk"): {"rules": [{**RULE, "rule_id": "r4"}]},
              ("POST", "/internal/sites/{site}/impact"): {"commands": []}}
    out = []
    for method, template, handler in Api.routes(Api.__new__(Api)):
        here = {**ids, **scratch.get(template, {})}
        path = re.sub(r"\{(\w+)\}", lambda m: here[m.group(1)], template)
        body = next((b for (m, suffix), b in bodies.items() if m == method and template.endswith(suffix)), None)
        if "dry_run" in Api.QUERY.get(handler.__name__, set()):
            path += "?dry_run=true"
        out.append((method, path, body))
    return out


def test_every_answer_is_no_store(cluster: Cluster, api_site: str) -> None:
    """Every route, answered with success and with errors (no token, another site's token, a
    bad body), unknown paths and wrong methods: Cache-Control: no-store on each."""
    base = cluster.workers[0].url
    rule = make_command(api_site, "CreateRule", rule_id="r1", segment_id="sales", name="r1",
                        condition=RULE["condition"])
    cluster.producer.command(rule)
    cluster.producer.flush()
    assert cluster.wait_results([rule.command_id])[rule.command_id].status == "ACCEPTED"
    tok = make_token(TEST_JWT_SECRET, "alice", api_site, ["site_admin", "system"])  # system: ingest and catalog writes too
    other = make_token(TEST_JWT_SECRET, "alice", "another-site", ["site_admin", "system"])
    seen: list[tuple[int, str, str]] = []
    for method, path, body in route_requests(api_site):
        for token, want in ((tok, range(200, 300)), (None, [401]), (other, [403])):
            status, headers, answer = raw_request(base, method, path, body, token)
            assert status in want, (method, path, status, answer)
            seen.append((status, method, path))
            assert headers.get("cache-control") == "no-store", (method, path, status, headers)
        if body is not None:
            status, headers, _ = raw_request(base, method, path, b"{not json", tok)
            assert status == 400 and headers.get("cache-control") == "no-store", (method, path, status)
    for method, path in (("GET", "/no/such/path"), ("GET", f"/sites/{api_site}/nothing"),
                         ("PATCH", f"/sites/{api_site}/rules/r1"), ("GET", f"/sites/{api_site}/users/ghost/segments")):
        status, headers, _ = raw_request(base, method, path, None, tok)
        assert status in (404, 405), (method, path, status)
        assert headers.get("cache-control") == "no-store", (method, path, status, headers)
    assert len({(m, p) for _, m, p in seen}) == len(Api.routes(Api.__new__(Api)))


@pytest.mark.parametrize("path", ["/sites/{site}/rules?dry_run=true", "/sites/{site}/rules/preview",
                                  "/internal/sites/{site}/preview"])
def test_a_body_nested_50000_deep_is_a_400(cluster: Cluster, api_site: str, path: str) -> None:
    base = cluster.workers[0].url
    lists = b"[" * 50_000 + b"]" * 50_000
    status, _, answer = raw_request(base, "POST", path.format(site=api_site), lists, admin(api_site))
    assert (status, answer.get("code"), answer.get("path")) == (400, "JSON_TOO_DEEP", "$"), answer
    deep = ('{"segment_id": "sales", "condition": ' + '{"not":' * 25_000 + "{}" + "}" * 25_001).encode()
    assert len(deep) < 256 * 1024  # deep, not large
    status, _, answer = raw_request(base, "POST", path.format(site=api_site), deep, admin(api_site))
    assert (status, answer.get("code")) == (400, "JSON_TOO_DEEP"), answer
    # a condition at the compiler's own limit is not refused by the body's bound
    cond: Any = RULE["condition"]
    for _ in range(15):
        cond = {"all": [cond, RULE["condition"]]}
    status, _, answer = raw_request(base, "POST", f"/sites/{api_site}/rules?dry_run=true",
                                    {**RULE, "condition": cond}, admin(api_site))
    assert status == 200 and answer["valid"], answer


def test_a_chunked_body_cannot_pass_the_size_limit(cluster: Cluster, api_site: str) -> None:
    """No Content-Length, 300 KiB in chunks: 413 BODY_TOO_LARGE, like a declared large body."""
    base = cluster.workers[0].url
    pad = json.dumps({**RULE, "name": "x" * (300 * 1024)}).encode()
    status, _, answer = raw_request(base, "POST", f"/sites/{api_site}/rules?dry_run=true", token=admin(api_site),
                                    chunks=iter([pad[i:i + 8192] for i in range(0, len(pad), 8192)]))
    assert (status, answer["code"]) == (413, "BODY_TOO_LARGE"), answer
    status, _, answer = raw_request(base, "POST", f"/sites/{api_site}/rules?dry_run=true", pad, admin(api_site))
    assert (status, answer["code"]) == (413, "BODY_TOO_LARGE"), answer
    small = json.dumps(RULE).encode()  # a chunked body under the limit is read as usual
    status, _, answer = raw_request(base, "POST", f"/sites/{api_site}/rules?dry_run=true", token=admin(api_site),
                                    chunks=iter([small[:10], small[10:]]))
    assert status == 200 and answer["valid"], answer


def test_a_body_cut_off_midway_is_not_a_server_error(cluster: Cluster, api_site: str) -> None:
    """A client that announces a chunked (or a 1,000-byte) body, sends part of it and hangs up
    gets no answer, but the worker counts a 400, not a 500 (the API's latency metric by status)."""
    import socket

    base = cluster.workers[0].url
    u = urlsplit(base)
    path = f"/sites/{api_site}/rules?dry_run=true"

    def counted(status: str) -> float:
        _, _, text = raw_request(base, "GET", "/metrics")
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("segment_api_request_seconds_count{")
                   and 'endpoint="create_rule"' in line and f'status="{status}"' in line)

    before = {s: counted(s) for s in ("400", "500")}
    for framing in (b"Transfer-Encoding: chunked\r\n\r\n40\r\n{\"rule_id\": ", b"Content-Length: 1000\r\n\r\n{\"a\": "):
        with socket.create_connection((u.hostname, u.port), timeout=10) as sock:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin(api_site)}\r\n"
                         "Content-Type: application/json\r\n".encode() + framing)
            sock.shutdown(socket.SHUT_WR)
            sock.recv(1000)
    cluster.wait(lambda: counted("400") + counted("500") >= before["400"] + before["500"] + 2, 30,
                 "both cut-off requests counted")
    assert counted("500") == before["500"]


@pytest.mark.parametrize("body,status,code", [
    ({}, 400, "INVALID_FIELD"), ([], 400, "INVALID_BODY"), ("text", 400, "INVALID_BODY"),
    ({"segment_id": "sales"}, 400, "INVALID_FIELD"),
    ({"segment_id": "sales", "condition": 7}, 400, "INVALID_CONDITION"),
    ({"segment_id": "sales", "condition": {"field": "city"}}, 422, None),
    ({"segment_id": "sales", "condition": {"fieldz": "city", "op": "equals", "value": "a"}}, 422, None),
    ({"segment_id": ["sales"], "condition": {}}, 400, "INVALID_FIELD"),
])
def test_a_malformed_internal_preview_is_a_4xx(cluster: Cluster, api_site: str, body: Any, status: int,
                                               code: str | None) -> None:
    got, _, answer = raw_request(cluster.workers[0].url, "POST", f"/internal/sites/{api_site}/preview", body,
                                 admin(api_site))
    assert got == status, answer
    assert answer["code"] == code if code else answer["code"]


def test_internal_preview_answers_what_the_public_one_sums(cluster: Cluster, api_site: str) -> None:
    base = cluster.workers[0].url
    body = {"segment_id": "sales", "condition": {"field": "department", "op": "equals", "value": "Sales"}}
    got, _, answer = raw_request(base, "POST", f"/internal/sites/{api_site}/preview", body, admin(api_site))
    assert got == 200 and answer["evaluated"] == 30 and answer["added"] == 10, answer


def test_writes_are_rate_limited_per_token_subject_and_site(cluster: Cluster, api_site: str) -> None:
    """120 writes a minute per (subject, site) by default; the 121st is 429 RATE_LIMITED with
    Retry-After. Dry runs are not counted, and another subject is not affected."""
    base = cluster.workers[0].url
    sub = f"busy-{uuid.uuid4().hex[:6]}"
    tok = make_token(TEST_JWT_SECRET, sub, api_site, ["site_admin"])
    started = time.monotonic()
    for i in range(120):
        code, answer = call(base, "DELETE", f"/sites/{api_site}/rules/none-{i}", tok)
        assert code == 202, (i, answer)
    assert time.monotonic() - started < 55, "the writes must fit in one window for this test to mean anything"
    status, headers, answer = raw_request(base, "DELETE", f"/sites/{api_site}/rules/none-x", token=tok)
    assert (status, answer["code"]) == (429, "RATE_LIMITED"), answer
    assert 1 <= int(headers["retry-after"]) <= 60
    code, answer = call(base, "DELETE", f"/sites/{api_site}/rules/none-x?dry_run=true", tok)
    assert code in (200, 422), answer  # validated as usual, not limited
    other = make_token(TEST_JWT_SECRET, sub + "-2", api_site, ["site_admin"])
    code, answer = call(base, "DELETE", f"/sites/{api_site}/rules/none-y", other)
    assert code == 202, answer


def test_concurrent_previews_past_the_limit_are_refused(cluster: Cluster, site: str) -> None:
    """10,000 stored users; four previews at once on one worker: SCAN_CONCURRENCY (2) of them
    scan, the others are refused at once with 429 SCAN_BUSY and Retry-After. Each preview that
    ran evaluated every user. (Before: previews ran one after another, each holding the event
    loop for its whole scan, and all four answered 200.)"""
    from concurrent.futures import ThreadPoolExecutor

    from tests.support.harness import make_event

    cmds = [make_command(site, "UpsertSegment", segment_id="sales", name="Sales"),
            make_command(site, "EnableSegmentAutomation", segment_id="sales")]
    for c in cmds:
        cluster.producer.command(c)
    cluster.producer.flush()
    cluster.wait_results([c.command_id for c in cmds])
    n = 10_000
    for i in range(n):
        cluster.producer.user_event(make_event(site, f"u{i:05d}", department="Sales" if i % 4 == 0 else "HR",
                                               city="Paris"))
    cluster.producer.flush()
    base = cluster.workers[0].url
    tok = admin(site)
    body = {"segment_id": "sales", "condition": 'department == "Sales"'}

    def stored() -> bool:
        code, answer = call(base, "GET", f"/sites/{site}/segments", tok)
        return code == 200 and answer["users"] == n

    cluster.wait(stored, 120, f"{n} users stored")
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: raw_request(base, "POST", f"/sites/{site}/rules/preview", body, tok),
                                range(4)))
    ok = [a for s, _, a in answers if s == 200]
    busy = [(h, a) for s, h, a in answers if s == 429]
    assert len(ok) + len(busy) == 4, [s for s, _, _ in answers]
    assert 1 <= len(ok) <= 2 and busy, [s for s, _, _ in answers]
    assert all(a["evaluated"] == n and a["added"] == n // 4 for a in ok), ok
    assert all(a["code"] == "SCAN_BUSY" and h["retry-after"].isdigit() for h, a in busy), busy
