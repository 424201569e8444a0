"""Two worker processes share the partitions; a rule change reaches every user."""

from __future__ import annotations

import json

import pytest

from tests.support.harness import Cluster, fold_membership, make_command, make_event

from .conftest import SharedPair


@pytest.fixture(scope="module")
def two(shared_pair: SharedPair) -> Cluster:
    # test_each_worker_reports_lag_only_for_partitions_it_owns needs the rebalance two_workers makes;
    # the takeover test replaces both workers: the next user of shared_pair gets a fresh cluster
    return shared_pair.get()


def test_each_worker_reports_lag_only_for_partitions_it_owns(two: Cluster) -> None:
    """segment_consumer_lag (summed by the alert rules) lists each user-event partition on exactly
    one worker once the group has settled: the partitions b took from a in the rebalance leave
    no stale series behind on a."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    topic = two.settings.topics.user_events

    def owned(w) -> set[str]:  # type: ignore[no-untyped-def]
        try:
            text = urllib.request.urlopen(f"{w.url}/metrics", timeout=10).read().decode()
        except OSError:  # b's web server may still be starting
            return set()
        return {s.labels["partition"] for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == "segment_consumer_lag" and s.labels["topic"] == topic}

    def settled() -> bool:
        a, b = (owned(w) for w in two.workers[:2])
        return a | b == {str(p) for p in range(two.settings.partitions)} and bool(a) and bool(b)

    two.wait(settled, 60, "both workers report lag, together for every partition")
    a, b = (owned(w) for w in two.workers[:2])
    assert not a & b, (a, b)


def test_rule_change_backfills_users_on_every_partition(two: Cluster) -> None:
    """300 users spread over 8 partitions owned by 2 workers: CreateRule adds every match."""
    site = "two-workers"
    cmds = [make_command(site, "UpsertSegment", segment_id="s", name="S"),
            make_command(site, "EnableSegmentAutomation", segment_id="s")]
    for c in cmds:
        two.producer.command(c)
    two.producer.flush()
    two.wait_results([c.command_id for c in cmds])
    users = {f"user-{i}": ("Paris" if i % 3 == 0 else "Oslo") for i in range(300)}
    for uid, city in users.items():
        two.producer.user_event(make_event(site, uid, city=city))
    two.producer.flush()
    two.wait(lambda: two.stored_users(site) == len(users), what="every user stored")
    rule = make_command(site, "CreateRule", rule_id="paris", segment_id="s", name="paris",
                        condition={"field": "city", "op": "equals", "value": "paris"})
    two.producer.command(rule)
    two.producer.flush()
    assert two.wait_results([rule.command_id])[rule.command_id].status == "ACCEPTED"
    want = {u for u, c in users.items() if c == "Paris"}
    two.wait(lambda: fold_membership(two.changes_for(site)).get((site, "s")) == want, timeout=90,
             what="all Paris users added")
    assert len({c.change_id for c in two.changes_for(site)}) == len(want)
    # both workers really did work: each logged backfills for its own partitions
    logs = [w.log_path.read_text(errors="replace") for w in two.workers]
    assert all("backfill" in text for text in logs), "each worker should own some partitions"
    assert all(w.alive for w in two.workers)


def test_member_listing_gathers_every_worker(two: Cluster) -> None:
    """Each worker's API lists the complete, identically ordered member set (pages gathered
    from both workers' partitions), and segment counts agree."""
    from processor.api.auth import make_token
    from tests.support.harness import TEST_JWT_SECRET

    from .test_api import call

    site = "two-workers"
    want = sorted(fold_membership(two.changes_for(site)).get((site, "s"), set()))
    assert len(want) == 100
    tok = make_token(TEST_JWT_SECRET, "ops", site, ["site_admin"])
    for w in two.workers:
        seen: list[str] = []
        cursor = ""
        while True:
            code, page = call(w.url, "GET", f"/sites/{site}/segments/s/members?limit=37&cursor={cursor}", tok)
            assert code == 200, page
            seen += [m["user_id"] for m in page["members"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert seen == want, w.name
        segs = call(w.url, "GET", f"/sites/{site}/segments", tok)[1]
        assert segs["segments"][0]["member_count"] == 100 and segs["users"] == 300


def _listing(w, site: str, tok: str) -> list[dict]:
    from .test_api import call

    seen: list[dict] = []
    cursor = ""
    while True:
        code, page = call(w.url, "GET", f"/sites/{site}/segments/s/members?limit=50&cursor={cursor}", tok)
        assert code == 200, page
        seen += page["members"]
        cursor = page["next_cursor"]
        if not cursor:
            return seen


def test_member_listing_survives_takeover_by_a_fresh_worker(two: Cluster) -> None:
    """Members-tab entries are not in the changelog: a worker started on an empty state dir
    that takes over every partition derives them from the restored user states. Its listing is
    the same, entry for entry (since, matched rules, cause), as before the takeover."""
    from processor.api.auth import make_token
    from tests.support.harness import TEST_JWT_SECRET

    from .test_api import call

    site = "two-workers"
    tok = make_token(TEST_JWT_SECRET, "ops", site, ["site_admin"])
    before = _listing(two.workers[0], site, tok)
    assert len(before) == 100
    fresh = two.start_worker("fresh")
    assert not fresh.state_dir.exists() or not any(fresh.state_dir.iterdir())
    for w in [w for w in two.workers if w is not fresh]:
        w.stop()
        two.workers.remove(w)

    def complete() -> bool:
        try:
            code, segs = call(fresh.url, "GET", f"/sites/{site}/segments", tok)
        except OSError:
            return False
        return (code == 200 and bool(segs["segments"]) and segs["segments"][0]["member_count"] == 100
                and segs["users"] == 300)  # the catalog and every partition are loaded

    two.wait(complete, 120, "the fresh worker owns every partition and restored its members")
    assert _listing(fresh, site, tok) == before


def test_a_hung_peer_is_a_503_within_the_peer_timeout(two: Cluster) -> None:
    """Every gathered read works against a real peer (its answers pass the shape checks), then
    the peer is frozen (SIGSTOP: it still accepts connections but never answers). Reads on the
    other worker answer 503 WORKER_UNAVAILABLE with Retry-After after PEER_TIMEOUT_S (5 s), not
    a 500 and not a hang.

    Last in this module: the frozen worker misses its heartbeats and the group rebalances, which
    would disturb a later test. The takeover test before it left one worker, so a second one
    joins first."""
    import signal
    import urllib.error
    import urllib.request

    from processor.api.auth import make_token
    from tests.support.harness import TEST_JWT_SECRET

    from .test_api import call

    site = "two-workers"
    tok = make_token(TEST_JWT_SECRET, "ops", site, ["site_admin"])
    if len(two.workers) < 2:
        two.start_worker("second")

    def both_answer() -> bool:
        try:
            return all(call(w.url, "GET", f"/sites/{site}/segments", tok)[1].get("users") == 300
                       for w in two.workers)
        except (OSError, AttributeError):
            return False

    two.wait(both_answer, 120, "two workers answer gathered reads")
    reads = [("GET", f"/sites/{site}/segments", None), ("GET", f"/sites/{site}/users/user-3/segments", None),
             ("GET", f"/sites/{site}/users/user-3/segments/s/explain", None),
             ("GET", f"/sites/{site}/segments/s/members?limit=5", None),
             ("POST", f"/sites/{site}/rules/preview", {"segment_id": "s", "condition": 'city == "oslo"'})]
    for w in two.workers:
        for method, path, body in reads:
            code, answer = call(w.url, method, path, tok, body)
            assert code == 200, (w.name, path, answer)
    asker, frozen = two.workers[0], two.workers[-1]
    assert frozen.proc is not None
    frozen.proc.send_signal(signal.SIGSTOP)
    try:
        for path in (f"/sites/{site}/users/user-3/segments", f"/sites/{site}/segments"):
            req = urllib.request.Request(asker.url + path, headers={"Authorization": f"Bearer {tok}"})
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(req, timeout=30)  # bounds the test only: the worker answers after ~5 s
            body = json.loads(err.value.read())
            assert (err.value.code, body["code"]) == (503, "WORKER_UNAVAILABLE"), body
            assert err.value.headers["Retry-After"].isdigit()
            assert err.value.headers["Cache-Control"] == "no-store"
    finally:
        frozen.proc.send_signal(signal.SIGCONT)
