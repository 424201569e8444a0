"""No librdkafka client of the processor writes raw "%3|...|FAIL|" lines to stderr.

Every confluent-kafka client is built with ``processor.runtime.clients (its constructors)`` (its log lines go
to the ``processor.kafka`` logger). Each client a tool, the dev runner or the rebuild makes is
pointed at a closed port in a fresh process, made to try to connect, and its stderr is read.
"""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from processor.broker import free_port
from processor.runtime.clients import KAFKA_LOG, cli_kafka_log

REPO = Path(__file__).resolve().parents[2]
RAW = re.compile(r"^%\d\|", re.M)  # librdkafka's own stderr format: %<level>|<time>|<facility>|<name>|

CLIENTS = textwrap.dedent("""
    import sys, time
    from confluent_kafka import KafkaException
    bootstrap = sys.argv[1]
    from processor.client import ContractProducer
    p = ContractProducer(bootstrap)
    p.raw("t", b"k", b"v")
    p.p.flush(1.5)
    from processor.topics import admin_client
    try:
        admin_client(bootstrap).list_topics(timeout=1.5)
    except KafkaException:
        pass
    from processor.rebuild import _consumer
    c = _consumer(bootstrap)
    c.poll(1.5)
    from processor.client import TopicReader
    try:
        TopicReader(bootstrap, "t")
    except Exception:
        pass
    from processor.cli_support import require_kafka
    try:
        require_kafka(bootstrap, timeout=1.5)
    except SystemExit:
        pass
    except Exception as exc:
        print(type(exc).__name__, exc, file=sys.stderr)
    time.sleep(0.5)
    print("done")
""")


def _start(script: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=REPO)


def test_clients_write_no_raw_librdkafka_lines_and_the_cli_shows_each_problem_once() -> None:
    """Plain (a library user): nothing on stderr from librdkafka. With the CLI's handler: a short
    ``kafka:`` line per distinct problem, not one per reconnect attempt. (Both runs at once: each
    waits for the TopicReader's 10 s metadata timeout.)"""
    cli = CLIENTS.replace("import sys, time", "import sys, time\nfrom processor.runtime.clients import cli_kafka_log\n"
                          "cli_kafka_log()")
    plain_p, cli_p = _start(CLIENTS, f"127.0.0.1:{free_port()}"), _start(cli, f"127.0.0.1:{free_port()}")
    plain_out, plain_err = plain_p.communicate(timeout=120)
    cli_out, cli_err = cli_p.communicate(timeout=120)

    assert plain_out.strip().endswith("done"), plain_err[-2000:]
    assert not RAW.search(plain_err), plain_err[:2000]

    assert cli_out.strip().endswith("done"), cli_err[-2000:]
    assert not RAW.search(cli_err), cli_err[:2000]
    lines = [ln for ln in cli_err.splitlines() if ln.startswith("kafka: ")]
    assert lines, cli_err[:2000]
    assert len(lines) == len(set(lines)), lines
    assert any("Connection refused" in ln for ln in lines), lines
    assert all("|FAIL|" not in ln and "after 0ms" not in ln for ln in lines), lines


def test_once_per_problem_strips_librdkafka_prefix_and_counters() -> None:
    buf = io.StringIO()
    old = list(KAFKA_LOG.handlers), KAFKA_LOG.propagate
    try:
        KAFKA_LOG.handlers.clear()
        handler = cli_kafka_log(buf)
        assert cli_kafka_log(buf) is handler  # idempotent
        rec = ("FAIL [rdkafka#consumer-2] [thrd:127.0.0.1:9092/bootstrap]: 127.0.0.1:9092/bootstrap: Connect to "
               "ipv4#127.0.0.1:9092 failed: Connection refused (after {n}ms in state CONNECT)")
        for n in (0, 1, 7):
            KAFKA_LOG.error("%s", rec.format(n=n))
        KAFKA_LOG.error("%s", rec.format(n=0).replace("(after 0ms in state CONNECT)",
                                                       "(after 0ms in state CONNECT, 1 identical error(s) suppressed)"))
        KAFKA_LOG.info("%s", "an info line is not shown")
    finally:
        KAFKA_LOG.handlers[:] = old[0]
        KAFKA_LOG.propagate = old[1]
    assert buf.getvalue() == ("kafka: 127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: "
                              "Connection refused\n")
    assert logging.getLogger("processor.kafka") is KAFKA_LOG
