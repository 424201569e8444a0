"""The pure part of processor/topics.py: comparing a topic with its spec, from what the broker's
DescribeConfigs answers (confluent-kafka's ``{name: ConfigEntry}``), and the specs themselves.

Broker answers are built the way each broker gives them: Kafka lists *every* topic config with
its effective value (defaults included, ``source`` telling where it comes from); tansu lists only
the configs set at creation, all flagged as defaults, and nothing for a topic created without
any (probed against the embedded broker; docs/deploy.md#topics-and-their-configs).
"""

from __future__ import annotations

import pytest
from confluent_kafka.admin import ConfigEntry, ConfigSource

from processor.config import Settings, Topics
from processor.topics import (
    ALLOWED,
    DRIFT,
    MISSING,
    OK,
    UNVERIFIABLE,
    TopicSpec,
    compare,
    replication_factor,
    topic_specs,
)

CATALOG = TopicSpec("segment-automation.internal.catalog.v1", 1,
                    (("cleanup.policy", "delete"), ("retention.ms", "-1")))
CHANGELOG = TopicSpec("segment-automation-users-changelog", 8, (("cleanup.policy", "compact"),))
OUTPUT = TopicSpec("segment-automation.membership-changes.v1", 8, strict=False)

# A slice of what Kafka 3.x answers for a topic (every config; those set on the topic come from
# DYNAMIC_TOPIC_CONFIG, the rest from the broker's defaults).
KAFKA_DEFAULTS = {
    "cleanup.policy": ("delete", ConfigSource.DEFAULT_CONFIG),
    "retention.ms": ("604800000", ConfigSource.DEFAULT_CONFIG),
    "retention.bytes": ("-1", ConfigSource.DEFAULT_CONFIG),
    "min.insync.replicas": ("1", ConfigSource.DEFAULT_CONFIG),
    "max.message.bytes": ("1048588", ConfigSource.DEFAULT_CONFIG),
    "segment.ms": ("604800000", ConfigSource.DEFAULT_CONFIG),
    "compression.type": ("producer", ConfigSource.DEFAULT_CONFIG),
}


def kafka(**set_on_topic: str) -> dict[str, ConfigEntry]:
    out = {}
    for name, (value, source) in KAFKA_DEFAULTS.items():
        key = name.replace(".", "_")
        if key in set_on_topic:
            value, source = set_on_topic[key], ConfigSource.DYNAMIC_TOPIC_CONFIG
        out[name] = ConfigEntry(name, value, source=source, is_default=source == ConfigSource.DEFAULT_CONFIG)
    return out


def tansu(**set_at_creation: str) -> dict[str, ConfigEntry]:
    return {k.replace("_", "."): ConfigEntry(k.replace("_", "."), v, source=ConfigSource.DEFAULT_CONFIG,
                                             is_default=True)
            for k, v in set_at_creation.items()}


def by_item(checks: list) -> dict[str, tuple[str, str]]:
    return {c.item: (c.status, c.have) for c in checks}


def test_a_right_topic_on_kafka_checks_ok() -> None:
    checks = compare(CATALOG, 1, kafka(retention_ms="-1"), replicas=3, replication=3)
    assert by_item(checks) == {"partitions": (OK, "1"), "replicas": (OK, "3"),
                               "cleanup.policy": (OK, "delete"), "retention.ms": (OK, "-1")}
    assert not any(c.fatal for c in checks)


def test_default_retention_on_the_catalog_is_drift_with_the_fix() -> None:
    """The catalog holds the rules: Kafka's default 7 days would delete them."""
    checks = compare(CATALOG, 1, kafka(), replicas=3, replication=3)
    row = next(c for c in checks if c.item == "retention.ms")
    assert (row.status, row.want, row.have, row.fatal) == (DRIFT, "-1", "604800000", False)
    assert "--add-config retention.ms=-1" in row.note and CATALOG.name in row.note


def test_a_compacted_catalog_is_drift() -> None:
    """Compaction keeps one record per key (site_id): the audit log of commands would be lost."""
    checks = compare(CATALOG, 1, kafka(cleanup_policy="compact", retention_ms="-1"))
    assert by_item(checks)["cleanup.policy"] == (DRIFT, "compact")


@pytest.mark.parametrize("have,status", [("compact", OK), ("compact,delete", DRIFT), ("delete", DRIFT),
                                         ("compact, compact", OK)])
def test_the_changelog_must_be_compact_only(have: str, status: str) -> None:
    assert by_item(compare(CHANGELOG, 8, kafka(cleanup_policy=have)))["cleanup.policy"] == (status, have)


