"""``make run``: the whole product on one machine, seeded with a small demo site.

Starts the embedded broker (unless KAFKA_BOOTSTRAP_SERVERS is set), creates
the topics, starts a worker process, seeds site ``demo`` (managed segment
"Sales", rule ``department equals Sales``, a few employees created, moved
and deleted) and prints every membership change as it happens.

The worker also serves the admin console at ``/console/``. For this run only,
``ADMIN_JWT_SECRET`` is a random secret (unless already set) and
``CONSOLE_DEV_LOGIN=1`` enables the console's clearly marked "Dev login"
button; a worker started any other way never has it. The runner prints the
``export`` lines that point the CLI at this run (``API_URL``, a ``site_admin``
``ADMIN_TOKEN`` for site ``demo``, ``KAFKA_BOOTSTRAP_SERVERS``), and writes
where the run is to ``.state/dev-run.json`` (no secret) so that
``python -m processor dev token`` can fetch a fresh token later from the
worker's loopback-only dev login.

Stopping: the broker and the worker run in their own process groups, so a
Ctrl-C (SIGINT to the terminal's process group, e.g. ``make run``'s) reaches
only this runner, which stops the worker first (SIGTERM; killed after
``WORKER_STOP_S``), then the broker, and prints one line. SIGTERM and SIGHUP
do the same; a second signal while stopping kills both at once.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from processor.broker import EmbeddedBroker
from processor.client import ContractProducer, TopicReader
from processor.config import Settings
from processor.contract.codec import decode_command_result, decode_membership_change
from processor.contract.models import Actor, Command, MembershipChange, UserEvent
from processor.topics import ensure_topics

SITE = "demo"
ADMIN = Actor("admin", ("site_admin",))
LMS = Actor("lms-sync", ("system",))
RUN_FILE = Path(".state") / "dev-run.json"  # where this run is (API URL, broker, pid); no secret
WORKER_STOP_S = 6.0  # a worker that has not stopped by then is killed (its state is thrown away anyway)
TOKEN_TTL_S = 12 * 3600  # the printed ADMIN_TOKEN; `dev token` mints fresh ones


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
        cmd(3, LMS, "UpsertSegment", segment_id="all-staff", name="All staff"),
        cmd(4, ADMIN, "EnableSegmentAutomation", segment_id="sales"),
        cmd(5, ADMIN, "CreateRule", rule_id="sales-dept", segment_id="sales", name="Sales department",
            condition_json='{"field": "department", "op": "equals", "value": "Sales"}', enabled=True),
    ]


def user(now: int, n: int, etype: str, uid: str, **profile: object) -> UserEvent:
    """A demo event stamped with the current time, so printed latencies are real."""
    return UserEvent(f"demo-ev-{now}-{n}", etype, SITE, uid, int(time.time() * 1000), dict(profile))  # type: ignore[arg-type]


class Interrupted(BaseException):
    """A stop signal (SIGINT, SIGTERM or SIGHUP) arrived: stop the worker, then the broker."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Signals:
    """The first stop signal raises :class:`Interrupted`; a second one, while stopping, kills the
    children at once (an impatient second Ctrl-C)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.received: int | None = None
        self.children: list[subprocess.Popen[bytes]] = []
        self._old: dict[int, object] = {}

    def install(self) -> "_Signals":
        for sig in self.SIGNALS:
            self._old[sig] = signal.signal(sig, self._on_signal)
        return self

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
            raise Interrupted(signum)
        for child in self.children:
            if child.poll() is None:
                child.kill()


def _own_group() -> dict[str, object]:
    """Popen arguments that keep a child out of the terminal's process group, so a Ctrl-C reaches
    only the runner, which then stops the children in order."""
    return {"start_new_session": True}


def _python() -> str:
    """How to run this interpreter from here: ``.venv/bin/python`` after ``make``, else ``python``
    (the processor is then installed in whatever ``python`` is)."""
    rel = os.path.relpath(sys.executable)
    return rel if not rel.startswith("..") and os.sep in rel else "python"


def write_run_file(api_url: str, bootstrap: str, path: Path = RUN_FILE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"api_url": api_url, "bootstrap": bootstrap, "pid": os.getpid(), "site": SITE}))


def export_lines(api_url: str, token: str, bootstrap: str) -> list[str]:
    """What points the CLI at this run (``eval "$(python -m processor dev token --export)"``)."""
    return [f"export API_URL={api_url}", f"export ADMIN_TOKEN={token}",
            f"export KAFKA_BOOTSTRAP_SERVERS={bootstrap}"]


def fetch_dev_token(site: str = SITE, path: Path = RUN_FILE) -> tuple[dict[str, object], str]:
    """(the run, a token for ``site``) from the running ``make run`` of this directory: its worker
    mints it (the console's dev login, loopback only); the run file holds no secret."""
    import urllib.error
    import urllib.request
    from urllib.parse import quote

    from processor.errors import ProcessorError

    try:
        run = json.loads(path.read_text())
    except (OSError, ValueError):
        raise ProcessorError("DEV_RUN_NOT_FOUND", f"no `make run` is running here ({path} not found in "
                             f"{Path.cwd()}): start it with `make run`, or run this in its directory", "") from None
    url = f"{run['api_url']}/console/dev-token?site={quote(site, safe='')}"
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return run, str(json.loads(r.read())["token"])
    except urllib.error.HTTPError as e:
        body = e.read().decode(errors="replace")[:200]
        raise ProcessorError("DEV_TOKEN_REFUSED", f"{run['api_url']} answered {e.code}: {body}", "") from None
    except (urllib.error.URLError, OSError) as e:
        raise ProcessorError("DEV_RUN_NOT_FOUND", f"the `make run` of {path} (pid {run.get('pid')}) does not answer "
                             f"at {run['api_url']} ({getattr(e, 'reason', e)}); is it still running?", "") from None


def run_dev(once: bool = False, timeout: float = 120.0) -> int:
    """Run until ``once`` is done, the worker exits, or a stop signal; always stops the worker, then
    the broker."""
    signals = _Signals().install()
    run = _DevRun()
    try:
        return run.main(once, timeout, signals)
    except Interrupted:
        return 0
    finally:
        by = signals.received
        signals.received = -1  # from here on, a signal only hurries the stop
        started = time.monotonic()
        stopped = run.stop()
        signals.restore()
        if by is not None and by > 0:
            name = "Ctrl-C" if by == signal.SIGINT else signal.Signals(by).name
            print(f"{name}: stopped the {', then the '.join(stopped) or 'run'} "
                  f"({time.monotonic() - started:.1f} s)", flush=True)


class _DevRun:
    """What one ``make run`` started, and how to stop it in order."""

    def __init__(self) -> None:
        self.broker: EmbeddedBroker | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.clients: list[ContractProducer | TopicReader] = []

    def stop(self) -> list[str]:
        stopped = []
        for c in self.clients:  # our own Kafka clients first, while the broker still answers
            c.close()
        self.clients.clear()
        if self.worker is not None:
            stopped.append("worker" + _stop_worker(self.worker))
        if self.broker is not None:
            self.broker.stop()
            stopped.append("broker")
        try:
            if json.loads(RUN_FILE.read_text()).get("pid") == os.getpid():
                RUN_FILE.unlink()
        except (OSError, ValueError):
            pass
        return stopped

    def main(self, once: bool, timeout: float, signals: _Signals) -> int:
        return _run(self, once, timeout, signals)


def _stop_worker(worker: subprocess.Popen[bytes]) -> str:
    if worker.poll() is not None:
        return ""
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=WORKER_STOP_S)
        return ""
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
        return f" (killed: it had not stopped after {WORKER_STOP_S:.0f} s)"


