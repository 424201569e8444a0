"""Every Kafka client is built in processor/runtime/clients.py, from one base configuration.

The source scan fails on a Kafka client constructed anywhere else under processor/ (the
embedded broker's launcher aside), so connection security added to ``base_config`` later
reaches every client."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from processor.runtime import clients

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {"processor/runtime/clients.py", "processor/broker.py"}
# a constructor call of a Kafka client: confluent-kafka's Producer/Consumer/AdminClient (not our
# ContractProducer & co: a word boundary before the name), aiokafka's, or a Faust app
BUILDS = re.compile(r"(?<!\w)(?:Producer|Consumer|AdminClient|AIOKafkaConsumer|AIOKafkaProducer)\(|faust\.App\(")


def kafka_client_builders(root: Path) -> list[str]:
    found = []
    for path in sorted((root / "processor").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel in ALLOWED:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if BUILDS.search(code) and not code.lstrip().startswith("class "):  # a subclass is no client
                found.append(f"{rel}:{n}: {line.strip()}")
    return found


def test_no_kafka_client_is_built_outside_clients_py() -> None:
    assert kafka_client_builders(ROOT) == []


def test_the_scan_finds_a_client_built_elsewhere(tmp_path: Path) -> None:
    """The check itself: a module that builds each kind of client directly is reported."""
    pkg = tmp_path / "processor" / "tools"
    pkg.mkdir(parents=True)
    (pkg / "rogue.py").write_text(
        "from confluent_kafka import Producer, Consumer\n"
        "p = Producer({'bootstrap.servers': 'x'})\n"
        "c = Consumer({})\n"
        "from confluent_kafka.admin import AdminClient\na = AdminClient({})\n"
        "import aiokafka\nk = aiokafka.AIOKafkaConsumer(bootstrap_servers='x')\n"
        "import faust\napp = faust.App('x')\n"
        "ok = ContractProducer('x')  # ours, built on clients.py\n", encoding="utf-8")
    found = kafka_client_builders(tmp_path)
    assert [f.split(":")[1] for f in found] == ["2", "3", "5", "7", "9"]


@pytest.mark.parametrize("config", [
    clients.changelog_config("b:1", "c", 1),
    clients.output_config("b:1", "c", 5),
    clients.dead_letter_config("b:1", "c", 1_000_000, 1000),
    clients.contract_producer_config("b:1", 5),
    clients.reader_config("b:1", "g"),
    clients.rebuild_reader_config("b:1", "g"),
    clients.moodle_sync_consumer_config("b:1", "g", 30),
    clients.moodle_sync_producer_config("b:1"),
], ids=["changelog", "output", "dead-letters", "contract", "reader", "rebuild-reader", "moodle-consumer",
        "moodle-producer"])
def test_every_librdkafka_config_starts_from_the_base(config: dict) -> None:
    base = clients.base_config("b:1")
    assert {k: config[k] for k in base} == base


def test_producers_that_key_by_user_use_the_workers_partitioner() -> None:
    """murmur2 like aiokafka and the Java client: a user's records land on the partition whose
    worker holds its state (librdkafka's default, CRC32, would not)."""
    from processor.config import Settings

    for cfg in (clients.output_config("b:1", "c", 5), clients.dead_letter_config("b:1", "c", 10**6, 1000),
                clients.contract_producer_config("b:1", 5), clients.ingest_config(Settings(), 5.0),
                clients.moodle_sync_producer_config("b:1")):
        assert cfg["partitioner"] == "murmur2_random"


def test_the_rebuilds_changelog_writes_follow_the_broker_profiles_batch_size() -> None:
    """The rebuild writes the users changelog that workers recover by offset: on a broker whose
    high watermark is the last batch's base offset + 1 (BROKER_QUIRKS=tansu) it sends one record per
    batch, or a worker's recovery after a rebuild would stop before the last batch's records; on
    Kafka it batches freely."""
    from processor.config import Settings
    from processor.rebuild import changelog_records_per_batch

    assert changelog_records_per_batch(Settings(broker_quirks=frozenset({"tansu"}))) == 1
    assert changelog_records_per_batch(Settings()) is None
    assert clients.contract_producer_config("b:1", 100, 1)["batch.num.messages"] == 1
    assert "batch.num.messages" not in clients.contract_producer_config("b:1", 100)