def test_cleanup_policy_is_compared_as_a_set() -> None:
    spec = TopicSpec("t", 1, (("cleanup.policy", "delete,compact"),))
    assert by_item(compare(spec, 1, kafka(cleanup_policy="compact,delete")))["cleanup.policy"][0] == OK


def test_a_broker_that_reports_no_configs_is_not_verifiable_never_drift() -> None:
    """tansu answers DescribeConfigs with nothing for a topic created without configs."""
    checks = compare(CATALOG, 1, {})
    cfg = [c for c in checks if c.item in ("cleanup.policy", "retention.ms")]
    assert [c.status for c in cfg] == [UNVERIFIABLE, UNVERIFIABLE]
    assert all("reports no configs" in c.note for c in cfg)


def test_a_config_the_broker_does_not_list_is_not_verifiable() -> None:
    """tansu lists only the configs set at creation."""
    checks = compare(CATALOG, 1, tansu(retention_ms="-1"))
    assert by_item(checks)["retention.ms"] == (OK, "-1")
    assert by_item(checks)["cleanup.policy"] == (UNVERIFIABLE, "")


def test_tansu_reports_what_was_set_so_a_wrong_value_is_drift() -> None:
    assert by_item(compare(CATALOG, 1, tansu(retention_ms="1000")))["retention.ms"] == (DRIFT, "1000")


def test_describe_failure_is_not_verifiable_with_the_reason() -> None:
    checks = compare(CATALOG, 1, None, config_error="TOPIC_AUTHORIZATION_FAILED: not authorized")
    assert {c.status for c in checks if c.item != "partitions"} == {UNVERIFIABLE}
    assert all("TOPIC_AUTHORIZATION_FAILED" in c.note for c in checks if c.item != "partitions")


def test_partition_drift_is_fatal_where_co_partitioned_allowed_elsewhere_and_missing_is_fatal() -> None:
    row = compare(CHANGELOG, 4, kafka(cleanup_policy="compact"))[0]
    assert (row.status, row.have, row.fatal) == (DRIFT, "4", True) and "co-partitioned" in row.note
    row = compare(CATALOG, 2, kafka(retention_ms="-1"))[0]
    assert (row.status, row.fatal) == (DRIFT, True) and "one partition" in row.note
    row = compare(OUTPUT, 16, None)[0]
    assert (row.status, row.fatal) == (ALLOWED, False)
    row = compare(OUTPUT, None, None)[0]
    assert (row.status, row.fatal) == (MISSING, True)


def test_fewer_replicas_than_the_replication_factor_is_drift() -> None:
    assert by_item(compare(OUTPUT, 8, None, replicas=1, replication=3))["replicas"] == (DRIFT, "1")
    assert by_item(compare(OUTPUT, 8, None, replicas=3, replication=2))["replicas"] == (OK, "3")


@pytest.mark.parametrize("brokers,expected", [(1, 1), (2, 2), (3, 3), (6, 3), (0, 1)])
def test_replication_factor_defaults_to_min_3_brokers(brokers: int, expected: int) -> None:
    assert replication_factor(Settings(), brokers) == expected
    assert replication_factor(Settings(replication_factor=2), 6) == 2


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REPLICATION_FACTOR", "MIN_INSYNC_REPLICAS", "TOPICS_STRICT"):
        monkeypatch.delenv(name, raising=False)
    s = Settings.from_env()
    assert (s.replication_factor, s.min_insync_replicas, s.topics_strict) == (None, None, False)
    monkeypatch.setenv("REPLICATION_FACTOR", "3")
    monkeypatch.setenv("MIN_INSYNC_REPLICAS", "2")
    monkeypatch.setenv("TOPICS_STRICT", "1")
    s = Settings.from_env()
    assert (s.replication_factor, s.min_insync_replicas, s.topics_strict) == (3, 2, True)


def test_specs_keep_rules_and_orders_forever_and_compact_the_changelog() -> None:
    specs = {sp.name: dict(sp.config) for sp in topic_specs(Settings())}
    t = Topics()
    forever = {"cleanup.policy": "delete", "retention.ms": "-1"}
    assert specs[t.catalog] == forever and specs[t.control] == forever
    assert specs["segment-automation-users-changelog"] == {"cleanup.policy": "compact"}
    assert specs[t.user_events] == {}  # the LMS's topic: retention is the platform's choice (docs/deploy.md)


def test_min_insync_replicas_is_set_on_every_topic_when_configured() -> None:
    specs = topic_specs(Settings(min_insync_replicas=2))
    assert all(dict(sp.config).get("min.insync.replicas") == "2" for sp in specs)
    checks = compare(specs[0], 8, kafka())
    assert by_item(checks)["min.insync.replicas"] == (DRIFT, "1")
