"""Fault injection checked against the oracle, on the real embedded broker with real workers.

Every test feeds a seeded workload (``tests.support.oracle.workload.generate``, or an explicit
step list folded by the same oracle), injects one kind of fault while it streams in, then
polls until ``tests.support.oracle.check`` finds no difference between the folded output topic
(de-duplicated by ``change_id``, as a consumer folds it) and
``tests.support.oracle.expected_membership`` of the steps, for the test's own sites only.
A test fails with the checker's report (every MISSING / SPURIOUS / CONFLICT / REDUNDANT
difference) and the workers' log tails.

Faults (issue 4): kill -9 at random points with restarts, a worker lost and re-added in a
two-worker group, SIGTERM in the middle of a 10,000-user backfill, 2,000 hostile messages
interleaved with a valid workload, and a 20 s broker outage (SIGSTOP/SIGCONT of tansu).
``-m soak`` runs the larger variants (20,000 events with kills, 10,000 hostile messages).

Clusters are module-scoped with their own broker and app id (``sa-faults-solo``,
``sa-faults-pair``); every workload has its own site ids (``site_prefix``), so tests on a
shared cluster never see each other's users or catalog.

Failures these tests found:

* Fixed: faust-streaming's recovery resumed stream partitions before seeking them to the
  committed offsets, and its gap bookkeeping then committed offsets never processed
  (fix in processor/runtime/faust_compat.py; reproduced by tests/integration/test_faust_fixes.py).
* Fixed: fastavro read a negative enum / union index as a symbol counted from the end
  (the codec now pre-checks those indexes).
* Fixed: a killed worker's changes could reach the output while its state write never reached
  the changelog; the survivor (or the restarted worker) then recomputed the same change_id with
  another emitted_at (CONFLICT), or, after a rule change, never retracted an ADDED it did not
  know about. Then, with changes held back until the state was durable, a state that ran ahead
  of the output was superseded by a message from the other input topic before its own replay
  (REDUNDANT: a REMOVED whose ADDED was never emitted). Fixed by the outbox (changes leave only
  after the changelog holds the state, and a user's next message waits for them) and by
  re-emitting a user's recorded changes when its state is ahead of what the owner replayed
  (processor/outbox.py, ``ahead_of`` in processor/membership/engine.py).
* Fixed: a timer tick pops the timers it fires; when the worker died after the tick's state
  write but before its TIME_ELAPSED changes left the outbox, the replayed tick no longer found
  those users, so their change was never delivered (the kill -9 test saw it ~1 run in 8 as a
  REDUNDANT REMOVED by a later event). Each tick now records the users it changed and its replay
  re-issues their changes (``_refire`` in processor/app.py); the deterministic form is
  ``test_crash_after_timer_fired_before_its_change_left`` (FAULT_EXIT_BEFORE_SEND).
* Fixed: the two-worker takeover saw 5 REDUNDANT REMOVED by a RULE_CREATED backfill once: the
  victim had recorded that backfill's ADDED and died before sending it; the survivor re-ran the
  backfill with a catalog that had moved on, so it computed a REMOVED without re-issuing the
  recorded ADDED. ``apply_backfill`` now re-issues a re-run's recorded changes first.
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Iterator

import fastavro
import pytest

from processor.contract.codec import (
    encode_command,
    encode_membership_change,
    encode_user_event,
    user_event_key,
)
from processor.contract.models import Actor, Command, MembershipChange, UserEvent
from tests.support.oracle import COMMAND, EVENT, Step, check, expected_membership, generate
from tests.support.harness import (
    Cluster,
    WorkerProcess,
    make_command,
    make_event,
    proc_memory_kb,
    produce_steps,
    wait_checker_ok,
)

from .conftest import warm_up

KILLS = 5
IDLE = 20.0  # give up when the output has not moved for this long and still differs from the oracle

ADMIN = Actor("admin-1", ("site_admin",))
SYSTEM = Actor("lms-sync", ("system",))


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def solo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One worker; tests kill, stop and restart it (same STATE_DIR) and pause its broker."""
    c = Cluster(Path(tmp_path_factory.mktemp("faults-solo")), app_id="sa-faults-solo")
    try:
        c.start_worker("f0")
        warm_up(c)
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two workers sharing the 8 user-event partitions."""
    c = Cluster(Path(tmp_path_factory.mktemp("faults-pair")), app_id="sa-faults-pair")
    try:
        c.start_worker("a")
        c.start_worker("b")
        warm_up(c, timeout=120)
        yield c
    finally:
        c.close()


# ------------------------------------------------------------------ helpers


def _replace(c: Cluster, old: WorkerProcess) -> WorkerProcess:
    """Start a worker with the same name as a dead/stopped one: same STATE_DIR, same log file."""
    assert not old.alive
    c.workers.remove(old)
    w = c.start_worker(old.name)
    assert w.state_dir == old.state_dir
    return w


def _ready(w: WorkerProcess) -> bool:
    try:
        with urllib.request.urlopen(f"{w.url}/readyz", timeout=1) as r:
            return r.status == 200
    except Exception:  # noqa: BLE001 - not listening yet, or 503 while recovering
        return False


def _wait_progress(c: Cluster, w: WorkerProcess, timeout: float = 90.0) -> None:
    """Wait until ``w`` is ready and, if it still has work, emitting changes again.

    A restarted worker may already be done (the backlog left after the kill produced no new
    change), so "no new change" after a while is not a failure here: the final oracle check
    decides correctness.
    """
    c.wait(lambda: _ready(w), timeout, f"{w.name} ready")
    before = len(c.poll().changes)
    try:
        c.wait(lambda: len(c.out.changes) > before, 30.0, f"{w.name} emitting changes")
    except AssertionError:
        assert w.alive, f"{w.name} died after restart"


def _results_match_intents(c: Cluster, steps: list[Step], intents: list[str], timeout: float = 60.0) -> int:
    """Every command of the workload got the result the generator meant (duplicates: the original)."""
    cmds = [item for kind, item in steps if kind == COMMAND]
    assert len(cmds) == len(intents)
    want: dict[str, str] = {}
    for cmd, intent in zip(cmds, intents):
        if intent != "DUPLICATE":
            want[cmd.command_id] = intent  # type: ignore[union-attr]
    got = c.wait_results(want, timeout)
    wrong = {cid: (want[cid], r.status, r.code, r.message) for cid, r in got.items()
             if (r.status, r.code or None) != (("ACCEPTED", None) if want[cid] == "ACCEPTED"
                                               else ("REJECTED", want[cid]))}
    assert not wrong, f"command results differ from the generator's intents: {wrong}"
    return len(want)


def _assert_duplicates_identical(report: object) -> None:
    assert not report.conflicts, "\n".join(str(d) for d in report.conflicts)  # type: ignore[attr-defined]


# ------------------------------------------------------------- 1. kill -9


@pytest.mark.parametrize("n_events", [
    6000,
    pytest.param(20000, marks=[pytest.mark.soak, pytest.mark.timeout(1800)], id="soak"),
])
def test_kill_9_at_random_points_equals_oracle(solo: Cluster, n_events: int) -> None:
    """kill -9 of the only worker at 5 seeded random points while a generated workload
    (user events, rule/automation/catalog changes, duplicates) streams in, each followed by a
    restart on the same STATE_DIR: the folded output equals the oracle (no change lost, none
    spurious, no redundant transition), every re-delivered change_id carries identical
    content, and every command got the result the generator meant."""
    seed = 1001
    wl = generate(seed, n_events, sites=2, users_per_site=max(300, n_events // 15),
                  rule_changes=max(40, n_events // 150), site_prefix=f"kill{n_events}")
    expected = expected_membership(wl.steps)
    rng = random.Random(seed)
    n = len(wl.steps)
    lo, hi = n // 10, n * 9 // 10
    width = (hi - lo) // KILLS
    points = [lo + i * width + rng.randrange(width) for i in range(KILLS)]  # one per slice: spread out
    started = time.monotonic()
    pos = 0
    kills = []
    for p in points:
        produce_steps(solo.producer, wl.steps[pos:p])
        solo.producer.flush()
        pos = p
        w = solo.workers[-1]
        _wait_progress(solo, w)
        time.sleep(rng.uniform(0.05, 0.5))
        assert w.proc is not None
        kills.append((p, w.proc.pid, len(solo.poll().changes)))
        w.kill()
        _replace(solo, w)
    produce_steps(solo.producer, wl.steps[pos:])
    solo.producer.flush()
    report = wait_checker_ok(solo, expected, wl.sites, idle=IDLE, timeout=240 if n_events > 10000 else 150,
                             what="folded output == oracle after kill -9s")
    elapsed = time.monotonic() - started
    assert report.ok, str(report)
    _assert_duplicates_identical(report)
    n_results = _results_match_intents(solo, wl.steps, wl.intents)
    print(f"\n[kill-9] seed={seed} steps={n} events={len(wl.events)} commands={len(wl.commands)} "
          f"kills={len(kills)} at steps {[k[0] for k in kills]} results={n_results} "
          f"{report.summary()} in {elapsed:.1f}s")
    assert len(kills) == KILLS


def test_crash_after_timer_fired_before_its_change_left(solo: Cluster) -> None:
    """The deterministic form of a rare kill -9 race: a timer tick's state write (timer popped,
    TIME_ELAPSED change recorded) is durable but the worker dies before the change reaches the
    output. The replayed tick no longer finds the popped timer, so it must still re-issue the
    recorded change (the 'fired' log of processor.state.keys); before that fix the user stayed a
    member forever, and its next event produced a REMOVED for a member the output never had."""
    site = "crash-tick"
    old = solo.workers[-1]
    old.stop()
    solo.workers.remove(old)
    faulty = WorkerProcess(solo.settings, old.name, solo.work_dir,
                           extra_env={"FAULT_EXIT_BEFORE_SEND": f"TIME_ELAPSED@{site}"}).start()
    assert faulty.state_dir == old.state_dir
    solo.workers.append(faulty)
    solo.wait(lambda: _ready(faulty), 90, "faulty worker ready")
    cmds = [make_command(site, "UpsertSegment", segment_id="new", name="New starters"),
            make_command(site, "EnableSegmentAutomation", segment_id="new"),
            make_command(site, "CreateRule", rule_id="r", segment_id="new", name="new starters",
                         condition={"field": "timecreated", "op": "within_last", "value": "P30D"})]
    for c in cmds:
        solo.producer.command(c)
    solo.producer.flush()
    solo.wait_results([c.command_id for c in cmds])
    ends_at = int(time.time()) + 4
    solo.producer.user_event(make_event(site, "newbie", timecreated=ends_at - 30 * 86400))
    solo.producer.flush()
    solo.wait(lambda: [c.change for c in solo.changes_for(site)] == ["ADDED"], 60, "newbie added")
    solo.workers.remove(faulty)  # it is meant to die now: not a failure of the cluster waits
    assert faulty.proc is not None
    assert faulty.proc.wait(timeout=90) == 137, faulty.log_tail()
    assert "FAULT_EXIT_BEFORE_SEND" in faulty.log_tail()
    assert [c.change for c in solo.changes_for(site)] == ["ADDED"]  # the REMOVED never left
    solo.workers.append(faulty)
    _replace(solo, faulty)
    solo.wait(lambda: _ready(solo.workers[-1]), 90, "restarted worker ready")
    solo.wait(lambda: [c.change for c in solo.changes_for(site)][-1:] == ["REMOVED"], 60,
              "the crashed tick's REMOVED re-issued after the restart")
    # a later event of the same user: no redundant transition, no second REMOVED id
    solo.producer.user_event(make_event(site, "newbie", "USER_UPDATED", timecreated=ends_at - 30 * 86400,
                                        department="Sales"))
    solo.producer.user_event(make_event(site, "marker", timecreated=int(time.time())))
    solo.producer.flush()
    solo.wait(lambda: any(c.user_id == "marker" for c in solo.changes_for(site)), 60, "marker added")
    newbie = [c for c in solo.changes_for(site) if c.user_id == "newbie"]
    unique = list(dict.fromkeys(c.change_id for c in newbie))
    assert [next(c for c in newbie if c.change_id == i).change for i in unique] == ["ADDED", "REMOVED"]
    assert next(c for c in newbie if c.change == "REMOVED").cause_kind == "TIME_ELAPSED"
    report = check(solo.poll().changes, {(site, "new"): {"marker"}}, sites=[site])
    assert report.ok, str(report)


# ------------------------------------------------- 2. two workers, lose one


def test_two_workers_lose_one_then_rebalance_back(pair: Cluster) -> None:
    """Two workers; kill -9 one in the middle of a generated workload: the survivor takes
    over its partitions (table recovery from the changelogs) and the folded output equals
    the oracle. Then the killed worker is started again on its STATE_DIR, the group
    rebalances back (it logs backfills for its partitions again) and a second workload for
    a new site also equals the oracle, while the first one still does."""
    wl = generate(2002, 3000, sites=2, users_per_site=300, rule_changes=30, site_prefix="pair")
    expected = expected_membership(wl.steps)
    survivor, victim = pair.workers
    assert survivor.proc is not None
    half = len(wl.steps) // 2
    produce_steps(pair.producer, wl.steps[:half])
    pair.producer.flush()
    _wait_progress(pair, victim)
    time.sleep(0.3)
    victim.kill()
    pair.workers.remove(victim)
    produce_steps(pair.producer, wl.steps[half:])
    pair.producer.flush()
    t0 = time.monotonic()
    report = wait_checker_ok(pair, expected, wl.sites, idle=IDLE, timeout=150, what="survivor alone == oracle")
    takeover = time.monotonic() - t0
    assert report.ok, str(report)
    _assert_duplicates_identical(report)
    assert survivor.alive

    mark = victim.log_path.stat().st_size
    back = pair.start_worker(victim.name)  # same name: same STATE_DIR
    assert back.state_dir == victim.state_dir
    pair.wait(lambda: "Worker ready" in back.log_path.read_bytes()[mark:].decode(errors="replace"), 90,
              f"{back.name} rejoined the group")
    warm_up(pair, timeout=120)
    wl2 = generate(2003, 1200, sites=1, users_per_site=200, rule_changes=12, site_prefix="pair2")
    expected2 = expected_membership(wl2.steps)
    produce_steps(pair.producer, wl2.steps)
    pair.producer.flush()
    report2 = wait_checker_ok(pair, expected2, wl2.sites, idle=IDLE, timeout=120,
                              what="after rebalance back == oracle")
    assert report2.ok, str(report2)
    _assert_duplicates_identical(report2)
    again = check(pair.poll().changes, expected, sites=wl.sites)
    assert again.ok, str(again)
    new_log = back.log_path.read_bytes()[mark:].decode(errors="replace")
    assert "backfill" in new_log, f"{back.name} did no backfill after rejoining:\n{back.log_tail()}"
    assert all(w.alive for w in pair.workers)
    print(f"\n[two-workers] first={report.summary()} takeover+catch-up {takeover:.1f}s; "
          f"second={report2.summary()}")


# ------------------------------------- 3. graceful stop during a backfill

DEPARTMENTS = ("Sales", "Engineering", "Marketing", "Finance", "Human Resources", "Support", "Research",
               "Legal")


def _log_messages(text: str) -> list[str]:
    """The messages of a worker's log: one JSON object per line (LOG_FORMAT=json, the default), or
    plain lines; anything else (a traceback's lines) as it is."""
    out = []
    for line in text.splitlines():
        try:
            out.append(str(json.loads(line)["msg"]) if line.startswith("{") else line)
        except (ValueError, KeyError, TypeError):
            out.append(line)
    return out


@pytest.mark.parametrize("n_users", [10000])
def test_sigterm_during_backfill_resumes_after_restart(solo: Cluster, n_users: int) -> None:
    """10,000 stored users (1,250 per partition); CreateRule fans a backfill order out to every
    partition and the worker gets SIGTERM as soon as the first partition's backfill is done.
    A graceful stop lets the partition backfill in progress finish (the users agent handles one
    control message at a time); the orders not yet processed were not committed, so after the
    restart on the same STATE_DIR they are redelivered and their backfills run: every user
    that should be added is added (== oracle), no change_id is delivered with two contents,
    none is added twice, and the stop really happened mid-backfill (fewer added before it)."""
    site = "faults-backfill"
    rnd = random.Random(3003)
    steps: list[Step] = [
        (COMMAND, Command(f"{site}-c1", site, 1, SYSTEM, "UpsertSegment", {"segment_id": "half", "name": "Half"})),
        (COMMAND, Command(f"{site}-c2", site, 2, ADMIN, "EnableSegmentAutomation", {"segment_id": "half"})),
    ]
    for i in range(n_users):
        steps.append((EVENT, UserEvent(f"{site}-e{i:05d}", "USER_CREATED", site, f"u{i:05d}", 1000 + i, {
            "username": f"user{i}", "department": rnd.choice(DEPARTMENTS),
            "city": rnd.choice(("Paris", "Lyon", "Oslo", "Lima")), "suspended": rnd.random() < 0.03})))
    produce_steps(solo.producer, steps)
    solo.producer.flush()
    solo.wait_results([f"{site}-c1", f"{site}-c2"])
    # one marker per partition behind the users: once all are dead-lettered, every user is stored
    marker = f"{site}-stored".encode()
    s = solo.settings
    for p in range(s.partitions):
        solo.producer.raw(s.topics.user_events, marker, b"\x00marker", partition=p)
    solo.producer.flush()
    solo.wait(lambda: {d.source_partition for d in solo.out.dead_letters if d.key == marker}
              >= set(range(s.partitions)), 120, "all users stored")

    rule = Command(f"{site}-c3", site, 3, ADMIN, "CreateRule", {
        "rule_id": "r-half", "segment_id": "half", "name": "half",
        "condition_json": json.dumps({"field": "department", "op": "in",
                                      "value": ["sales", "engineering", "marketing", "finance"]}),
        "enabled": True})
    steps.append((COMMAND, rule))
    expected = expected_membership(steps)
    want = len(expected[(site, "half")])
    w = solo.workers[-1]
    log0 = w.log_path.stat().st_size
    solo.producer.command(rule)
    solo.producer.flush()

    def by_rule() -> list[MembershipChange]:
        return [c for c in solo.poll().changes if c.cause_id == rule.command_id]

    # Stop as soon as the first partition's backfill is logged as done: the other partitions'
    # orders are then in progress or still queued (watching the output instead is too late,
    # since changes leave through the outbox a flush later).
    deadline = time.monotonic() + 60
    while f"backfill {rule.command_id} " not in w.log_path.read_bytes()[log0:].decode(errors="replace"):
        assert time.monotonic() < deadline and w.alive, "the backfill did not start"
        time.sleep(0.01)
    t0 = time.monotonic()
    w.stop(timeout=60)  # SIGTERM; waits for the process to exit
    stop_s = time.monotonic() - t0
    time.sleep(1.0)
    before = {c.change_id for c in by_rule()}
    mark = w.log_path.stat().st_size
    _replace(solo, w)
    report = wait_checker_ok(solo, expected, [site], idle=IDLE, timeout=120, what="backfill complete after restart")
    assert report.ok, str(report)
    _assert_duplicates_identical(report)
    after = by_rule()
    after_ids = {c.change_id for c in after}
    assert len(after_ids) == want and all(c.change == "ADDED" for c in after)
    assert before <= after_ids
    redo = [msg for msg in _log_messages(w.log_path.read_bytes()[mark:].decode(errors="replace"))
            if "backfill" in msg and rule.command_id in msg]
    print(f"\n[sigterm-backfill] users={n_users} to add={want} added before stop={len(before)} "
          f"stop took {stop_s:.1f}s; after restart: partition backfills run={len(redo)} "
          f"deliveries={len(after)} unique={len(after_ids)} {report.summary()}")
    assert len(before) < want, "the stop did not interrupt the backfill (it had already finished)"
    assert redo, "the restarted worker did not re-run the backfill"


# ------------------------------------------------------ 4. hostile input


def _zz(n: int) -> bytes:
    """Avro long (zig-zag varint)."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _s(x: str | bytes) -> bytes:
    b = x.encode() if isinstance(x, str) else x
    return _zz(len(b)) + b


def _raw_event(event_id: str, type_index: int, site: str, user: str, profile: bytes = b"\x00") -> bytes:
    """A UserEvent encoded by hand, so the enum index can be out of range."""
    return _s(event_id) + _zz(type_index) + _s(site) + _s(user) + _zz(1_700_000_000_000) + profile


def _raw_command(cmd_id: str, site: str, union_index: int, body: bytes) -> bytes:
    return (_s(cmd_id) + _s(site) + _zz(1_700_000_000_000) + _s("admin-1") + _zz(1) + _s("site_admin")
            + b"\x00" + _zz(union_index) + body)


def _wrong_schema(rnd: random.Random, i: int) -> bytes:
    kind = rnd.randrange(4)
    if kind == 0:
        return encode_membership_change(MembershipChange(f"ch-{i}", "s", "g", "u", "ADDED", "USER_CREATED",
                                                         "c", (), 1, 2))
    if kind == 1:
        return encode_command(make_command("some-site", "UpsertSegment", segment_id="x", name="y"))
    if kind == 2:
        return json.dumps({"event_id": f"e{i}", "event_type": "USER_CREATED", "site_id": "s"}).encode()
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, {"type": "record", "name": "X", "fields": [
        {"name": "a", "type": "long"}, {"name": "b", "type": "string"}, {"name": "c", "type": "double"}]},
        {"a": rnd.randrange(1 << 40), "b": "hello" * rnd.randint(0, 20), "c": rnd.random()})
    return buf.getvalue()


ANY_DLQ = frozenset({"DECODE_ERROR", "TRAILING_BYTES", "EMPTY_ID", "KEY_MISMATCH", "LIMIT_EXCEEDED",
                     "INVALID_FIELD", "INVALID_ID"})
# (kind, weight) of malformed messages; "big_string" (900 KB values) is a fixed count
HOSTILE_KINDS = (
    ("random_bytes", 18), ("truncated", 10), ("wrong_schema", 8), ("huge_map", 4), ("long_string", 2),
    ("big_array", 3), ("bad_enum", 8), ("bad_union", 4), ("bad_utf8", 3), ("key_mismatch", 6),
    ("site_mismatch", 3), ("empty_id", 4), ("trailing", 4), ("tombstone", 1), ("empty_field_name", 2),
    ("binary_key", 1),
    ("cmd_deep", 5), ("cmd_key_mismatch", 2), ("cmd_bad_enum", 2), ("cmd_bad_union", 1), ("cmd_random", 2),
    ("cmd_empty_id", 1), ("cmd_truncated", 1),
)


def _deep_condition(rnd: random.Random) -> str:
    leaf = {"field": "department", "op": "equals", "value": "Sales"}
    kind = rnd.randrange(4)
    if kind == 0:  # too deep: nested "not"
        tree: object = leaf
        for _ in range(rnd.randint(17, 200)):
            tree = {"not": tree}
        return json.dumps(tree)
    if kind == 1:  # too deep: alternating all/any
        tree = leaf
        for d in range(rnd.randint(17, 60)):
            tree = {("all", "any")[d % 2]: [tree, leaf]}
        return json.dumps(tree)
    if kind == 2:  # too many nodes
        return json.dumps({"any": [dict(leaf, value=f"v{j}") for j in range(rnd.randint(257, 1500))]})
    return "[" * 30000 + "]" * 30000  # pathological JSON nesting (would blow a recursive parser)


def _hostile(site: str, n: int, n_big: int, seed: int) -> list[tuple[str, bytes | None, bytes | None, object]]:
    """``n`` malformed messages: (topic kind "event"|"command", key, value, expectation).

    Expectation: a frozenset of acceptable dead-letter codes, or ``("REJECTED", code, command_id)``
    for a command that must be answered with a rejection instead of being dead-lettered.
    """
    rnd = random.Random(seed)
    names, weights = zip(*HOSTILE_KINDS)
    kinds = ["big_string"] * n_big + rnd.choices(names, weights, k=n - n_big)
    rnd.shuffle(kinds)
    out: list[tuple[str, bytes | None, bytes | None, object]] = []
    for i, kind in enumerate(kinds):
        uid = f"bad-{i:05d}"
        key = user_event_key(site, uid)
        good = encode_user_event(UserEvent(f"{site}-bad-e{i}", "USER_CREATED", site, uid, 1, {
            "department": "Sales", "city": "Paris"}))
        if kind == "random_bytes":
            out.append(("event", key, rnd.randbytes(rnd.randint(0, 300)), ANY_DLQ))
        elif kind == "truncated":
            out.append(("event", key, good[:rnd.randrange(len(good))], frozenset({"DECODE_ERROR"})))
        elif kind == "wrong_schema":
            out.append(("event", key, _wrong_schema(rnd, i), ANY_DLQ))
        elif kind == "huge_map":
            prof = {f"profile_field_f{j}": f"v{j}" for j in range(rnd.randint(501, 3000))}
            v = encode_user_event(UserEvent(f"{site}-bad-e{i}", "USER_CREATED", site, uid, 1, prof))
            out.append(("event", key, v, frozenset({"LIMIT_EXCEEDED"})))
        elif kind == "big_string":  # ~900 KB: over the 512 KiB message limit, under the broker's 1 MB
            v = encode_user_event(UserEvent(f"{site}-bad-e{i}", "USER_UPDATED", site, uid, 1, {
                "description": "x" * 900_000}))
            out.append(("event", key, v, frozenset({"LIMIT_EXCEEDED"})))
        elif kind == "long_string":  # one value over 64 KiB in a message under 512 KiB
            v = encode_user_event(UserEvent(f"{site}-bad-e{i}", "USER_UPDATED", site, uid, 1, {
                "department": "S" * rnd.randint(65 * 1024, 400 * 1024)}))
            out.append(("event", key, v, frozenset({"LIMIT_EXCEEDED"})))
        elif kind == "big_array":
            v = encode_user_event(UserEvent(f"{site}-bad-e{i}", "USER_UPDATED", site, uid, 1, {
                "interests": [f"i{j}" for j in range(rnd.randint(1001, 5000))]}))
            out.append(("event", key, v, frozenset({"LIMIT_EXCEEDED"})))
        elif kind == "bad_enum":  # event_type symbol index beyond the 4 symbols (UNKNOWN, the default, is 3)
            out.append(("event", key, _raw_event(f"{site}-bad-e{i}", rnd.choice((4, 5, 7, 100, 10**6)),
                                                 site, uid), frozenset({"DECODE_ERROR"})))
        elif kind == "bad_union":  # profile value branch index beyond the 6 branches
            prof = _zz(1) + _s("department") + _zz(rnd.choice((6, 9, 1000))) + _s("Sales") + b"\x00"
            out.append(("event", key, _raw_event(f"{site}-bad-e{i}", 0, site, uid, prof),
                        frozenset({"DECODE_ERROR"})))
        elif kind == "bad_utf8":
            out.append(("event", key, _s(b"\xff\xfe\xfd-id") + _zz(0) + _s(site) + _s(uid) + _zz(1) + b"\x00",
                        frozenset({"DECODE_ERROR"})))
        elif kind == "key_mismatch":  # the value names another user of the same site
            v = encode_user_event(UserEvent(f"{site}-bad-e{i}", "USER_CREATED", site, f"victim-{i}", 1,
                                            {"department": "Sales"}))
            out.append(("event", key, v, frozenset({"KEY_MISMATCH"})))
        elif kind == "site_mismatch":  # key of our site, value of another site (and the reverse)
            if rnd.random() < 0.5:
                v = encode_user_event(UserEvent(f"{site}-bad-e{i}", "USER_CREATED", "other-site", uid, 1,
                                                {"department": "Sales"}))
                out.append(("event", key, v, frozenset({"KEY_MISMATCH"})))
            else:
                out.append(("event", f"other-site:{uid}".encode(), good, frozenset({"KEY_MISMATCH"})))
        elif kind == "empty_id":
            field = rnd.randrange(3)
            ev = UserEvent("" if field == 0 else f"{site}-bad-e{i}", "USER_CREATED",
                           "" if field == 1 else site, " " if field == 2 else uid, 1, {})
            out.append(("event", key, encode_user_event(ev), frozenset({"EMPTY_ID"})))
        elif kind == "trailing":
            out.append(("event", key, good + rnd.randbytes(rnd.randint(1, 50)), frozenset({"TRAILING_BYTES"})))
        elif kind == "tombstone":
            out.append(("event", key, None, frozenset({"DECODE_ERROR"})))
        elif kind == "empty_field_name":
            v = encode_user_event(UserEvent(f"{site}-bad-e{i}", "USER_CREATED", site, uid, 1, {"": "x"}))
            out.append(("event", key, v, frozenset({"INVALID_FIELD"})))
        elif kind == "binary_key":  # not UTF-8: cannot equal site:user
            out.append(("event", b"\xff\xfe" + uid.encode(), good, frozenset({"KEY_MISMATCH"})))
        elif kind == "cmd_deep":
            cid = f"{site}-bad-c{i}"
            cmd = Command(cid, site, 1, ADMIN, "CreateRule", {
                "rule_id": f"deep-{i}", "segment_id": "hostile-target", "name": "deep",
                "condition_json": _deep_condition(rnd), "enabled": True})
            out.append(("command", site.encode(), encode_command(cmd), ("REJECTED", "INVALID_CONDITION", cid)))
        elif kind == "cmd_key_mismatch":
            cid = f"{site}-bad-c{i}"
            cmd = Command(cid, site, 1, ADMIN, "CreateRule", {
                "rule_id": f"km-{i}", "segment_id": "hostile-target", "name": "km",
                "condition_json": json.dumps({"field": "city", "op": "equals", "value": "Paris"}),
                "enabled": True})
            out.append(("command", b"other-site", encode_command(cmd), ("REJECTED", "KEY_MISMATCH", cid)))
        elif kind == "cmd_bad_enum":  # UpsertProfileField.datatype index beyond the 8 symbols (UNKNOWN is 7)
            body = _s("f") + _s("F") + _zz(rnd.choice((8, 9, 99))) + b"\x00"
            out.append(("command", f"{site}#{uid}".encode(), _raw_command(f"{site}-bad-c{i}", site, 0, body),
                        frozenset({"DECODE_ERROR"})))
        elif kind == "cmd_bad_union":  # payload branch index beyond the 9 command types
            out.append(("command", f"{site}#{uid}".encode(),
                        _raw_command(f"{site}-bad-c{i}", site, rnd.choice((9, 12, 64)), _s("x")),
                        frozenset({"DECODE_ERROR"})))
        elif kind == "cmd_random":
            out.append(("command", f"{site}#{uid}".encode(), rnd.randbytes(rnd.randint(0, 300)), ANY_DLQ))
        elif kind == "cmd_empty_id":
            cmd = Command("", site, 1, ADMIN, "DeleteRule", {"rule_id": "x"})
            out.append(("command", f"{site}#{uid}".encode(), encode_command(cmd), frozenset({"EMPTY_ID"})))
        elif kind == "cmd_truncated":
            cmd = Command(f"{site}-bad-c{i}", site, 1, ADMIN, "DeleteRule", {"rule_id": "x"})
            v = encode_command(cmd)
            out.append(("command", f"{site}#{uid}".encode(), v[:rnd.randrange(len(v))],
                        frozenset({"DECODE_ERROR"})))
        else:  # pragma: no cover
            raise AssertionError(kind)
    return out


def test_hand_encoders_match_the_codec() -> None:
    """The hand-written Avro encoders used for out-of-range enums agree with fastavro in range."""
    ev = UserEvent("e1", "USER_DELETED", "s", "u", 1_700_000_000_000, {})
    assert _raw_event("e1", 2, "s", "u") == encode_user_event(ev)
    cmd = Command("c1", "s", 1_700_000_000_000, ADMIN, "UpsertProfileField",
                  {"shortname": "f", "name": "F", "datatype": "NUMBER", "options": []})
    assert _raw_command("c1", "s", 0, _s("f") + _s("F") + _zz(6) + b"\x00") == encode_command(cmd)


@pytest.mark.parametrize("n_bad,n_big", [
    (2000, 5),
    pytest.param(10000, 20, marks=[pytest.mark.soak, pytest.mark.timeout(1800)], id="soak"),
])
def test_hostile_input_is_refused_and_valid_workload_equals_oracle(solo: Cluster, n_bad: int,
                                                                    n_big: int) -> None:
    """Malformed messages (random bytes, truncated Avro, other schemas, > 500 profile entries,
    900 KB and > 64 KiB strings, > 1000-item arrays, out-of-range enum and union indexes,
    invalid UTF-8, key/value user and site mismatches, empty ids, trailing bytes, tombstones,
    non-UTF-8 keys; commands with too-deep / too-large condition trees, key/site mismatch,
    bad enums and unions, garbage) interleaved with a valid generated workload on the same
    partitions: every malformed user event is dead-lettered with its code and the original
    bytes; malformed commands are dead-lettered (undecodable) or REJECTED (deep conditions:
    INVALID_CONDITION, not a dead letter); nothing is a PROCESSING_ERROR; the valid workload
    equals the oracle; the worker is never restarted (same pid, alive throughout) and its
    RSS grows by less than 300 MB."""
    seed = 4004
    wl = generate(seed, 2000, sites=1, users_per_site=300, rule_changes=20, site_prefix=f"hostile{n_bad}")
    site = wl.sites[0]
    setup: list[Step] = [
        (COMMAND, Command(f"{site}-t1", site, 1, SYSTEM, "UpsertSegment",
                          {"segment_id": "hostile-target", "name": "Target of rejected rules"})),
        (COMMAND, Command(f"{site}-t2", site, 2, ADMIN, "EnableSegmentAutomation",
                          {"segment_id": "hostile-target"})),
    ]
    steps = setup + wl.steps
    expected = expected_membership(steps)
    bad = _hostile(site, n_bad, n_big, seed)
    rnd = random.Random(seed + 1)
    # interleave: each malformed message goes after a random valid step (after the setup)
    slots: dict[int, list[int]] = {}
    for j in range(len(bad)):
        slots.setdefault(rnd.randrange(len(setup), len(steps)), []).append(j)

    w = solo.workers[-1]
    assert w.proc is not None and w.alive
    pid = w.proc.pid
    mem0 = proc_memory_kb(pid)
    peak = mem0["VmRSS"]
    t = solo.settings.topics
    started = time.monotonic()
    for idx, step in enumerate(steps):
        produce_steps(solo.producer, [step])
        for j in slots.get(idx, ()):
            topic, key, value, _ = bad[j]
            solo.producer.raw(t.user_events if topic == "event" else t.commands, key, value)
        if idx % 500 == 0:
            solo.producer.flush()
            assert w.alive and w.proc.pid == pid
            peak = max(peak, proc_memory_kb(pid)["VmRSS"])
    solo.producer.flush()

    want_dlq = {key: exp for _, key, _, exp in bad if isinstance(exp, frozenset)}
    want_rej = {exp[2]: exp[1] for _, _, _, exp in bad if isinstance(exp, tuple)}
    assert len(want_dlq) + len(want_rej) == n_bad  # distinct keys / ids: each one is tracked

    def dlq_done() -> bool:
        nonlocal peak
        peak = max(peak, proc_memory_kb(pid)["VmRSS"])
        return {d.key for d in solo.out.dead_letters} >= want_dlq.keys()

    solo.wait(dlq_done, 180, "every malformed message dead-lettered")
    results = solo.wait_results(want_rej, 120)
    report = wait_checker_ok(solo, expected, [site], idle=IDLE, timeout=120, what="valid workload == oracle")
    elapsed = time.monotonic() - started
    mem1 = proc_memory_kb(pid)

    dlq = {d.key: d for d in solo.out.dead_letters if d.key in want_dlq}
    wrong = {k: (sorted(want_dlq[k]), d.error_code, d.error[:120]) for k, d in dlq.items()
             if d.error_code not in want_dlq[k]}  # type: ignore[operator]
    assert not wrong, f"{len(wrong)} dead letters with an unexpected code: {list(wrong.items())[:10]}"
    by_key = {key: value for _, key, value, exp in bad if isinstance(exp, frozenset)}
    assert all(d.value == by_key[k] and d.error for k, d in dlq.items()), "dead letter lost the original bytes"
    assert not [d for d in solo.out.dead_letters if d.error_code == "PROCESSING_ERROR"]
    bad_rej = {cid: (r.status, r.code) for cid, r in results.items() if (r.status, r.code) != ("REJECTED",
                                                                                            want_rej[cid])}
    assert not bad_rej, f"malformed commands not rejected as expected: {bad_rej}"
    assert report.ok, str(report)
    _assert_duplicates_identical(report)
    assert not [c for c in solo.changes_for(site) if c.user_id.startswith(("bad-", "victim-"))]
    assert w.alive and w.proc.pid == pid and len(solo.workers) == 1
    growth_mb = (mem1["VmRSS"] - mem0["VmRSS"]) / 1024
    codes = Counter(d.error_code for d in dlq.values())
    print(f"\n[hostile] malformed={n_bad} (dead-lettered={len(dlq)} {dict(sorted(codes.items()))}, "
          f"rejected={len(results)}) valid steps={len(steps)} {report.summary()} in {elapsed:.1f}s; "
          f"worker pid {pid} RSS {mem0['VmRSS'] / 1024:.0f} MB -> {mem1['VmRSS'] / 1024:.0f} MB "
          f"(growth {growth_mb:+.0f} MB, sampled peak {peak / 1024:.0f} MB, "
          f"VmHWM {mem0['VmHWM'] / 1024:.0f} -> {mem1['VmHWM'] / 1024:.0f} MB)")
    assert growth_mb < 300, f"RSS grew by {growth_mb:.0f} MB"


# ---------------------------------------------------- 5. broker outage


def test_broker_paused_20s_worker_recovers_without_restart(solo: Cluster) -> None:
    """The broker process is frozen (SIGSTOP) for 20 s in the middle of a generated workload,
    while more input is queued by the producer, then resumed (SIGCONT): the worker recovers on
    its own (same pid, never restarted) and the folded output equals the oracle."""
    wl = generate(5005, 4000, sites=2, users_per_site=300, rule_changes=30, site_prefix="outage")
    expected = expected_membership(wl.steps)
    broker = solo.broker
    assert broker is not None and broker.proc is not None
    w = solo.workers[-1]
    assert w.proc is not None
    pid = w.proc.pid
    third = len(wl.steps) // 3
    produce_steps(solo.producer, wl.steps[:third])
    solo.producer.flush()
    _wait_progress(solo, w)
    paused = time.monotonic()
    os.kill(broker.proc.pid, signal.SIGSTOP)
    try:
        produce_steps(solo.producer, wl.steps[third:2 * third])  # queued client-side meanwhile
        time.sleep(max(0.0, 20.0 - (time.monotonic() - paused)))
    finally:
        os.kill(broker.proc.pid, signal.SIGCONT)
    resumed = time.monotonic()
    produce_steps(solo.producer, wl.steps[2 * third:])
    solo.producer.flush(timeout=120)
    report = wait_checker_ok(solo, expected, wl.sites, idle=IDLE, timeout=180, what="after the outage == oracle")
    recovered = time.monotonic() - resumed
    assert report.ok, str(report)
    _assert_duplicates_identical(report)
    assert w.alive and w.proc.pid == pid and len(solo.workers) == 1, "the worker was restarted"
    print(f"\n[outage] paused {resumed - paused:.1f}s; output == oracle {recovered:.1f}s after SIGCONT; "
          f"worker pid {pid} never restarted; {report.summary()}")


def test_negative_enum_and_union_indexes_are_dead_lettered(solo: Cluster) -> None:
    """An out-of-range enum symbol or union branch index is malformed whatever its sign: a user
    event whose event_type index is -1, and a command whose payload branch index is -1, must be
    dead-lettered (DECODE_ERROR) and must change nothing (the user stays a member, the rule stays)."""
    site = "faults-negidx"
    t = solo.settings.topics
    cmds = [make_command(site, "UpsertSegment", roles=("system",), segment_id="all", name="All"),
            make_command(site, "EnableSegmentAutomation", segment_id="all"),
            make_command(site, "CreateRule", rule_id="r-all", segment_id="all", name="all",
                         condition={"field": "username", "op": "is_not_empty"})]
    for c in cmds:
        solo.producer.command(c)
    solo.producer.flush()
    solo.wait_results([c.command_id for c in cmds])
    key = user_event_key(site, "u1")
    ev = make_event(site, "u1", username="alice", department="Sales")
    solo.producer.raw(t.user_events, key, encode_user_event(ev), partition=0)
    solo.producer.flush()
    solo.wait(lambda: any(c.change == "ADDED" for c in solo.changes_for(site)), 60, "u1 added")

    bad_event = _raw_event(f"{site}-neg-e1", -1, site, "u1")  # event_type index -1
    bad_cmd = _raw_command(f"{site}-neg-c1", site, -1, _s("r-all"))  # payload branch -1
    marker = f"{site}-marker".encode()
    solo.producer.raw(t.user_events, key, bad_event, partition=0)
    solo.producer.raw(t.user_events, marker, b"\x00marker", partition=0)  # behind it, same partition
    joins = make_event(site, "zz-marker", username="zoe")  # behind it too: its ADDED leaves after u1's changes
    solo.producer.raw(t.user_events, user_event_key(site, "zz-marker"), encode_user_event(joins), partition=0)
    solo.producer.raw(t.commands, site.encode(), bad_cmd)
    after = make_command(site, "UpsertSegment", roles=("system",), segment_id="after", name="After")
    solo.producer.command(after)  # behind it, same key: the same commands partition
    solo.producer.flush()
    solo.wait(lambda: any(d.key == marker for d in solo.out.dead_letters), 60, "marker behind the bad event")
    solo.wait(lambda: any(c.user_id == "zz-marker" for c in solo.changes_for(site)), 60, "marker user added")
    solo.wait_results([after.command_id])  # the bad command was handled before it
    solo.catch_up()
    ev_dlq = [d.error_code for d in solo.out.dead_letters if d.value == bad_event]
    cmd_dlq = [d.error_code for d in solo.out.dead_letters if d.value == bad_cmd]
    res = solo.out.results.get(f"{site}-neg-c1")
    changes = [(c.change, c.cause_kind, c.cause_id) for c in solo.changes_for(site) if c.user_id == "u1"]
    assert ev_dlq == ["DECODE_ERROR"] and cmd_dlq == ["DECODE_ERROR"] and res is None \
        and len(changes) == 1, (
        f"event dead letters {ev_dlq}, command dead letters {cmd_dlq}, command result "
        f"{res and (res.status, res.code, res.message)}, changes {changes}")
