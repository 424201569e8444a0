"""Test and benchmark harness: real broker, real worker processes, output collectors.

Integration tests and benches share one way of driving the processor. It lives with the tests,
not in the runtime package: the worker image ships neither it nor its dev-only dependencies.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from processor.broker import EmbeddedBroker, free_port
from processor.client import ContractProducer, TopicReader
from processor.config import Settings
from processor.contract.codec import (
    decode_command_result,
    decode_dead_letter,
    decode_membership_change,
    user_event_key,
)
from processor.contract.models import CommandResult, DeadLetter, MembershipChange
from processor.topics import ensure_topics

if TYPE_CHECKING:
    from processor.contract.models import Command, UserEvent
    from tests.support.oracle import Report

TEST_JWT_SECRET = "test-secret-not-for-production-0123456789"


def eventually(pred: Callable[[], bool], timeout: float = 60.0, interval: float = 0.1, what: str = "") -> None:
    """Poll ``pred`` until true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or pred}")


class WorkerProcess:
    """One ``python -m processor worker`` subprocess with its own state dir and web port."""

    def __init__(self, settings: Settings, name: str, log_dir: Path, extra_env: dict[str, str] | None = None):
        self.settings = settings
        self.name = name
        self.web_port = free_port()
        self.state_dir = log_dir / f"state-{name}"
        self.log_path = log_dir / f"{name}.log"
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "WorkerProcess":
        s = self.settings
        t = s.topics
        env = dict(
            os.environ,
            KAFKA_BOOTSTRAP_SERVERS=s.bootstrap_servers,
            STATE_DIR=str(self.state_dir),
            WEB_PORT=str(self.web_port),
            APP_ID=s.app_id,
            PARTITIONS=str(s.partitions),
            COMMAND_PARTITIONS=str(s.command_partitions),
            BROKER_SESSION_TIMEOUT=str(s.session_timeout_s),
            TOPIC_USER_EVENTS=t.user_events,
            TOPIC_COMMANDS=t.commands,
            TOPIC_MEMBERSHIP_CHANGES=t.membership_changes,
            TOPIC_COMMAND_RESULTS=t.command_results,
            TOPIC_DEAD_LETTERS=t.dead_letters,
            TOPIC_CATALOG=t.catalog,
            TOPIC_CONTROL=t.control,
            PYTHONUNBUFFERED="1",
            BROKER_QUIRKS=",".join(sorted(s.broker_quirks)),
            ADMIN_JWT_SECRET=s.admin_jwt_secret or "",
            **self.extra_env,
        )
        out = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "processor", "worker", "-l", "info"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def log_digest(self, n: int = 25) -> str:
        """The last ``n`` lines of the log that tell what happened to the worker: warnings and
        errors (each distinct message once) and its partition assignments (the tail of a busy
        worker's log is often one repeated line)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        keep: list[str] = []
        seen: set[str] = set()
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                rec = {"level": "raw", "msg": line}
            msg = str(rec.get("msg", ""))
            if rec.get("level") in ("warning", "error", "critical", "raw") or msg.startswith(
                    ("Setting newly assigned", "Joined group", "[^Worker]: Starting")):
                shape = re.sub(r"\d+", "#", msg)[:120]
                if shape in seen and not msg.startswith(("Setting newly assigned", "Joined group")):
                    continue
                seen.add(shape)
                if msg.startswith("Setting newly assigned"):  # which partitions of which topic, in short
                    owned: dict[str, list[int]] = {}
                    for topic, part in re.findall(r"topic='([^']+)', partition=(\d+)", msg):
                        owned.setdefault(topic.rsplit(".", 2)[-2] if "." in topic else topic, []).append(int(part))
                    msg = "assigned " + " ".join(f"{t}{sorted(ps)}" for t, ps in sorted(owned.items()))
                keep.append(f"{rec.get('ts', '')[11:23]} {rec.get('level', '')} {msg[:400]}")
        return "\n".join(keep[-n:])


@dataclass
class Outputs:
    """Everything the processor has written, read incrementally from the start."""

    changes: list[MembershipChange] = field(default_factory=list)
    # decisions (ACCEPTED / REJECTED): the last per command, and every delivery in order
    results: dict[str, CommandResult] = field(default_factory=dict)
    result_log: list[CommandResult] = field(default_factory=list)
    # progress records (APPLYING / APPLIED, processor/handlers/progress.py): the latest per command
    # (APPLIED is final: a late APPLYING does not replace it), and every delivery in order
    progress: dict[str, CommandResult] = field(default_factory=dict)
    progress_log: list[CommandResult] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


class Cluster:
    """A broker (embedded or given), topics, N workers and collectors of every output."""

    def __init__(self, work_dir: Path, bootstrap: str | None = None, partitions: int = 8, app_id: str = "sa-test",
                 session_timeout_s: float = 6.0, topic_suffix: str = "") -> None:
        self.work_dir = work_dir
        work_dir.mkdir(parents=True, exist_ok=True)
        self.broker = None if bootstrap else EmbeddedBroker(log_path=work_dir / "broker.log")
        if self.broker:
            self.broker.start()
            bootstrap = self.broker.bootstrap
        from processor.config import Topics

        base = Topics()
        topics = Topics(**{n: getattr(base, n) + topic_suffix for n in base.__dataclass_fields__})
        self.settings = Settings(bootstrap_servers=bootstrap or "", partitions=partitions, app_id=app_id,
                                 topics=topics, session_timeout_s=session_timeout_s, command_partitions=4,
                                 broker_quirks=frozenset({EmbeddedBroker.QUIRKS}) if self.broker else frozenset(),
                                 admin_jwt_secret=TEST_JWT_SECRET)
        ensure_topics(self.settings)
        self.workers: list[WorkerProcess] = []
        self.producer = ContractProducer(self.settings.bootstrap_servers, topics)
        self.out = Outputs()
        self._readers = {
            "changes": TopicReader(self.settings.bootstrap_servers, topics.membership_changes),
            "results": TopicReader(self.settings.bootstrap_servers, topics.command_results),
            "dlq": TopicReader(self.settings.bootstrap_servers, topics.dead_letters),
        }

    def start_worker(self, name: str | None = None) -> WorkerProcess:
        w = WorkerProcess(self.settings, name or f"worker{len(self.workers)}", self.work_dir).start()
        self.workers.append(w)
        return w

    def poll(self) -> Outputs:
        for _, v in self._readers["changes"].poll_batch(timeout=0.05, max_messages=10000):
            if v is not None:
                self.out.changes.append(decode_membership_change(v))
        for _, v in self._readers["results"].poll_batch(timeout=0.05, max_messages=10000):
            if v is not None:
                r = decode_command_result(v)
                if r.status in ("ACCEPTED", "REJECTED"):
                    self.out.results[r.command_id] = r
                    self.out.result_log.append(r)
                else:
                    self.out.progress_log.append(r)
                    last = self.out.progress.get(r.command_id)
                    if last is None or last.status != "APPLIED":
                        self.out.progress[r.command_id] = r
        for _, v in self._readers["dlq"].poll_batch(timeout=0.05, max_messages=10000):
            if v is not None:
                self.out.dead_letters.append(decode_dead_letter(v))
        return self.out

    def wait_results(self, ids: Iterable[str], timeout: float = 60.0) -> dict[str, CommandResult]:
        want = set(ids)
        self._wait(lambda: want <= set(self.poll().results), timeout, f"results for {sorted(want)}")
        return {i: self.out.results[i] for i in want}

    def wait_applied(self, ids: Iterable[str], timeout: float = 60.0) -> dict[str, CommandResult]:
        """The APPLIED result of every command in ``ids`` (every partition finished its backfill)."""
        want = set(ids)
        self._wait(lambda: all((r := self.poll().progress.get(i)) is not None and r.status == "APPLIED"
                               for i in want), timeout, f"APPLIED for {sorted(want)}")
        return {i: self.out.progress[i] for i in want}

    def changes_for(self, site: str) -> list[MembershipChange]:
        self.poll()
        return [c for c in self.out.changes if c.site_id == site]

    def _wait(self, pred: Callable[[], bool], timeout: float, what: str) -> None:
        def check() -> bool:
            dead = [w for w in self.workers if w.proc is not None and not w.alive]
            if dead:
                raise AssertionError(f"worker {dead[0].name} died:\n{dead[0].log_tail()}")
            return pred()

        eventually(check, timeout, 0.05, what)

    def wait(self, pred: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
        self._wait(lambda: (self.poll() is not None) and pred(), timeout, what)

    def catch_up(self, timeout: float = 30.0) -> Outputs:
        """Read every output topic up to its end as of now.

        The readers poll partition by partition, so having seen one record (a marker's change)
        does not mean every record written before it was read. A negative test waits for its
        marker's effect, then calls this before asserting that nothing else arrived."""
        ends = []
        for reader in self._readers.values():
            consumer = getattr(reader, "c", None)  # a test may swap a reader for a stand-in
            if consumer is None:
                continue
            for tp in consumer.assignment():
                ends.append((consumer, tp, consumer.get_watermark_offsets(tp, timeout=10)[1]))

        def read() -> bool:
            return all(end <= 0 or consumer.position([tp])[0].offset >= end for consumer, tp, end in ends)

        self._wait(lambda: (self.poll() is not None) and read(), timeout, "outputs read to their end")
        return self.out

    def user_partition(self, site: str, user: str) -> int:
        """The user-events partition of ``user``'s records (the same for every event of the user)."""
        return partition_of(user_event_key(site, user), self.settings.partitions)

    def marker_users(self, site: str, partitions: Iterable[int] | None = None,
                     prefix: str = "zz-marker-") -> dict[int, str]:
        """For each of ``partitions`` (default: all), a user id of ``site`` whose events land on it.

        Events are processed in order per partition: a marker user's event sent after the events
        under test is processed after them, so its effect (say, an ADDED) proves they were."""
        want = set(range(self.settings.partitions) if partitions is None else partitions)
        out: dict[int, str] = {}
        n = 0
        while want - set(out):
            user = f"{prefix}{n}"
            out.setdefault(self.user_partition(site, user), user)
            n += 1
        return {p: out[p] for p in sorted(want)}

    def stored_users(self, site: str) -> int:
        """How many users of ``site`` the workers hold (``GET /sites/{site}/segments``, gathered
        from every worker): what to wait for before a rule change is to find them stored."""
        import json as _json
        import urllib.request
        from urllib.parse import quote

        from processor.api.auth import make_token

        worker = next(w for w in self.workers if w.alive)
        token = make_token(TEST_JWT_SECRET, "harness", site, ["site_admin"])
        req = urllib.request.Request(f"{worker.url}/sites/{quote(site, safe='')}/segments",
                                     headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return int(_json.loads(r.read())["users"])
        except OSError:  # not assigned yet, a peer unavailable (503): none counted yet
            return -1

    def close(self) -> None:
        """Stop every worker at once (stopped one by one, each waits out the rebalance the one
        before it started: ~10 s for two), then the broker: it is in-memory and nothing is read
        from it any more, so it is killed rather than left to its ~5 s graceful shutdown."""
        for w in self.workers:
            if w.alive:
                assert w.proc is not None
                w.proc.send_signal(signal.SIGTERM)
        for w in self.workers:
            w.stop()
        for r in self._readers.values():
            r.close()
        if self.broker:
            discard_broker(self.broker)


def discard_broker(broker: EmbeddedBroker) -> None:
    """End an in-memory test broker at once: nothing is read from it any more, and its graceful
    shutdown (``EmbeddedBroker.stop``, SIGTERM) takes ~5 s."""
    if broker.proc is not None and broker.proc.poll() is None:
        broker.proc.kill()
    broker.stop()


def partition_of(key: bytes, partitions: int) -> int:
    """The partition of a keyed record: the workers' partitioner (aiokafka's default, Java's
    murmur2), which the producers here use too (librdkafka's ``murmur2_random``)."""
    from aiokafka.partitioner import murmur2

    return (murmur2(key) & 0x7FFFFFFF) % partitions


def fold_membership(changes: Iterable[MembershipChange]) -> dict[tuple[str, str], set[str]]:
    """What a downstream consumer derives: de-duplicate by change_id, apply in order."""
    seen: set[str] = set()
    members: dict[tuple[str, str], set[str]] = {}
    for c in changes:
        if c.change_id in seen:
            continue
        seen.add(c.change_id)
        group = members.setdefault((c.site_id, c.segment_id), set())
        if c.change == "ADDED":
            group.add(c.user_id)
        else:
            group.discard(c.user_id)
    return members


def produce_steps(producer: ContractProducer, steps: Iterable[tuple[str, object]]) -> int:
    """Publish workload steps (``tests.support.oracle``: ``("command", Command)`` / ``("event", UserEvent)``)
    in order, keyed as the contract says; returns how many were produced (not flushed)."""
    n = 0
    for kind, item in steps:
        if kind == "command":
            producer.command(item)  # type: ignore[arg-type]
        elif kind == "event":
            producer.user_event(item)  # type: ignore[arg-type]
        else:
            raise ValueError(f"unknown step kind {kind!r}")
        n += 1
    return n


def wait_checker_ok(cluster: Cluster, expected: dict[tuple[str, str], set[str]], sites: Iterable[str],
                    timeout: float = 120.0, settle: float = 1.0, idle: float | None = None,
                    what: str = "") -> "Report":
    """Poll the output until :func:`tests.support.oracle.check` reports no difference for ``sites``.

    Once it does, wait ``settle`` seconds and check again (late re-deliveries must not break it).
    With ``idle``, give up early when no new membership change (of any site) arrived for that
    many seconds while differences remain: the output has settled on a wrong answer. A CONFLICT
    or REDUNDANT difference fails at once: it is in the output for good.
    On failure, raise with the last report and each live worker's log tail.
    """
    from tests.support.oracle import check

    only = list(sites)
    last: list["Report | None"] = [None]
    seen = {"n": -1, "at": time.monotonic()}

    def ok() -> bool:
        n = len(cluster.out.changes)
        if n != seen["n"]:
            seen.update(n=n, at=time.monotonic())
        last[0] = check(cluster.out.changes, expected, sites=only)
        if last[0].ok:
            return True
        if last[0].conflicts or last[0].redundant:
            # Already delivered: no later record can undo a re-delivery with other content or a
            # redundant transition, so waiting (or the idle window) cannot change the verdict.
            raise AssertionError(f"{len(last[0].conflicts)} CONFLICT / {len(last[0].redundant)} REDUNDANT "
                                 f"difference(s) in the output ({what or only}): permanent, not a stall")
        if idle is not None and time.monotonic() - seen["at"] > idle:
            raise AssertionError(f"output idle for {idle}s with differences left ({what or only})")
        return False

    try:
        cluster.wait(ok, timeout, what or f"checker ok for {only}")
        if settle:
            time.sleep(settle)
            cluster.poll()
            ok()
    except AssertionError as err:
        tails = "\n".join(f"--- {w.name} ({w.log_path}): warnings, errors, assignments ---\n{w.log_digest()}"
                          f"\n--- {w.name}: last lines ---\n{w.log_tail(12)}" for w in cluster.workers)
        raise AssertionError(f"{err}\n{last[0]}\n{tails}") from None
    report = last[0]
    assert report is not None
    return report


def proc_memory_kb(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak RSS) of a process, in KiB, from /proc/<pid>/status (Linux)."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(rest.split()[0])
    return out


_seq = [0]


def make_command(site: str, ptype: str, roles: tuple[str, ...] = ("site_admin",), command_id: str | None = None,
                 **payload: object) -> "Command":
    """A command with a fresh id; rule payloads may pass ``condition=`` as a dict."""
    import json as _json
    import uuid

    from processor.contract.models import Actor, Command
    from processor.publish import build_payload

    if "condition" in payload and not isinstance(payload["condition"], str):
        payload["condition_json"] = _json.dumps(payload.pop("condition"))
    body = build_payload(ptype, dict(payload), "$")
    return Command(command_id or f"cmd-{uuid.uuid4().hex[:12]}", site, int(time.time() * 1000),
                   Actor("tester", roles), ptype, body)


def make_event(site: str, user: str, etype: str = "USER_CREATED", event_id: str | None = None,
               **profile: object) -> "UserEvent":
    import uuid

    from processor.contract.models import UserEvent

    return UserEvent(event_id or f"ev-{uuid.uuid4().hex[:12]}", etype, site, user, int(time.time() * 1000),
                     dict(profile))  # type: ignore[arg-type]
