"""Every tool, and the client libraries the worker uses, over a real TLS terminator (mutual TLS),
and fast, named failures for a wrong CA, a missing client certificate, a wrong key password, a
certificate of another name, a plaintext client and a refused SASL login (issue 19, part 1).

The broker is the embedded tansu behind Debian's stunnel4 (tests/support/tls_broker.py says why):
clients bootstrap through TLS and reconnect through it, since tansu advertises stunnel's address.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from processor.client import ContractProducer, TopicReader
from processor.config import KafkaSecurity
from processor.contract.codec import decode_command
from processor.contract.models import MembershipChange
from processor.kafka_security import aiokafka_config, faust_config
from tests.support.harness import make_command, make_event
from processor.topics import admin_client
from tests.support.tls_broker import STUNNEL, Pki, TlsBroker, make_pki, sasl_broker
from tests.support.tool_env import processor_cli, settings_from_env, topic_env

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(STUNNEL is None, reason="stunnel4 is not installed (apt-get install -y stunnel4; "
                                                         ".ci/run installs it): the TLS tests need a TLS terminator")]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    with TlsBroker(tmp_path_factory.mktemp("tls-broker"), pki) as broker:
        yield broker


def _env(tls: TlsBroker, suffix: str) -> dict[str, str]:
    """Worker/tool settings for this broker with topics of their own."""
    return {**tls.env(), **topic_env(suffix), "APP_ID": f"sa-tls-{suffix}",
            "PARTITIONS": "2", "COMMAND_PARTITIONS": "1", "BROKER_QUIRKS": "tansu", "BROKER_SESSION_TIMEOUT": "6"}


def test_the_tools_run_over_mutual_tls(tls: TlsBroker, tmp_path: Path) -> None:
    """topics create, commands publish, changes tail and rebuild (librdkafka clients and the
    rebuild's aiokafka group member), all with a client certificate whose key is encrypted and
    its password a mounted file."""
    env = _env(tls, uuid.uuid4().hex[:8])
    s = settings_from_env(env)
    assert s.kafka_security.protocol == "SSL" and s.kafka_security.ssl_key_password_file

    created = processor_cli("topics", "create", env=env)
    assert created.returncode == 0, created.stdout + created.stderr
    meta = admin_client(s.bootstrap_servers, s.kafka_security).list_topics(timeout=10)
    assert {s.topics.user_events, s.topics.commands, s.topics.catalog} <= set(meta.topics)

    site = "tls-site"
    f = tmp_path / "cmds.yaml"
    f.write_text(f"site_id: {site}\nactor: {{user_id: ops, roles: [site_admin]}}\ncommands:\n"
                 "  - UpsertSegment: {segment_id: sales, name: Sales}\n")
    published = processor_cli("commands", "publish", str(f), "--no-wait", "--no-token", env=env)
    assert published.returncode == 0, published.stdout + published.stderr
    reader = TopicReader.from_settings(s, s.topics.commands)
    try:
        deadline, got = time.monotonic() + 20, []
        while not got and time.monotonic() < deadline:
            got = [decode_command(v) for _, v in reader.poll_batch() if v]
    finally:
        reader.close()
    assert [(c.site_id, c.payload_type) for c in got] == [(site, "UpsertSegment")]

    prod = ContractProducer.from_settings(s)
    change = MembershipChange("chg-tls-1", site, "sales", "u-tls", "ADDED", "RULE_CREATED", "r1", ("r1",), 1, 2)
    prod.raw(s.topics.membership_changes, b"tls-site:u-tls", prod.wire.encode_membership_change(change))
    for i in range(5):
        prod.user_event(make_event(site, f"u{i}", "USER_CREATED", department="Sales"))
    prod.flush(20)
    prod.close()

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "SCHEMA_REGISTRY_"))}
    tail = subprocess.Popen([sys.executable, "-m", "processor", "changes", "tail", "--site", site],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**clean, **env})
    try:
        line = tail.stdout.readline()  # type: ignore[union-attr]
    finally:
        tail.terminate()
        _, err = tail.communicate(timeout=20)
    assert "u-tls" in line and "ADDED" in line and "sales" in line, (line, err)

    rebuilt = processor_cli("rebuild", "--emit", "diff", "--json", "--jobs", "1", env=env)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    report = json.loads(rebuilt.stdout.strip().splitlines()[-1])
    assert report["events"] == 5 and report["users"] == 5, report


def test_the_worker_clients_libraries_connect_over_mutual_tls(tls: TlsBroker, pki: Pki) -> None:
    """What the runtime's clients are built with: aiokafka with ``aiokafka_config`` and a Faust app
    with ``faust_config`` send and read a record through stunnel, with a client certificate."""
    sec = KafkaSecurity(protocol="SSL", ssl_ca_location=str(pki.ca), ssl_certificate_location=str(pki.client_cert),
                        ssl_key_location=str(pki.client_key), ssl_key_password_file=str(pki.client_key_password_file))
    topic = f"tls-libs-{uuid.uuid4().hex[:8]}"

    async def run() -> list[bytes]:
        import faust
        from aiokafka import AIOKafkaConsumer

        app = faust.App(f"tls-{topic}", broker=f"kafka://{tls.bootstrap}", topic_partitions=1, **faust_config(sec))
        await app.producer.start()
        try:
            await app.producer.send_and_wait(topic, b"k", b"from-faust", None, None, None)
        finally:
            await app.producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=tls.bootstrap, auto_offset_reset="earliest",
                                    **aiokafka_config(sec))
        await consumer.start()
        try:
            batches = await consumer.getmany(timeout_ms=10_000)
            return [m.value for msgs in batches.values() for m in msgs]
        finally:
            await consumer.stop()

    assert asyncio.run(asyncio.wait_for(run(), 60)) == [b"from-faust"]


def _failures(runs: dict[str, tuple[dict[str, str], list[str]]]) -> dict[str, tuple[int, str, float]]:
    """Run the CLI invocations at once; (exit code, stderr, seconds) of each."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "SCHEMA_REGISTRY_"))}
    started = time.monotonic()
    procs = {name: subprocess.Popen([sys.executable, "-m", "processor", *args], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env={**clean, **env})
             for name, (env, args) in runs.items()}
    out = {}
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=60)
        out[name] = (proc.returncode, err, time.monotonic() - started)
    return out


