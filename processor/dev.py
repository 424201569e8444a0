"""``make run``: the whole product on one machine, seeded with the product-doc example.

Starts the embedded broker (unless KAFKA_BOOTSTRAP_SERVERS is set), creates
the topics, starts a worker process, seeds site ``demo`` (managed segment
"Sales", rule ``department equals Sales``, a few employees created, moved
and deleted) and prints every membership change as it happens.

The worker also serves the admin console at ``/console/``. For this run only,
``ADMIN_JWT_SECRET`` is a random secret (unless already set) and
``CONSOLE_DEV_LOGIN=1`` enables the console's clearly marked "Dev login"
button; a worker started any other way never has it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from processor.broker import EmbeddedBroker
from processor.client import ContractProducer, TopicReader
from processor.config import Settings
from processor.contract.codec import decode_command_result, decode_membership_change
from processor.contract.models import Actor, Command, MembershipChange, UserEvent
from processor.topics import ensure_topics

SITE = "demo"
ADMIN = Actor("admin", ("site_admin",))
LMS = Actor("lms-sync", ("system",))


def format_change(ch: MembershipChange) -> str:
    sign = "+" if ch.change == "ADDED" else "-"
    ts = time.strftime("%H:%M:%S", time.localtime(ch.emitted_at / 1000)) + f".{ch.emitted_at % 1000:03d}"
    rules = f" rules={','.join(ch.matched_rule_ids)}" if ch.matched_rule_ids else ""
    lag = ch.emitted_at - ch.occurred_at
    return (
        f"{ts} {sign} {ch.change:7} site={ch.site_id} segment={ch.segment_id} user={ch.user_id} "
        f"cause={ch.cause_kind}:{ch.cause_id}{rules} (+{lag} ms after cause)"
    )


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def seed_commands(now: int) -> list[Command]:
    def cmd(i: int, actor: Actor, ptype: str, **payload: object) -> Command:
        return Command(f"demo-cmd-{now}-{i}", SITE, now, actor, ptype, dict(payload))

    return [
        cmd(1, LMS, "UpsertProfileField", shortname="jobrole", name="Job role", datatype="MENU",
            options=["Engineer", "Account executive", "Recruiter"]),
        cmd(2, LMS, "UpsertSegment", segment_id="sales", name="Sales"),
        cmd(3, LMS, "UpsertSegment", segment_id="all-staff", name="All staff (not managed)"),
        cmd(4, ADMIN, "EnableSegmentAutomation", segment_id="sales"),
        cmd(5, ADMIN, "CreateRule", rule_id="sales-dept", segment_id="sales", name="Sales department",
            condition_json='{"field": "department", "op": "equals", "value": "Sales"}', enabled=True),
    ]


def user(now: int, n: int, etype: str, uid: str, **profile: object) -> UserEvent:
    """A demo event stamped with the current time, so printed latencies are real."""
    return UserEvent(f"demo-ev-{now}-{n}", etype, SITE, uid, int(time.time() * 1000), dict(profile))  # type: ignore[arg-type]


def run_dev(once: bool = False, timeout: float = 120.0) -> int:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    broker = None
    if not external:
        port = 9092 if _port_free(9092) else None
        Path(".state").mkdir(exist_ok=True)
        broker = EmbeddedBroker(port, log_path=Path(".state/broker.log")).start()
        bootstrap = broker.bootstrap
        print(f"embedded broker ({EmbeddedBroker.PRODUCT}, in-memory) on {bootstrap}", flush=True)
    else:
        bootstrap = external
        print(f"using Kafka at {bootstrap}", flush=True)
    state_dir = Path(os.environ.get("STATE_DIR", ".state/dev"))
    if broker is not None and state_dir.exists():
        shutil.rmtree(state_dir)  # the embedded broker starts empty; so must the tables
    settings = Settings.from_env().with_(bootstrap_servers=bootstrap, state_dir=state_dir)
    if not os.environ.get("WEB_PORT") and not _port_free(settings.web_port):
        from processor.broker import free_port

        settings = settings.with_(web_port=free_port())
    ensure_topics(settings)
    # The console's dev login mints tokens with the worker's secret: a random one per run unless given.
    jwt_secret = os.environ.get("ADMIN_JWT_SECRET") or secrets.token_urlsafe(32)
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=bootstrap, STATE_DIR=str(state_dir),
               WEB_PORT=str(settings.web_port), ADMIN_JWT_SECRET=jwt_secret, CONSOLE_DEV_LOGIN="1",
               **({"BROKER_QUIRKS": EmbeddedBroker.QUIRKS} if broker is not None else {}),
               BROKER_SESSION_TIMEOUT=os.environ.get("BROKER_SESSION_TIMEOUT", "6"))
    wlog = open(Path(".state") / "worker.log", "ab") if Path(".state").is_dir() else subprocess.DEVNULL
    worker = subprocess.Popen([sys.executable, "-m", "processor", "worker", "-l", "warn"], env=env,
                              stdout=wlog, stderr=subprocess.STDOUT)
    print(f"worker started (pid {worker.pid}, state {state_dir}, web port {settings.web_port}); "
          "log: .state/worker.log", flush=True)
    print(f"admin console: http://127.0.0.1:{settings.web_port}/console/ "
          f"(\"Dev login\" enabled for this run, site {SITE})", flush=True)
    reader = TopicReader(bootstrap, settings.topics.membership_changes)
    members: dict[tuple[str, str], set[str]] = {}
    seen: set[str] = set()

    def drain(wait: float) -> None:
        end = time.monotonic() + wait
        while time.monotonic() < end:
            for _, v in reader.poll_batch(timeout=0.1):
                if v is None:
                    continue
                ch = decode_membership_change(v)
                if ch.change_id in seen:
                    continue
                seen.add(ch.change_id)
                group = members.setdefault((ch.site_id, ch.segment_id), set())
                (group.add if ch.change == "ADDED" else group.discard)(ch.user_id)
                print(format_change(ch), flush=True)

    try:
        now = int(time.time() * 1000)
        prod = ContractProducer(bootstrap, settings.topics)
        print("seeding: 3 existing employees (alice, carol in Sales; bob in Marketing)", flush=True)
        prod.user_event(user(now, 1, "USER_CREATED", "alice", firstname="Alice", department="Sales",
                             profile_field_jobrole="Account executive"))
        prod.user_event(user(now, 2, "USER_CREATED", "bob", firstname="Bob", department="Marketing"))
        prod.user_event(user(now, 3, "USER_CREATED", "carol", firstname="Carol", department=" sales "))
        print("seeding: catalog + managed segment 'sales' + rule department equals Sales", flush=True)
        cmds = seed_commands(now)
        for c in cmds:
            prod.command(c)
        prod.flush()
        results = TopicReader(bootstrap, settings.topics.command_results)
        pending = {c.command_id for c in cmds}
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            if worker.poll() is not None:
                print("worker exited; see .state/worker.log", flush=True)
                return 1
            for _, v in results.poll_batch():
                r = decode_command_result(v) if v else None
                if r and r.command_id in pending:
                    pending.discard(r.command_id)
                    print(f"command {r.command_id}: {r.status} {r.code or ''} {r.message or ''}".rstrip(),
                          flush=True)
            drain(0.05)
        results.close()
        if pending:
            print(f"timed out waiting for command results: {sorted(pending)}", flush=True)
            return 1
        drain(2.0)
        print("live: bob moves to Sales, alice moves to Marketing, carol is deleted", flush=True)
        prod.user_event(user(now, 4, "USER_UPDATED", "bob", department="Sales"))
        prod.user_event(user(now, 5, "USER_UPDATED", "alice", department="Marketing"))
        prod.user_event(user(now, 6, "USER_DELETED", "carol"))
        prod.flush()
        if once:
            while time.monotonic() < deadline:
                drain(0.5)
                if members.get((SITE, "sales")) == {"bob"} and len(seen) >= 3:
                    print(f"ok: segment sales = {sorted(members[(SITE, 'sales')])}", flush=True)
                    return 0
            print(f"unexpected membership: {members}", flush=True)
            return 1
        print("watching for changes (produce more events, or Ctrl-C to stop)", flush=True)
        while worker.poll() is None:
            drain(1.0)
        return worker.returncode or 1
    except KeyboardInterrupt:
        return 0
    finally:
        reader.close()
        prod = None  # noqa: F841 - release the librdkafka producer before the broker goes
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
        if broker is not None:
            broker.stop()
