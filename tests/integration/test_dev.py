"""`make run` as a new user meets it: the README's quick start output, the CLI against the run, and
one Ctrl-C that stops everything.

One `make run` (the repository's Makefile, with this interpreter and no install step) is started
in its own process group in a fresh directory and shared by the tests of this module, which run
in file order; the last one sends the SIGINT (as a terminal's Ctrl-C does to the foreground
process group) and checks that the worker, then the broker, are gone within 10 s, with one line
and no raw librdkafka line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
RAW_LIBRDKAFKA = re.compile(r"^%\d\|\d+\.\d+\|[A-Z_]+\|", re.M)
CHANGE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} ([+-]) (ADDED|REMOVED) +site=(\S+) segment=(\S+) user=(\S+) ")


@dataclass
class DevRun:
    proc: subprocess.Popen[str]
    cwd: Path
    env: dict[str, str]
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)
    startup: list[str] = field(default_factory=list)  # the output before any test acted

    def wait_for(self, pred, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(list(self.out)):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"waiting for {what}; stdout:\n" + "\n".join(self.out) + "\nstderr:\n" + "\n".join(self.err))

    def exports(self) -> dict[str, str]:
        return dict(re.match(r"^\s*export (\w+)=(.*)$", ln).groups()  # type: ignore[union-attr]
                    for ln in self.out if re.match(r"^\s*export \w+=", ln))

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "processor", *args], capture_output=True, text=True,
                              cwd=self.cwd, env={**self.env, **(env or {})}, timeout=120)


def _children(pid: int) -> dict[int, str]:
    """Every live descendant of ``pid`` (pid -> command line), from /proc."""
    parent: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
                parent[int(d)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out: dict[int, str] = {}
    todo = [pid]
    while todo:
        p = todo.pop()
        for child, pp in parent.items():
            if pp == p and child not in out:
                try:
                    out[child] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    continue
                todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def dev_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevRun]:
    cwd = tmp_path_factory.mktemp("make-run")
    env = {k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP_SERVERS", "STATE_DIR", "WEB_PORT", "API_URL", "ADMIN_TOKEN",
                        "ADMIN_JWT_SECRET", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}  # under `make test`, a nested
    # make would print "Entering directory" lines a user never sees
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")  # this checkout's code
    if shutil.which("make"):  # `make run` exactly as a user types it, minus the install step
        cmd = ["make", "-f", str(REPO / "Makefile"), "run", "STAMP=", f"PY={sys.executable}"]
    else:  # pragma: no cover - make is part of the dev image; what make runs is the same
        cmd = [sys.executable, "-m", "processor", "dev"]
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group, as a terminal's job
    run = DevRun(proc, cwd, env)

    def pump(stream, sink: list[str]) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            sink.append(line.rstrip("\n"))

    for stream, sink in ((proc.stdout, run.out), (proc.stderr, run.err)):
        threading.Thread(target=pump, args=(stream, sink), daemon=True).start()
    try:
        def started(out: list[str]) -> bool:
            if not any(ln.startswith("watching for changes") for ln in out):
                return False
            after = out[next(i for i, ln in enumerate(out) if ln.startswith("watching for changes")):]
            return sum(bool(CHANGE.match(ln)) for ln in after) >= 3  # bob, alice, carol
        run.wait_for(started, 180, "the demo's live changes")
        run.startup = list(run.out)
        yield run
    finally:
        if proc.poll() is None:
            kids = _children(proc.pid)
            os.killpg(proc.pid, signal.SIGKILL)
            for pid in kids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait()


# ------------------------------------------------------------------ the README's quick start

def _readme_block() -> list[str]:
    text = README.read_text()
    block = text.split("<!-- quick-start-output -->", 1)[1].split("<!-- /quick-start-output -->", 1)[0]
    lines = block.strip().splitlines()
    assert lines[0] == "```text" and lines[-1] == "```", "the quick start output is a ```text block"
    return lines[1:-1]


def _pattern(line: str) -> re.Pattern[str]:
    """A README line as a pattern: the numbers, the token and the interpreter's path vary per run."""
    rx = re.escape(line).replace(re.escape(".venv/bin/python"), r"(?:\S*/)?python")
    rx = re.sub(r"eyJ[\w\\.-]+", r"eyJ[\\w.-]+", rx)
    rx = re.sub(r"\d+", r"\\d+", rx)
    rx = re.sub(r"cause=[A-Z_]+:", "cause=[A-Z_]+:", rx)  # the seed's backfill: RULE_CREATED or AUTOMATION_ENABLED
    return re.compile("^" + rx + "$")


def _key(line: str) -> tuple[str, ...]:
    m = CHANGE.match(line)
    assert m, line
    return m.groups()


def test_quick_start_output_is_what_make_run_prints(dev_run: DevRun) -> None:
    """The README's block is a real run's output: the same lines in the same order, the same changes
    (change lines as a set: partitions interleave them), only numbers, ids and the token differ."""
    want = _readme_block()
    assert want[0] == "$ make run" and want[-2] == "^C"
    want = want[1:-2]  # the last line (after Ctrl-C) is checked by test_ctrl_c_stops_worker_then_broker
    got = dev_run.startup
    w_fixed = [ln for ln in want if not CHANGE.match(ln)]
    g_fixed = [ln for ln in got if not CHANGE.match(ln)]
    assert len(w_fixed) == len(g_fixed), "\n".join(got)
    for w, g in zip(w_fixed, g_fixed):
        assert _pattern(w).match(g), f"README line\n  {w}\nreal line\n  {g}"
    w_changes = sorted((_key(ln), ln) for ln in want if CHANGE.match(ln))
    g_changes = sorted((_key(ln), ln) for ln in got if CHANGE.match(ln))
    assert [k for k, _ in w_changes] == [k for k, _ in g_changes], "\n".join(got)
    for (_, w), (_, g) in zip(w_changes, g_changes):
        assert _pattern(w).match(g), f"README line\n  {w}\nreal line\n  {g}"