def _run(run: _DevRun, once: bool, timeout: float, signals: _Signals) -> int:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    broker = None
    if not external:
        port = 9092 if _port_free(9092) else None
        Path(".state").mkdir(exist_ok=True)
        broker = EmbeddedBroker(port, log_path=Path(".state/broker.log"), popen_extra=_own_group())
        run.broker = broker
        broker.start()
        if broker.proc is not None:
            signals.children.append(broker.proc)
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
                              stdout=wlog, stderr=subprocess.STDOUT, **_own_group())  # type: ignore[call-overload]
    run.worker = worker
    signals.children.append(worker)
    api_url = f"http://127.0.0.1:{settings.web_port}"
    print(f"worker started (pid {worker.pid}, state {state_dir}, web port {settings.web_port}); "
          "log: .state/worker.log", flush=True)
    print(f"admin console: {api_url}/console/ "
          f"(\"Dev login\" enabled for this run, site {SITE})", flush=True)
    from processor.api.auth import make_token

    max_ttl = settings.admin_jwt_max_lifetime_s
    token = make_token(jwt_secret, "dev-cli", SITE, ["site_admin"], ttl_s=max(60, min(TOKEN_TTL_S, max_ttl)))
    write_run_file(api_url, bootstrap)
    cli = f"{_python()} -m processor"
    print(f"CLI against this run, in another terminal of this directory (or: eval \"$({cli} dev token --export)\"):",
          flush=True)
    for line in export_lines(api_url, token, bootstrap):
        print(f"  {line}", flush=True)
    reader = TopicReader(bootstrap, settings.topics.membership_changes)
    run.clients.append(reader)
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

    now = int(time.time() * 1000)
    prod = ContractProducer(bootstrap, settings.topics)
    run.clients.append(prod)
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
    run.clients.append(results)
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
    run.clients.remove(results)
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
    print(f"watching for changes (try: {cli} users upsert dave department=Sales; Ctrl-C to stop)", flush=True)
    while worker.poll() is None:
        drain(1.0)
    print(f"worker exited with code {worker.returncode}; see .state/worker.log", flush=True)
    return worker.returncode or 1