def test_wrong_tls_settings_fail_fast_naming_the_setting(tls: TlsBroker, pki: Pki, tmp_path: Path) -> None:
    env = _env(tls, "bad")
    no_cert = {k: v for k, v in env.items() if not k.startswith(("KAFKA_SSL_CERT", "KAFKA_SSL_KEY"))}
    plain = {k: v for k, v in env.items() if not k.startswith(("KAFKA_SSL", "KAFKA_SECURITY"))}
    f = tmp_path / "c.yaml"
    f.write_text("site_id: s\nactor: {user_id: ops, roles: [site_admin]}\ncommands:\n"
                 "  - UpsertSegment: {segment_id: a, name: A}\n")
    got = _failures({
        "wrong CA": ({**env, "KAFKA_SSL_CA_LOCATION": str(pki.other_ca)}, ["topics", "create"]),
        "wrong CA, publish": ({**env, "KAFKA_SSL_CA_LOCATION": str(pki.other_ca)},
                              ["commands", "publish", str(f), "--no-token"]),
        "no client certificate": (no_cert, ["changes", "tail"]),
        "wrong key password": ({**{k: v for k, v in env.items() if k != "KAFKA_SSL_KEY_PASSWORD_FILE"},
                                "KAFKA_SSL_KEY_PASSWORD": "nope"}, ["rebuild"]),
        "plaintext client": (plain, ["topics", "create"]),
    })
    expect = {"wrong CA": (3, "KAFKA_TLS_FAILED at KAFKA_SSL_CA_LOCATION", 8),
              "wrong CA, publish": (3, "KAFKA_TLS_FAILED at KAFKA_SSL_CA_LOCATION", 8),
              "no client certificate": (3, "KAFKA_TLS_FAILED at KAFKA_SSL_CERTIFICATE_LOCATION", 8),
              "wrong key password": (1, "KAFKA_SECURITY_INVALID at KAFKA_SSL_KEY_PASSWORD", 8),
              # stunnel drops a plaintext request without a word: only the time-out can tell
              "plaintext client": (3, "KAFKA_SECURITY_PROTOCOL=PLAINTEXT", 25)}
    for name, (code, text, seconds) in expect.items():
        rc, err, took = got[name]
        assert rc == code and text in err, (name, rc, err)
        assert "Traceback" not in err, (name, err)
        assert took < seconds, (name, took)  # the preflight's own wait is 10 s; a TLS/SASL error ends it at once