# --------------------------------------------------------------------- the CLI against it

def test_the_printed_exports_make_the_cli_work(dev_run: DevRun) -> None:
    """`make run` prints API_URL, ADMIN_TOKEN (site demo) and KAFKA_BOOTSTRAP_SERVERS; with them the
    admin CLI works without --site (the token's site), and the demo's segments read as they are."""
    exports = dev_run.exports()
    assert set(exports) == {"API_URL", "ADMIN_TOKEN", "KAFKA_BOOTSTRAP_SERVERS"}, dev_run.out
    out = dev_run.cli("segments", "list", "--json", env=exports)
    assert out.returncode == 0, out.stderr
    segs = {s["segment_id"]: s for s in json.loads(out.stdout)["segments"]}
    assert (segs["sales"]["managed"], segs["sales"]["member_count"]) == (True, 1)
    assert (segs["all-staff"]["name"], segs["all-staff"]["managed"]) == ("All staff", False)
    assert json.loads(out.stdout)["users"] == 2  # alice, bob (carol was deleted)
    out = dev_run.cli("explain", "carol", "sales", env=exports)
    assert out.returncode == 0 and "deleted=True" in out.stdout, out.stdout + out.stderr


def test_dev_token_gives_the_cli_a_token_for_the_run(dev_run: DevRun) -> None:
    """`dev token` asks the run's worker (found through .state/dev-run.json, which holds no secret)."""
    run_file = json.loads((dev_run.cwd / ".state" / "dev-run.json").read_text())
    assert set(run_file) == {"api_url", "bootstrap", "pid", "site"}
    out = dev_run.cli("dev", "token", "--export")
    assert out.returncode == 0, out.stderr
    exports = dict(re.match(r"^export (\w+)=(.*)$", ln).groups() for ln in out.stdout.splitlines())  # type: ignore[union-attr]
    assert exports["API_URL"] == run_file["api_url"]
    out = dev_run.cli("members", "sales", "--json", env=exports)
    assert out.returncode == 0, out.stderr
    assert [m["user_id"] for m in json.loads(out.stdout)["members"]] == ["bob"]
    other = dev_run.cli("dev", "token", "--site", "other-site")
    assert other.returncode == 0 and other.stdout.count(".") == 2, other.stderr
    elsewhere = subprocess.run([sys.executable, "-m", "processor", "dev", "token"], capture_output=True, text=True,
                               cwd=dev_run.cwd.parent, env=dev_run.env, timeout=60)
    assert elsewhere.returncode == 3 and "no `make run` is running here" in elsewhere.stderr, elsewhere.stderr


def test_users_upsert_and_delete_reach_the_run(dev_run: DevRun) -> None:
    """A hand-made user event goes through the contract to the worker: dave joins Sales, then leaves."""
    exports = dev_run.exports()
    out = dev_run.cli("users", "upsert", "dave", "department=Sales", "lastaccess=now-P3D", env=exports)
    assert out.returncode == 0, out.stderr
    assert "USER_UPDATED demo/dave" in out.stdout and '"lastaccess": ' in out.stdout
    dev_run.wait_for(lambda o: any(re.search(r"\+ ADDED +site=demo segment=sales user=dave cause=USER_UPDATED:cli-", ln)
                                   for ln in o), 60, "dave added")
    out = dev_run.cli("users", "delete", "dave", env=exports)
    assert out.returncode == 0, out.stderr
    dev_run.wait_for(lambda o: any(re.search(r"- REMOVED site=demo segment=sales user=dave cause=USER_DELETED:", ln)
                                   for ln in o), 60, "dave removed")


# ------------------------------------------------------------------------------ Ctrl-C

def test_ctrl_c_stops_worker_then_broker(dev_run: DevRun) -> None:
    """One SIGINT to the process group: everything exits within 10 s, the worker before the broker,
    with one line, and no raw librdkafka line on stderr."""
    procs = _children(dev_run.proc.pid)
    worker = [p for p, cmd in procs.items() if "processor worker" in cmd]
    broker = [p for p, cmd in procs.items() if "tansu" in cmd]
    assert len(worker) == 1 and len(broker) == 1, procs
    lines_before = len(dev_run.out)
    gone: dict[int, float] = {}
    started = time.monotonic()
    os.killpg(dev_run.proc.pid, signal.SIGINT)
    while time.monotonic() - started < 10 and (len(gone) < len(procs) or dev_run.proc.poll() is None):
        now = time.monotonic() - started  # one time per pass: processes gone in the same pass tie
        for pid in procs:
            if pid not in gone and not _alive(pid):
                gone[pid] = now
        time.sleep(0.005)
    left = {pid: procs[pid] for pid in procs if pid not in gone}
    assert not left and dev_run.proc.poll() is not None, f"still running after 10 s: {left}"
    # the broker is never seen gone before the worker (they may vanish within one 5 ms pass)
    assert gone[worker[0]] <= gone[broker[0]], f"the broker stopped before the worker: {gone}"
    assert dev_run.proc.returncode in (0, -signal.SIGINT), dev_run.proc.returncode
    time.sleep(0.2)  # the pumps read the last lines
    after = [ln for ln in dev_run.out[lines_before:] + dev_run.err if ln.strip()]
    assert len(after) == 1, after
    assert _pattern(_readme_block()[-1]).match(after[0]), after
    assert not RAW_LIBRDKAFKA.search("\n".join(dev_run.err)), dev_run.err[:20]
    assert not (dev_run.cwd / ".state" / "dev-run.json").exists()
