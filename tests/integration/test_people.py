"""People, not ids, on two real worker processes sharing the partitions (issue 21, part 1).

A generated workload (tests/support/oracle: Faker profiles with names and e-mail addresses, rule
and automation changes) runs on the embedded broker until the membership output equals the
oracle. Then, asked of either worker: each managed segment's member list carries every member
with the name and e-mail of its folded profile; ``?q=`` finds exactly the members whose id, first
name, last name, full name or e-mail starts with the term; ``members.csv`` streams the whole list
with the same content; the CLI's ``members --csv -o`` writes the same file. Expected values come
from the oracle (membership, profiles) and the plain prefix rule written below, never from the
processor's own answers. Each worker holds part of every list, so every answer is gathered.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from processor.api.auth import make_token
from tests.support.harness import TEST_JWT_SECRET, Cluster, produce_steps, wait_checker_ok
from tests.support.oracle import expected_membership, fold, generate

from .conftest import SharedPair
from .test_api import call

SEED = 2121


def owned(url: str, topic: str) -> set[str]:
    """The user-event partitions a worker reports consumer lag for (the ones it owns)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    except OSError:
        return set()
    return {s.labels["partition"] for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == "segment_consumer_lag" and s.labels["topic"] == topic}


@pytest.fixture(scope="module")
def two(shared_pair: SharedPair) -> Cluster:
    c = shared_pair.get()
    topic, n = c.settings.topics.user_events, c.settings.partitions

    def settled() -> bool:  # both own partitions, together every one, none twice
        a, b = (owned(w.url, topic) for w in c.workers)
        return bool(a) and bool(b) and not a & b and a | b == {str(p) for p in range(n)}

    c.wait(settled, 120, "the two workers share the partitions")
    return c


@pytest.fixture(scope="module")
def world(two: Cluster) -> dict[str, Any]:
    """The workload applied and checked against the oracle: its site, the expected members of
    each managed segment and every user's folded profile."""
    wl = generate(SEED, 1500, sites=1, users_per_site=300, rule_changes=12, site_prefix="people")
    expected = expected_membership(wl.steps)
    produce_steps(two.producer, wl.steps)
    two.producer.flush()
    report = wait_checker_ok(two, expected, wl.sites, timeout=300, what="people workload == oracle")
    assert report.ok, str(report)
    (site,) = wl.sites
    profiles = {uid: rec.profile for (s, uid), rec in fold(wl.steps).users.items() if s == site}
    segments = {seg: members for (s, seg), members in expected.items() if s == site and members}
    assert len(segments) >= 2 and sum(map(len, segments.values())) > 200, segments
    tok = make_token(TEST_JWT_SECRET, "ops", site, ["site_admin"])

    def counted() -> bool:  # the members-tab entries of every worker are in place
        code, body = call(two.workers[0].url, "GET", f"/sites/{site}/segments", tok)
        counts = {s["segment_id"]: s["member_count"] for s in body["segments"]} if code == 200 else {}
        return all(counts.get(seg) == len(m) for seg, m in segments.items())

    two.wait(counted, 60, "member counts of every managed segment")
    return {"site": site, "segments": segments, "profiles": profiles, "token": tok}


# -------------------------------------------------------------- expectations (independent)
def words(v: Any) -> str:
    return " ".join(v.split()) if isinstance(v, str) else ""


def name_of(p: dict[str, Any]) -> str | None:
    return " ".join(x for x in (words(p.get("firstname")), words(p.get("lastname"))) if x) or None


def email_of(p: dict[str, Any]) -> str | None:
    return words(p.get("email")) or None


def finds(term: str, uid: str, p: dict[str, Any]) -> bool:
    t = " ".join(term.split()).casefold()
    first, last = words(p.get("firstname")), words(p.get("lastname"))
    return any(v.casefold().startswith(t) for v in (uid, first, last, name_of(p) or "", email_of(p) or ""))


def listing(base: str, path: str, tok: str, limit: int) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    cursor = ""
    while True:
        sep = "&" if "?" in path else "?"
        code, page = call(base, "GET", f"{path}{sep}limit={limit}&cursor={cursor}", tok)
        assert code == 200, page
        seen += page["members"]
        cursor = page["next_cursor"]
        if not cursor:
            return seen


def parse_csv(raw: bytes) -> list[list[str]]:
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert rows[0] == ["user_id", "name", "email", "member_since_utc", "matched_rule_ids"]
    return [[c[1:] if c.startswith("'") else c for c in r] for r in rows[1:]]  # the formula guard undone


