"""Runtime settings from the environment (the names are part of the wire contract).

Contract variables: KAFKA_BOOTSTRAP_SERVERS, STATE_DIR, WEB_PORT, ADMIN_JWT_SECRET.
Every topic name and partition count is overridable, so platform teams can
fit the processor into their naming scheme. How every Kafka client connects (TLS, SASL) is
:class:`KafkaSecurity` (checked and mapped onto each client library by
processor/kafka_security.py); the Schema Registry is :class:`SchemaRegistry`
(processor/wire.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def _int_or_none(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    return int(value) if value else None


@dataclass(frozen=True, slots=True)
class Topics:
    user_events: str = "lms.user-events.v1"
    commands: str = "segment-automation.commands.v1"
    membership_changes: str = "segment-automation.membership-changes.v1"
    command_results: str = "segment-automation.command-results.v1"
    dead_letters: str = "segment-automation.dead-letters.v1"
    catalog: str = "segment-automation.internal.catalog.v1"
    control: str = "segment-automation.internal.control.v1"

    @classmethod
    def from_env(cls) -> "Topics":
        d = cls()
        return cls(
            user_events=_env("TOPIC_USER_EVENTS", d.user_events),
            commands=_env("TOPIC_COMMANDS", d.commands),
            membership_changes=_env("TOPIC_MEMBERSHIP_CHANGES", d.membership_changes),
            command_results=_env("TOPIC_COMMAND_RESULTS", d.command_results),
            dead_letters=_env("TOPIC_DEAD_LETTERS", d.dead_letters),
            catalog=_env("TOPIC_CATALOG", d.catalog),
            control=_env("TOPIC_CONTROL", d.control),
        )


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """How every Kafka client connects, with librdkafka's meanings (docs/deploy.md "TLS and SASL").

    Values are kept as given; processor/kafka_security.py checks them (unknown protocol or
    mechanism, unreadable files, SASL without a password: an error naming the variable) and
    maps them onto librdkafka, aiokafka and Faust. Passwords are left out of ``repr``.
    """

    protocol: str = "PLAINTEXT"  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    sasl_mechanism: str | None = None  # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    sasl_password_file: str | None = None
    ssl_ca_location: str | None = None  # PEM CA bundle; unset: the system's trust store
    ssl_certificate_location: str | None = None  # client certificate (mutual TLS)
    ssl_key_location: str | None = None
    ssl_key_password: str | None = field(default=None, repr=False)
    ssl_key_password_file: str | None = None
    ssl_endpoint_identification: str = "https"  # https: the broker's name must match its certificate; none

    @classmethod
    def from_env(cls) -> "KafkaSecurity":
        d = cls()
        # A secret is given as NAME or as NAME_FILE (a mounted secret's path). The file is read
        # when a client is configured (processor/kafka_security.py), so a missing or unreadable
        # one is an error naming the variable, not a crash while the environment is read.
        return cls(
            protocol=_env("KAFKA_SECURITY_PROTOCOL", d.protocol).upper(),
            sasl_mechanism=_env("KAFKA_SASL_MECHANISM", "").upper() or None,
            sasl_username=os.environ.get("KAFKA_SASL_USERNAME") or None,
            sasl_password=os.environ.get("KAFKA_SASL_PASSWORD") or None,
            sasl_password_file=_env("KAFKA_SASL_PASSWORD_FILE", "") or None,
            ssl_ca_location=_env("KAFKA_SSL_CA_LOCATION", "") or None,
            ssl_certificate_location=_env("KAFKA_SSL_CERTIFICATE_LOCATION", "") or None,
            ssl_key_location=_env("KAFKA_SSL_KEY_LOCATION", "") or None,
            ssl_key_password=os.environ.get("KAFKA_SSL_KEY_PASSWORD") or None,
            ssl_key_password_file=_env("KAFKA_SSL_KEY_PASSWORD_FILE", "") or None,
            ssl_endpoint_identification=_env("KAFKA_SSL_ENDPOINT_IDENTIFICATION", d.ssl_endpoint_identification).lower(),
        )

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")


@dataclass(frozen=True, slots=True)
class SchemaRegistry:
    """The Confluent-compatible Schema Registry (docs/deploy.md "Schema Registry"). With ``url``
    set, every contract topic carries the Confluent framing (processor/wire.py); without it, the
    schemaless encoding (docs/contract.md)."""

    url: str | None = None
    basic_auth_user_info: str | None = field(default=None, repr=False)  # "user:password"
    basic_auth_user: str | None = None
    basic_auth_password: str | None = field(default=None, repr=False)
    basic_auth_password_file: str | None = None
    ssl_ca_location: str | None = None  # PEM CA bundle for an https registry; unset: the system's

    @classmethod
    def from_env(cls) -> "SchemaRegistry":
        return cls(
            url=_env("SCHEMA_REGISTRY_URL", "") or None,
            basic_auth_user_info=os.environ.get("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO") or None,
            basic_auth_user=os.environ.get("SCHEMA_REGISTRY_BASIC_AUTH_USER") or None,
            basic_auth_password=os.environ.get("SCHEMA_REGISTRY_BASIC_AUTH_PASSWORD") or None,
            basic_auth_password_file=_env("SCHEMA_REGISTRY_BASIC_AUTH_PASSWORD_FILE", "") or None,
            ssl_ca_location=_env("SCHEMA_REGISTRY_SSL_CA_LOCATION", "") or None,
        )


@dataclass(frozen=True, slots=True)
class Settings:
    bootstrap_servers: str = "localhost:9092"
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)  # TLS/SASL of every Kafka client
    schema_registry: SchemaRegistry = field(default_factory=SchemaRegistry)  # unset url: schemaless Avro
    state_dir: Path = Path(".state/worker")
    web_port: int = 6066
    web_host: str = "127.0.0.1"  # bind address
    web_canonical_host: str = ""  # how peers reach this worker (default: web_host, or hostname if 0.0.0.0)
    admin_jwt_secret: str | None = None
    admin_jwt_public_key: str | None = None  # PEM (EdDSA or RS256); takes precedence over the secret
    admin_jwt_audience: str | None = None  # verified when set
    admin_jwt_issuer: str | None = None  # verified when set
    admin_jwt_max_lifetime_s: int = 86400  # a token's exp - iat may not exceed this
    # Commands on the bus must carry the issuing admin's JWT, verified like the API's (opt-in):
    # without it, whoever may produce to the commands topic is trusted with any actor and role.
    commands_require_token: bool = False
    # CloudEvents binary-mode headers on every membership change (docs/contract.md); CLOUDEVENTS=0: none
    cloudevents: bool = True
    app_id: str = "segment-automation"
    topics: Topics = field(default_factory=Topics)
    partitions: int = 8  # user events, control, membership changes, table changelog
    command_partitions: int = 4
    # Replication factor of the topics `topics create` makes; None: min(3, brokers in the cluster)
    replication_factor: int | None = None
    # min.insync.replicas set on (and checked for) every topic; None: the cluster's default, unchecked
    min_insync_replicas: int | None = None
    # A topic config drift (retention, cleanup policy, ...) stops a worker's start instead of being
    # logged as an error (a wrong partition count always stops it); processor/topics.py
    topics_strict: bool = False
    session_timeout_s: float = 30.0
    log_level: str = "info"
    # BROKER_QUIRKS: the broker profile to run with (processor/runtime/broker_profile.py names
    # each profile and its work-arounds); unset for Kafka.
    broker_quirks: frozenset[str] = frozenset()
    # How long a consumer fetch may wait for data (None: the broker profile's default, else
    # Faust's 1,500 ms). Kafka answers a waiting fetch as soon as data arrives, so this adds no
    # latency there; a broker that answers only when the wait ends makes it the input latency.
    fetch_max_wait_ms: int | None = None
    # How long the membership-changes producer waits to fill a batch (ms): a few ms of latency
    # buys many records per request (processor/runtime/output_producer.py).
    output_linger_ms: int = 5
    # The same for Faust's producer, which writes the worker's other topics (command results,
    # control, catalog). 0: every record leaves at once (Faust's default).
    faust_producer_linger_ms: int = 0
    # Fault injection for the crash tests only (never set in production): the worker exits
    # (os._exit, like kill -9) right before it sends the first membership change whose
    # cause_kind is this ("TIME_ELAPSED", or "TIME_ELAPSED@site-id" for one site's changes only),
    # i.e. after the state behind it is durable and before the output has it.
    fault_exit_before_send: str | None = None
    # Fault injection for the failure tests only (never set in production): "<stage>:<prefix>"
    # makes the worker raise an unexpected error at stage "decide" or "fan_out" of every command
    # whose command_id starts with <prefix> (processor/runtime/app.py, Runtime._command_fault).
    fault_command_raise: str | None = None
    # Fault injection for the takeover tests only (never set in production): "<ms>:<prefix>[,...]" makes
    # every chunk of a backfill of a command whose command_id starts with <prefix> wait <ms> first,
    # so a worker can be killed in the middle of it (processor/handlers/backfill.py).
    fault_backfill_delay: str | None = None
    # Dead letters (processor/runtime/dead_letters.py): the dead-letter producer's message size limit
    # (librdkafka message.max.bytes; keep it at or below the dead-letter topic's max.message.bytes):
    # larger dead letters are cut to fit. How long one send may take before it counts as failed,
    # and the longest wait between retries while an input partition is paused for one.
    dead_letter_max_bytes: int = 1_000_000
    dead_letter_timeout_ms: int = 10_000
    dead_letter_retry_max_s: float = 30.0
    # Command de-duplication window (processor/catalog/window.py): a command's record is kept
    # while it is among the last N messages decided on its commands partition.
    command_window: int = 10_000
    # GET /sites/{site}/commands/{id}: an API command id older than this, not in the window,
    # answers 410 COMMAND_EXPIRED instead of PENDING (docs/api.md).
    command_status_ttl_s: int = 3600
    # Admin API limits (docs/api.md "Limits"): how long a gathered read waits for every worker
    # (a preview, which evaluates every stored user, waits longer), how many full-site scans
    # (previews, member counts) one worker runs at once, and how many writes (commands) one token
    # subject may submit per site per minute on one worker.
    peer_timeout_s: float = 5.0
    scan_timeout_s: float = 60.0
    scan_concurrency: int = 2
    scan_slice_ms: float = 1.0  # longest stretch a scan runs before it yields to the event loop
    scan_rest_ms: float = 1.0  # then it rests this long (a scan takes ~2x its CPU time, events do not wait)
    api_write_rate_per_minute: int = 120

    @classmethod
    def from_env(cls) -> "Settings":
        d = cls()
        return cls(
            bootstrap_servers=_env("KAFKA_BOOTSTRAP_SERVERS", d.bootstrap_servers),
            kafka_security=KafkaSecurity.from_env(),
            schema_registry=SchemaRegistry.from_env(),
            state_dir=Path(_env("STATE_DIR", str(d.state_dir))),
            web_port=int(_env("WEB_PORT", str(d.web_port))),
            web_host=_env("WEB_HOST", d.web_host),
            web_canonical_host=_env("WEB_CANONICAL_HOST", ""),
            admin_jwt_secret=os.environ.get("ADMIN_JWT_SECRET") or None,
            admin_jwt_public_key=os.environ.get("ADMIN_JWT_PUBLIC_KEY") or None,
            admin_jwt_audience=os.environ.get("ADMIN_JWT_AUDIENCE", "").strip() or None,
            admin_jwt_issuer=os.environ.get("ADMIN_JWT_ISSUER", "").strip() or None,
            admin_jwt_max_lifetime_s=int(_env("ADMIN_JWT_MAX_LIFETIME_S", str(d.admin_jwt_max_lifetime_s))),
            commands_require_token=_env("COMMANDS_REQUIRE_TOKEN", "0").lower() in ("1", "true", "yes"),
            cloudevents=_env("CLOUDEVENTS", "1").strip().lower() not in ("0", "false", "no"),
            app_id=_env("APP_ID", d.app_id),
            topics=Topics.from_env(),
            partitions=int(_env("PARTITIONS", str(d.partitions))),
            command_partitions=int(_env("COMMAND_PARTITIONS", str(d.command_partitions))),
            replication_factor=_int_or_none("REPLICATION_FACTOR"),
            min_insync_replicas=_int_or_none("MIN_INSYNC_REPLICAS"),
            topics_strict=_env("TOPICS_STRICT", "0").lower() in ("1", "true", "yes"),
            session_timeout_s=float(_env("BROKER_SESSION_TIMEOUT", str(d.session_timeout_s))),
            log_level=_env("LOG_LEVEL", d.log_level),
            broker_quirks=frozenset(q.strip() for q in os.environ.get("BROKER_QUIRKS", "").split(",") if q.strip()),
            output_linger_ms=int(_env("OUTPUT_LINGER_MS", str(d.output_linger_ms))),
            faust_producer_linger_ms=int(_env("FAUST_PRODUCER_LINGER_MS", str(d.faust_producer_linger_ms))),
            fetch_max_wait_ms=int(os.environ["FETCH_MAX_WAIT_MS"]) if os.environ.get("FETCH_MAX_WAIT_MS") else None,
            fault_exit_before_send=os.environ.get("FAULT_EXIT_BEFORE_SEND") or None,
            fault_command_raise=os.environ.get("FAULT_COMMAND_RAISE") or None,
            fault_backfill_delay=os.environ.get("FAULT_BACKFILL_DELAY") or None,
            dead_letter_max_bytes=int(_env("DEAD_LETTER_MAX_BYTES", str(d.dead_letter_max_bytes))),
            dead_letter_timeout_ms=int(_env("DEAD_LETTER_TIMEOUT_MS", str(d.dead_letter_timeout_ms))),
            dead_letter_retry_max_s=float(_env("DEAD_LETTER_RETRY_MAX_S", str(d.dead_letter_retry_max_s))),
            command_window=int(_env("COMMAND_DEDUP_WINDOW", str(d.command_window))),
            command_status_ttl_s=int(_env("COMMAND_STATUS_TTL_S", str(d.command_status_ttl_s))),
            peer_timeout_s=float(_env("PEER_TIMEOUT_S", str(d.peer_timeout_s))),
            scan_timeout_s=float(_env("SCAN_TIMEOUT_S", str(d.scan_timeout_s))),
            scan_concurrency=int(_env("SCAN_CONCURRENCY", str(d.scan_concurrency))),
            scan_slice_ms=float(_env("SCAN_SLICE_MS", str(d.scan_slice_ms))),
            scan_rest_ms=float(_env("SCAN_REST_MS", str(d.scan_rest_ms))),
            api_write_rate_per_minute=int(_env("API_WRITE_RATE_PER_MINUTE", str(d.api_write_rate_per_minute))),
        )

    def with_(self, **kw: object) -> "Settings":
        return replace(self, **kw)  # type: ignore[arg-type]

    @property
    def canonical_host(self) -> str:
        if self.web_canonical_host:
            return self.web_canonical_host
        if self.web_host in ("0.0.0.0", "::", ""):
            import socket

            return socket.gethostname()
        return self.web_host

    @property
    def changelog_topic(self) -> str:
        return f"{self.app_id}-users-changelog"
