"""Every Kafka client under processor/ takes its connection security from processor/kafka_security.py.

The scan finds each construction of a client (confluent-kafka's ``Producer``, ``Consumer``,
``AdminClient``; aiokafka's ``AIOKafkaConsumer``, ``AIOKafkaProducer``; ``faust.App``) and fails
unless the call's arguments hold a call of one of the module's mappings (``librdkafka_config``,
``aiokafka_config``, ``faust_config``). Every client is built by processor/runtime/clients.py's constructors
(tests/unit/test_clients.py fails on one built anywhere else), so the scan finds them there;
``NOT_YET_WIRED`` (clients not yet taking the settings' security) must stay empty, and the test
fails both on a site missing from it and on a listed site that no longer exists or is now wired.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = {"Producer", "Consumer", "AdminClient", "AIOKafkaConsumer", "AIOKafkaProducer"}
MAPPINGS = {"librdkafka_config", "aiokafka_config", "faust_config"}
# (file, client) of clients not yet taking the settings' TLS/SASL: none
NOT_YET_WIRED: set[tuple[str, str]] = set()


def _name(func: ast.expr) -> str | None:
    if isinstance(func, (ast.BoolOp, ast.IfExp)):  # (factory or AdminClient)(conf)
        parts = func.values if isinstance(func, ast.BoolOp) else [func.body, func.orelse]
        return next((n for n in map(_name, parts) if n), None)
    if isinstance(func, ast.Name) and func.id in CLIENTS:
        return func.id
    if isinstance(func, ast.Attribute):
        if func.attr in CLIENTS:
            return func.attr
        if func.attr == "App" and isinstance(func.value, ast.Name) and func.value.id == "faust":
            return "faust.App"
    return None


def _uses_mapping(call: ast.Call) -> bool:
    for arg in [*call.args, *(k.value for k in call.keywords)]:
        for node in ast.walk(arg):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
                if name in MAPPINGS:
                    return True
    return False


def construction_sites(root: Path) -> list[tuple[str, int, str, bool]]:
    """(file, line, client, secured) of every Kafka client built under ``root``/processor."""
    out = []
    for path in sorted((root / "processor").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and (client := _name(node.func)):
                out.append((rel, node.lineno, client, _uses_mapping(node)))
    return out


def test_every_kafka_client_takes_its_security_from_kafka_security() -> None:
    sites = construction_sites(ROOT)
    unsecured = {(f, c) for f, _, c, ok in sites if not ok}
    assert unsecured - NOT_YET_WIRED == set(), "a Kafka client built without processor/kafka_security.py"
    # the list only shrinks: a wired or moved site is taken off it
    assert NOT_YET_WIRED - unsecured == set(), "NOT_YET_WIRED lists a site that is gone or now wired"
    secured = {(f, c) for f, _, c, ok in sites if ok}
    # every kind of client, built in the one place (the scan does find them there)
    assert {("processor/runtime/clients.py", "Producer"), ("processor/runtime/clients.py", "Consumer"),
            ("processor/runtime/clients.py", "AdminClient"), ("processor/runtime/clients.py", "AIOKafkaConsumer"),
            ("processor/runtime/clients.py", "faust.App")} <= secured


@pytest.mark.parametrize("source, secured", [
    ("from confluent_kafka import Producer\np = Producer({'bootstrap.servers': 'x'})\n", False),
    ("import confluent_kafka\nc = confluent_kafka.Consumer(conf)\n", False),
    ("from aiokafka import AIOKafkaProducer\np = AIOKafkaProducer(bootstrap_servers='x')\n", False),
    ("import faust\napp = faust.App('x', broker='kafka://x')\n", False),
    ("p = Producer({**librdkafka_config(sec), 'bootstrap.servers': 'x'})\n", True),
    ("c = AIOKafkaConsumer(bootstrap_servers='x', **kafka_security.aiokafka_config(sec))\n", True),
    ("app = faust.App('x', **faust_config(sec))\n", True),
    ("a = (factory or AdminClient)({'bootstrap.servers': 'x'})\n", False),
])
def test_the_scan_tells_a_secured_client_from_an_unsecured_one(tmp_path: Path, source: str, secured: bool) -> None:
    (tmp_path / "processor").mkdir()
    (tmp_path / "processor" / "rogue.py").write_text(source)
    [(_, _, _, ok)] = construction_sites(tmp_path)
    assert ok is secured
