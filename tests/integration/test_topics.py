"""`python -m processor topics create` and the worker's start check against the real embedded
broker: topics are created with their configs, a re-run finds no drift, ``--dry-run`` changes
nothing, a wrong partition count or a wrong config is reported (exit status 1; a worker refuses
to start on the first, and on the second with TOPICS_STRICT=1), and a topic the broker will not
create with its configs is an error, never created without them.

Each test uses its own topic names (an ``APP_ID`` and ``TOPIC_*`` suffix) on one broker of its
own; no worker is started.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner
from confluent_kafka.admin import AdminClient, NewTopic

from processor import topics as topics_mod
from processor.broker import EmbeddedBroker
from processor.cli import main
from processor.config import Settings, Topics
from processor.topics import TopicCreateError, TopicSpec, ensure_topics
from processor.worker import checked_topics
from tests.support.harness import discard_broker

pytestmark = pytest.mark.integration

ENV_NAMES = {"user_events": "TOPIC_USER_EVENTS", "commands": "TOPIC_COMMANDS",
             "membership_changes": "TOPIC_MEMBERSHIP_CHANGES", "command_results": "TOPIC_COMMAND_RESULTS",
             "dead_letters": "TOPIC_DEAD_LETTERS", "catalog": "TOPIC_CATALOG", "control": "TOPIC_CONTROL"}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker(log_path=Path(tmp_path_factory.mktemp("topics")) / "broker.log").start()
    try:
        yield b
    finally:
        discard_broker(b)


@pytest.fixture
def settings(broker: EmbeddedBroker) -> Settings:
    suffix = f".t{uuid.uuid4().hex[:8]}"
    base = Topics()
    topics = Topics(**{n: getattr(base, n) + suffix for n in ENV_NAMES})
    return Settings(bootstrap_servers=broker.bootstrap, app_id=f"topics{suffix[2:]}", topics=topics)


def env_of(s: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOPIC") and k not in
           ("APP_ID", "PARTITIONS", "COMMAND_PARTITIONS", "REPLICATION_FACTOR", "MIN_INSYNC_REPLICAS")}
    env.update({var: getattr(s.topics, n) for n, var in ENV_NAMES.items()})
    env.update(KAFKA_BOOTSTRAP_SERVERS=s.bootstrap_servers, APP_ID=s.app_id, **extra)
    return env


def topics_create(s: Settings, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "processor", "topics", "create", *args],
                          env=env_of(s, **extra), capture_output=True, text=True, timeout=120)


def rows(out: str, topic: str) -> dict[str, str]:
    """``{check: status}`` of one topic in the printed table."""
    found = {}
    for line in out.splitlines():
        cells = line.split()
        if cells and cells[0] == topic:
            found[cells[1]] = line
    return found


def existing(s: Settings) -> dict[str, int]:
    meta = AdminClient({"bootstrap.servers": s.bootstrap_servers}).list_topics(timeout=10)
    return {n: len(t.partitions) for n, t in meta.topics.items()}


def precreate(s: Settings, name: str, partitions: int, config: dict[str, str] | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": s.bootstrap_servers})
    admin.create_topics([NewTopic(name, partitions, 1, config=config or {})])[name].result(10)


def test_create_then_rerun_finds_no_drift(settings: Settings) -> None:
    first = topics_create(settings)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "replication factor 1 (min(3, 1 broker(s)))" in first.stdout
    catalog = rows(first.stdout, settings.topics.catalog)
    assert "created" in catalog["partitions"]
    assert catalog["retention.ms"].split()[2:4] == ["-1", "-1"] and catalog["retention.ms"].endswith("ok")
    assert rows(first.stdout, settings.changelog_topic)["cleanup.policy"].endswith("ok")
    have = existing(settings)
    assert have[settings.topics.catalog] == 1 and have[settings.topics.user_events] == settings.partitions

    again = topics_create(settings)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "DRIFT" not in again.stdout and "MISSING" not in again.stdout and "created" not in again.stdout
    assert "not verifiable" not in again.stdout  # every config set at creation is reported back


def test_dry_run_prints_the_plan_and_creates_nothing(settings: Settings) -> None:
    out = topics_create(settings, "--dry-run")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("plan: replication factor 1")
    line = rows(out.stdout, settings.topics.catalog)["create"]
    assert "partitions 1" in line and "retention.ms=-1" in line and "cleanup.policy=delete" in line
    assert line.endswith("would create")
    from processor.topics import topic_specs

    assert not {sp.name for sp in topic_specs(settings)} & set(existing(settings))


def test_wrong_partition_count_is_drift_and_a_worker_refuses_to_start(
        settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    precreate(settings, settings.topics.user_events, 3)
    out = topics_create(settings)
    assert out.returncode == 1, out.stdout + out.stderr
    line = rows(out.stdout, settings.topics.user_events)["partitions"]
    assert line.split()[2:5] == ["8", "3", "DRIFT:"] and "co-partitioned" in line
    assert "drift" in out.stderr
    with caplog.at_level(logging.CRITICAL, logger="processor"), pytest.raises(SystemExit) as info:
        checked_topics(settings, json_logs=False)
    assert info.value.code == 2
    assert any(r.error_code == "TOPIC_LAYOUT" and settings.topics.user_events in r.getMessage()
               for r in caplog.records)


def test_wrong_config_is_drift_a_worker_warns_or_refuses_when_strict(
        settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    precreate(settings, settings.topics.catalog, 1, {"retention.ms": "604800000"})
    out = topics_create(settings)
    assert out.returncode == 1, out.stdout + out.stderr
    line = rows(out.stdout, settings.topics.catalog)["retention.ms"]
    assert line.split()[2:5] == ["-1", "604800000", "DRIFT:"]
    assert f"--entity-name {settings.topics.catalog} --add-config retention.ms=-1" in line
    # created without cleanup.policy: tansu does not report it, and the table says so
    assert "not verifiable" in rows(out.stdout, settings.topics.catalog)["cleanup.policy"]
    assert "not verifiable on this broker" in out.stdout

    with caplog.at_level(logging.WARNING, logger="processor.topics"):
        assert checked_topics(settings, json_logs=False) == 1  # starts, loudly
    drift = [r for r in caplog.records if getattr(r, "error_code", "") == "TOPIC_CONFIG_DRIFT"]
    assert drift and drift[0].levelno == logging.ERROR and "604800000" in drift[0].getMessage()
    assert any(getattr(r, "error_code", "") == "TOPIC_CONFIG_UNVERIFIABLE" for r in caplog.records)
    with pytest.raises(SystemExit) as info:
        checked_topics(settings.with_(topics_strict=True), json_logs=False)
    assert info.value.code == 2


def test_a_topic_the_broker_refuses_is_an_error_never_created_without_its_configs(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """tansu drops the connection on a CreateTopics request with a config value this large (Kafka
    would answer INVALID_CONFIG or POLICY_VIOLATION): the command fails, naming the topic and
    its configs, and the topic does not exist afterwards."""
    name = settings.topics.catalog
    huge = "9" * 100_000
    monkeypatch.setattr(topics_mod, "topic_specs", lambda s: [TopicSpec(name, 1, (("retention.ms", huge),))])
    with pytest.raises(TopicCreateError) as info:
        ensure_topics(settings, timeout=15)
    assert name in info.value.message and "retention.ms=999" in info.value.message
    assert "Nothing was created without its configs" in info.value.message
    assert name not in existing(settings)

    result = CliRunner().invoke(main, ["topics", "create"], env=env_of(settings))
    assert result.exit_code == 1, result.output
    assert "refused to create" in result.output and name in result.output
    assert name not in existing(settings)
