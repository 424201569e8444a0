"""Create the processor's topics with explicit partition counts and configs, and check the ones
that exist (``python -m processor topics create``, and every worker at start).

Co-partitioning is a correctness requirement: user events, the internal control topic and the
user table's changelog must have the same number of partitions, or a backfill would scan the
wrong users; the catalog has one partition (it is read in order). A wrong count there is fatal.
The configs that keep data are checked too: the catalog and control topics hold rules and
backfill orders forever (``cleanup.policy=delete``, ``retention.ms=-1``), the changelog is
compacted, and ``min.insync.replicas`` where ``MIN_INSYNC_REPLICAS`` sets it.

Nothing is silently accepted: a topic that cannot be created with its configs is an error (never
retried without them), a difference is a *drift* row in the report, and a config the broker does
not report (the embedded development broker reports only configs set at creation) is printed as "not
verifiable" rather than guessed. What a drift does is the caller's choice: ``topics create``
exits non-zero; a worker refuses to start on a fatal one and logs the others loudly, or refuses
them too with ``TOPICS_STRICT=1`` (docs/deploy.md#topics-and-their-configs).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from processor.config import KafkaSecurity, Settings
from processor.errors import ProcessorError

log = logging.getLogger(__name__)
TOPIC_ALREADY_EXISTS = 36
UNKNOWN_TOPIC_OR_PART = 3
MAX_DEFAULT_REPLICATION = 3

# the verdicts of a check
OK, CREATED, ALLOWED, UNVERIFIABLE = "ok", "created", "allowed", "not verifiable"
DRIFT, MISSING = "DRIFT", "MISSING"


class TopicLayoutError(ProcessorError):
    """A topic is missing or has the wrong partition count (or, with ``TOPICS_STRICT=1``, a
    config drifted): the worker must not start on it."""

    def __init__(self, message: str, code: str = "TOPIC_LAYOUT") -> None:
        super().__init__(code, message, "$topics")


class TopicCreateError(ProcessorError):
    """The broker refused to create a topic as specified (e.g. a config it rejects)."""

    def __init__(self, message: str) -> None:
        super().__init__("TOPIC_CREATE_FAILED", message, "$topics")


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    config: tuple[tuple[str, str], ...] = ()
    strict: bool = True  # partition count must match exactly


@dataclass(frozen=True, slots=True)
class Check:
    """One row of the report: what ``item`` (``partitions``, ``replicas`` or a config name) of
    ``topic`` should be, what the broker says it is, and the verdict."""

    topic: str
    item: str
    want: str
    have: str
    status: str  # OK, CREATED, DRIFT, ALLOWED, UNVERIFIABLE, MISSING
    fatal: bool = False  # a worker must not start (co-partitioning, a missing topic)
    note: str = ""


@dataclass(slots=True)
class TopicsReport:
    replication_factor: int
    brokers: int
    created: list[str] = field(default_factory=list)
    to_create: list[TopicSpec] = field(default_factory=list)  # --dry-run: what would be created
    checks: list[Check] = field(default_factory=list)
    dry_run: bool = False

    @property
    def drift(self) -> list[Check]:
        return [c for c in self.checks if c.status in (DRIFT, MISSING)]

    @property
    def fatal(self) -> list[Check]:
        return [c for c in self.checks if c.fatal]

    @property
    def unverifiable(self) -> list[Check]:
        return [c for c in self.checks if c.status == UNVERIFIABLE]

    def table(self) -> str:
        """The report as an aligned text table, one row per check."""
        rows = [("TOPIC", "CHECK", "WANT", "HAVE", "STATUS")]
        for sp in self.to_create:
            rows.append((sp.name, "create", _describe(sp, self.replication_factor), "-", "would create"))
        for c in self.checks:
            status = c.status + (f": {c.note}" if c.note else "")
            rows.append((c.topic, c.item, c.want, c.have or "-", status))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r[:4], widths)) + "  " + r[4]
                         for r in rows)


def _describe(sp: TopicSpec, rf: int) -> str:
    configs = ", ".join(f"{k}={v}" for k, v in sp.config)
    return f"partitions {sp.partitions}, replication {rf}" + (f", {configs}" if configs else "")


def topic_specs(s: Settings) -> list[TopicSpec]:
    t, p = s.topics, s.partitions
    isr = (("min.insync.replicas", str(s.min_insync_replicas)),) if s.min_insync_replicas else ()
    forever = (("cleanup.policy", "delete"), ("retention.ms", "-1"), *isr)
    return [
        TopicSpec(t.user_events, p, isr),
        TopicSpec(t.control, p, forever),
        TopicSpec(s.changelog_topic, p, (("cleanup.policy", "compact"), *isr)),
        TopicSpec(t.membership_changes, p, isr, strict=False),
        TopicSpec(t.dead_letters, p, isr, strict=False),
        TopicSpec(t.commands, s.command_partitions, isr, strict=False),
        TopicSpec(t.command_results, s.command_partitions, isr, strict=False),
        TopicSpec(t.catalog, 1, forever),
    ]


def admin_client(bootstrap: str, security: KafkaSecurity | None = None) -> AdminClient:
    from processor.runtime import clients

    return clients.new_admin(bootstrap, security)


def replication_factor(s: Settings, brokers: int) -> int:
    """``REPLICATION_FACTOR`` when set, else min(3, the brokers the cluster reports)."""
    return s.replication_factor or max(1, min(MAX_DEFAULT_REPLICATION, brokers))


# ------------------------------------------------------------------ the comparison (pure)


def _same(item: str, want: str, have: str) -> bool:
    if item == "cleanup.policy":  # a list: "compact,delete" == "delete,compact"
        return {v.strip() for v in want.split(",")} == {v.strip() for v in have.split(",")}
    return want.strip() == have.strip()


def compare(spec: TopicSpec, partitions: int | None, configs: Mapping[str, Any] | None,
            replicas: int | None = None, replication: int | None = None,
            config_error: str = "") -> list[Check]:
    """The checks of one existing topic against its spec.

    ``configs`` is what the broker's DescribeConfigs answered for the topic (confluent-kafka's
    ``{name: ConfigEntry}``: Kafka lists every config with its effective value; the embedded broker only those
    set at creation, and nothing for a topic created without any), or None when it could not be
    asked (``config_error`` says why). ``replicas``: the fewest replicas of any of its partitions.
    """
    name = spec.name
    if partitions is None:
        return [Check(name, "partitions", str(spec.partitions), "", MISSING, fatal=True,
                      note="the topic does not exist")]
    out = []
    if partitions == spec.partitions:
        out.append(Check(name, "partitions", str(spec.partitions), str(partitions), OK))
    elif spec.strict:
        why = ("the catalog is read in order from one partition: recreate it with one"
               if spec.partitions == 1 else
               "user events, control and the changelog must be co-partitioned: set PARTITIONS to match "
               "or recreate the topic")
        out.append(Check(name, "partitions", str(spec.partitions), str(partitions), DRIFT, fatal=True,
                         note=why))
    else:
        out.append(Check(name, "partitions", str(spec.partitions), str(partitions), ALLOWED,
                         note="any count works for this topic"))
    if replicas is not None and replication is not None:
        if replicas >= replication:
            out.append(Check(name, "replicas", f">= {replication}", str(replicas), OK))
        else:
            out.append(Check(name, "replicas", f">= {replication}", str(replicas), DRIFT,
                             note="fewer replicas than the replication factor: reassign partitions "
                                  "to add some"))
    for item, want in spec.config:
        if configs is None:
            out.append(Check(name, item, want, "", UNVERIFIABLE,
                             note=f"DescribeConfigs failed: {config_error}"))
        elif not configs:
            out.append(Check(name, item, want, "", UNVERIFIABLE,
                             note="the broker reports no configs for this topic (the embedded development broker does so for a topic "
                                  "created without any)"))
        elif item not in configs or configs[item].value is None:
            out.append(Check(name, item, want, "", UNVERIFIABLE,
                             note="the broker does not report this config"))
        else:
            have = str(configs[item].value)
            if _same(item, want, have):
                out.append(Check(name, item, want, have, OK))
            else:
                out.append(Check(name, item, want, have, DRIFT,
                                 note="set it: kafka-configs.sh --alter --entity-type topics "
                                      f"--entity-name {name} --add-config {item}={want}"))
    return out


# --------------------------------------------------------------------------- the edge


def ensure_topics(s: Settings, timeout: float = 30.0, *, dry_run: bool = False,
                  specs: list[TopicSpec] | None = None, enforce: bool = True) -> TopicsReport:
    """Create missing topics (never without their configs), then check every topic.

    ``dry_run``: change nothing; the report lists what would be created. ``enforce`` (workers,
    tests, benches): raise :class:`TopicLayoutError` on a fatal drift, and on a config drift
    with ``TOPICS_STRICT=1`` (otherwise log it as an error); ``topics create`` passes False and
    prints the report. A topic the broker refuses to create raises :class:`TopicCreateError`.
    """
    admin = admin_client(s.bootstrap_servers, s.kafka_security)
    specs = specs if specs is not None else topic_specs(s)
    meta = admin.list_topics(timeout=timeout)
    report = TopicsReport(replication_factor(s, len(meta.brokers)), len(meta.brokers), dry_run=dry_run)
    missing = [sp for sp in specs if sp.name not in meta.topics]
    if dry_run:
        report.to_create = missing
    elif missing:
        report.created = _create(admin, missing, report.replication_factor, timeout)
        meta = _wait_for(admin, [sp.name for sp in missing], timeout)
    present = [sp for sp in specs if sp.name in meta.topics]
    configs = _describe_configs(admin, [sp.name for sp in present if sp.config], timeout)
    for sp in specs:
        if dry_run and sp in missing:
            continue
        tm = meta.topics.get(sp.name)
        parts = None if tm is None else len(tm.partitions)
        replicas = min((len(p.replicas) for p in tm.partitions.values()), default=None) if tm else None
        got, err = configs.get(sp.name, (None, ""))
        checks = compare(sp, parts, got, replicas, report.replication_factor, err)
        if sp.name in report.created:
            checks = [Check(c.topic, c.item, c.want, c.have, CREATED)
                      if c.status == OK and c.item == "partitions" else c for c in checks]
        report.checks += checks
    if report.created:
        log.info("created topics: %s", ", ".join(sorted(report.created)))
    if enforce:
        _enforce(report, s)
    return report


def _create(admin: AdminClient, specs: list[TopicSpec], rf: int, timeout: float) -> list[str]:
    futures = admin.create_topics(
        [NewTopic(sp.name, sp.partitions, rf, config=dict(sp.config)) for sp in specs],
        request_timeout=timeout)
    created, failed = [], []
    for sp in specs:
        try:
            futures[sp.name].result(timeout=timeout)
            created.append(sp.name)
        except KafkaException as exc:
            err = exc.args[0]
            if err.code() == TOPIC_ALREADY_EXISTS:  # created meanwhile by another worker: checked below
                continue
            failed.append(f"{sp.name} ({_describe(sp, rf)}): {err.name()}: {err.str()}")
    if failed:
        also = f" (created meanwhile: {', '.join(created)})" if created else ""
        raise TopicCreateError(
            "the broker refused to create " + "; ".join(failed) + ". Nothing was created without its "
            "configs: fix the cause (a config the cluster's policy forbids, REPLICATION_FACTOR above the "
            "broker count, missing Create ACL) or create the topic yourself with these settings, then run "
            "`python -m processor topics create` again" + also)
    return created


def _wait_for(admin: AdminClient, names: list[str], timeout: float) -> Any:
    """Metadata once every topic in ``names`` shows up (a new topic takes a moment to propagate)."""
    deadline = time.monotonic() + timeout
    while True:
        meta = admin.list_topics(timeout=timeout)
        if all(n in meta.topics and meta.topics[n].partitions for n in names) or time.monotonic() > deadline:
            return meta
        time.sleep(0.2)


def _describe_configs(admin: AdminClient, names: list[str], timeout: float) -> dict[str, tuple[Any, str]]:
    """``{topic: (configs or None, error)}`` from DescribeConfigs, retried briefly for a topic the
    broker does not know yet (just created)."""
    out: dict[str, tuple[Any, str]] = {}
    todo, deadline = list(names), time.monotonic() + min(timeout, 10.0)
    while todo:
        retry = []
        try:
            futures = admin.describe_configs([ConfigResource("topic", n) for n in todo],
                                             request_timeout=timeout)
        except KafkaException as exc:
            return {**out, **{n: (None, str(exc.args[0])) for n in todo}}
        for res, fut in futures.items():
            try:
                out[res.name] = (fut.result(timeout=timeout), "")
            except KafkaException as exc:
                err = exc.args[0]
                if err.code() == UNKNOWN_TOPIC_OR_PART and time.monotonic() < deadline:
                    retry.append(res.name)
                else:
                    out[res.name] = (None, f"{err.name()}: {err.str()}")
        todo = retry
        if todo:
            time.sleep(0.3)
    return out


def _enforce(report: TopicsReport, s: Settings) -> None:
    for c in report.unverifiable:
        log.warning("topic %s: %s=%s %s", c.topic, c.item, c.want, f"{c.status}: {c.note}",
                    extra={"error_code": "TOPIC_CONFIG_UNVERIFIABLE"})
    if report.fatal:
        raise TopicLayoutError("topics do not have the layout the processor needs:\n"
                               + _rows(report.fatal))
    config_drift = [c for c in report.drift if not c.fatal]
    if not config_drift:
        return
    if s.topics_strict:
        raise TopicLayoutError("topic configs differ from what the processor needs (TOPICS_STRICT=1):\n"
                               + _rows(config_drift), "TOPIC_CONFIG_DRIFT")
    for c in config_drift:
        log.error("topic %s: %s is %s, should be %s (%s); starting anyway (TOPICS_STRICT=1 refuses to)",
                  c.topic, c.item, c.have or "?", c.want, c.note, extra={"error_code": "TOPIC_CONFIG_DRIFT"})


def _rows(checks: list[Check]) -> str:
    return "\n".join(f"  {c.topic}: {c.item} is {c.have or 'absent'}, must be {c.want} ({c.note})"
                     for c in checks)