def test_a_certificate_of_another_name_names_endpoint_identification(tmp_path: Path) -> None:
    other = make_pki(tmp_path / "pki", server_names=("broker.invalid",))
    with TlsBroker(tmp_path / "broker", other, require_client_cert=False) as broker:
        env = {**_env(broker, "name"), **broker.env()}
        [(rc, err, _)] = _failures({"name": (env, ["topics", "create"])}).values()
        assert rc == 3 and "KAFKA_TLS_FAILED at KAFKA_SSL_ENDPOINT_IDENTIFICATION" in err, err
        ok = processor_cli("topics", "create", env={**env, "KAFKA_SSL_ENDPOINT_IDENTIFICATION": "none"})
        assert ok.returncode == 0, ok.stdout + ok.stderr


def test_a_refused_sasl_login_fails_fast_naming_the_password(tmp_path: Path) -> None:
    """tansu --authentication speaks SASL SCRAM but cannot be given a user (see tls_broker.py), so
    every login is refused: the tools say which settings to check, within seconds."""
    for broker in sasl_broker(tmp_path):
        env = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
               "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "svc-processor"}
        secret = tmp_path / "sasl-password"
        secret.write_text("wrong\n")
        got = _failures({"scram": ({**env, "KAFKA_SASL_PASSWORD_FILE": str(secret)}, ["topics", "create"]),
                         "plain": ({**env, "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_PASSWORD": "x"},
                                   ["changes", "tail"]),
                         "no password": (env, ["topics", "create"])})
        rc, err, took = got["scram"]
        assert rc == 3 and "KAFKA_AUTH_FAILED at KAFKA_SASL_PASSWORD" in err and "svc-processor" in err, err
        assert took < 8
        rc, err, _ = got["plain"]
        assert rc == 3 and "KAFKA_AUTH_FAILED at KAFKA_SASL_MECHANISM" in err, err
        rc, err, _ = got["no password"]
        assert rc == 1 and "KAFKA_SECURITY_INVALID at KAFKA_SASL_PASSWORD" in err, err


def test_a_worker_processes_commands_over_mutual_tls(tls: TlsBroker, tmp_path: Path) -> None:
    from tests.support.harness import WorkerProcess

    env = _env(tls, uuid.uuid4().hex[:8])
    s = settings_from_env(env)
    assert processor_cli("topics", "create", env=env).returncode == 0
    worker = WorkerProcess(s, "tls-w0", tmp_path, extra_env={k: v for k, v in env.items()
                                                              if k.startswith("KAFKA_SSL") or k.startswith("KAFKA_SEC")})
    worker.start()
    try:
        cmd = make_command("tls-worker-site", "UpsertSegment", segment_id="a", name="A")
        prod = ContractProducer.from_settings(s)
        prod.command(cmd)
        prod.flush(20)
        prod.close()
        reader = TopicReader.from_settings(s, s.topics.command_results)
        try:
            deadline, seen = time.monotonic() + 30, False
            while not seen and time.monotonic() < deadline and worker.alive:
                seen = any(v for _, v in reader.poll_batch())
        finally:
            reader.close()
        assert seen, worker.log_tail()
    finally:
        worker.stop()