# ---------------------------------------------------------------------------------- tests
def test_each_worker_holds_part_of_every_list(two: Cluster, world: dict[str, Any]) -> None:
    """The lists below are gathered: each worker's own partitions hold some members of each."""
    site, tok = world["site"], world["token"]
    for seg, members in world["segments"].items():
        parts = []
        for w in two.workers:
            code, body = call(w.url, "GET", f"/internal/sites/{site}/segments/{quote(seg)}/members?limit=500", tok)
            assert code == 200, body
            parts.append({m["user_id"] for m in body["members"]})
        assert all(parts) and not parts[0] & parts[1] and parts[0] | parts[1] == members, seg


def test_member_lists_show_every_member_with_name_and_email(two: Cluster, world: dict[str, Any]) -> None:
    site, tok, profiles = world["site"], world["token"], world["profiles"]
    for w in two.workers:
        for seg, members in world["segments"].items():
            got = listing(w.url, f"/sites/{site}/segments/{quote(seg)}/members", tok, 41)
            assert [m["user_id"] for m in got] == sorted(members), (w.name, seg)
            for m in got:
                p = profiles[m["user_id"]]
                assert (m["name"], m["email"]) == (name_of(p), email_of(p)), m
            assert any(m["name"] for m in got) and any(m["email"] for m in got)


def search_terms(world: dict[str, Any]) -> list[str]:
    """Terms taken from the profiles: a first name's start (upper case), a last name, a full name
    cut inside the last name, an e-mail's start, an id's start, and a term nobody has."""
    p = world["profiles"]
    uid = sorted(next(iter(world["segments"].values())))[0]
    first, last = words(p[uid]["firstname"]), words(p[uid]["lastname"])
    mail = email_of(p[uid]) or "a"
    return [first[:2].upper(), last, f"{first}  {last[:2]}", mail[:5], uid[:-1], "zz-nobody-zz"]


def test_search_finds_exactly_the_matching_members(two: Cluster, world: dict[str, Any]) -> None:
    site, tok, profiles = world["site"], world["token"], world["profiles"]
    found_any = 0
    for term in search_terms(world):
        for seg, members in world["segments"].items():
            want = sorted(u for u in members if finds(term, u, profiles[u]))
            found_any += len(want)
            for w in two.workers:
                got = listing(w.url, f"/sites/{site}/segments/{quote(seg)}/members?q={quote(term)}", tok, 3)
                assert [m["user_id"] for m in got] == want, (w.name, seg, term)
                assert all(m["name"] == name_of(profiles[m["user_id"]]) for m in got)
    assert found_any > 10  # the terms do find people


def test_csv_export_is_the_whole_list_from_either_worker(two: Cluster, world: dict[str, Any]) -> None:
    site, tok, profiles = world["site"], world["token"], world["profiles"]
    for seg, members in world["segments"].items():
        bodies = []
        for w in two.workers:
            req = urllib.request.Request(f"{w.url}/sites/{site}/segments/{quote(seg)}/members.csv",
                                         headers={"Authorization": f"Bearer {tok}"})
            with urllib.request.urlopen(req, timeout=60) as r:
                assert r.headers["Content-Type"].startswith("text/csv")
                assert r.headers["Content-Disposition"].startswith("attachment; filename=")
                bodies.append(r.read())
        assert bodies[0] == bodies[1], seg
        rows = parse_csv(bodies[0])
        assert [r[0] for r in rows] == sorted(members), seg
        for uid, name, mail, since, rules in rows:
            p = profiles[uid]
            assert (name, mail) == (name_of(p) or "", email_of(p) or "")
            assert since[:2] == "20" and len(since) == 19


def test_cli_search_and_export(two: Cluster, world: dict[str, Any], tmp_path: Path) -> None:
    site, tok, profiles = world["site"], world["token"], world["profiles"]
    seg, members = max(world["segments"].items(), key=lambda kv: len(kv[1]))
    env = {**os.environ, "API_URL": two.workers[1].url, "ADMIN_TOKEN": tok}
    out = tmp_path / "members.csv"
    run = subprocess.run([sys.executable, "-m", "processor", "members", seg, "--csv", "-o", str(out)],
                         capture_output=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert [r[0] for r in parse_csv(out.read_bytes())] == sorted(members)
    term = search_terms(world)[1]
    import json

    run = subprocess.run([sys.executable, "-m", "processor", "members", seg, "--search", term, "--all", "--json"],
                         capture_output=True, env=env, timeout=120, text=True)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)["members"]
    assert [m["user_id"] for m in got] == sorted(u for u in members if finds(term, u, profiles[u]))
    assert all("name" in m and "email" in m for m in got)
