"""Edge: the wire format of the contract topics, schemaless (default) or Schema Registry-framed.

Without ``SCHEMA_REGISTRY_URL`` a value is the schemaless Avro of our schema (docs/contract.md).
With it, every value of the five contract topics (user events, commands, membership changes,
command results, dead letters) carries Confluent's framing: magic byte 0, the 4-byte big-endian
schema id, then the Avro body. Subjects follow ``TopicNameStrategy`` (``<topic>-value``).

* **Reading** a framed record looks up the writer's schema by id (confluent-kafka's
  ``SchemaRegistryClient``, cached; the parsed schema is cached here too) and resolves it to
  ours (:func:`processor.contract.codec.writer_schema`), so producers may add optional fields;
  our validation (limits, ids, keys) then applies as for any record. An id the registry does
  not know is ``UNKNOWN_SCHEMA_ID``, a writer schema that does not resolve to ours
  ``INCOMPATIBLE_SCHEMA``: both :class:`~processor.contract.exceptions.ContractError`, i.e. dead
  letters. A value that does not start with the magic byte is read as schemaless (records
  written before the registry was switched on; a valid schemaless record never starts with a
  0 byte, its first field being a non-empty string).
* **Writing** frames our current schema's id, looked up under the topic's subject (never
  registered implicitly: ``topics create`` registers, :func:`register_schemas`).
* **A registry that does not answer** (connection refused, timeout, HTTP 5xx, 401/403) raises
  :class:`SchemaRegistryUnavailable`, never a ContractError: the record is not refused, the
  caller retries it later (a worker pauses the partition and retries with back-off,
  docs/deploy.md "Schema Registry"); a tool exits with the error.

The processor's internal topics (catalog, control, the users table's changelog) are not
contract topics and keep their own encodings.
"""

from __future__ import annotations

import json
import struct
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from processor.contract import codec, schemas
from processor.contract.exceptions import ContractError
from processor.contract.limits import DEFAULT_LIMITS, Limits
from processor.contract.models import Command, CommandResult, DeadLetter, MembershipChange, UserEvent
from processor.errors import ProcessorError

if TYPE_CHECKING:
    from processor.config import SchemaRegistry, Settings, Topics

MAGIC = 0
HEADER = struct.Struct(">bI")  # magic byte, schema id
COMPATIBILITY = "FULL_TRANSITIVE"  # what the evolution rules guarantee (docs/contract.md "Schema evolution")
T = TypeVar("T")


class SchemaRegistryUnavailable(ProcessorError):
    """The registry did not answer usefully; retry later (the record is not at fault)."""

    def __init__(self, message: str) -> None:
        super().__init__("SCHEMA_REGISTRY_UNAVAILABLE", message, "SCHEMA_REGISTRY_URL")


class SchemaNotRegistered(ProcessorError):
    """Our schema is not registered under the topic's subject: ``topics create`` does that."""

    def __init__(self, subject: str) -> None:
        super().__init__("SCHEMA_NOT_REGISTERED", f"our schema is not registered under subject {subject!r}: run "
                         "`python -m processor topics create` (it registers every contract schema)", subject)


def subjects(topics: "Topics") -> dict[str, str]:
    """Our schema name -> its subject (``TopicNameStrategy``: ``<topic>-value``)."""
    return {schemas.USER_EVENT: f"{topics.user_events}-value",
            schemas.AUTOMATION_COMMAND: f"{topics.commands}-value",
            schemas.MEMBERSHIP_CHANGE: f"{topics.membership_changes}-value",
            schemas.COMMAND_RESULT: f"{topics.command_results}-value",
            schemas.DEAD_LETTER: f"{topics.dead_letters}-value"}


class WireFormat:
    """The schemaless wire format (no registry): our schema's plain Avro, as before."""

    framed = False

    @classmethod
    def from_settings(cls, settings: "Settings") -> "WireFormat":
        """Schemaless without ``SCHEMA_REGISTRY_URL``, framed with it."""
        if not settings.schema_registry.url:
            return SCHEMALESS
        return RegistryWireFormat(registry_client(settings.schema_registry), settings.topics)

    def check(self) -> None:
        """Fail now (not on the first record) when the format cannot be used: for a worker's start."""

    def resolved(self, name: str, value: bytes | None) -> bool:
        """Whether decoding ``value`` (of our schema ``name``) needs nothing from the registry that is
        not cached yet (cheap: a worker asks it for every input record)."""
        return True

    def resolve(self, name: str, value: bytes | None) -> None:
        """Fetch and cache what decoding ``value`` needs from the registry (blocking: a worker runs it
        off the event loop). Raises :class:`SchemaRegistryUnavailable` when the registry does not
        answer; a record at fault (an unknown id) is left to the decode, which raises its ContractError."""

    # decoding
    def decode_user_event(self, key: bytes | None, value: bytes | None, limits: Limits = DEFAULT_LIMITS
                          ) -> UserEvent:
        return codec.decode_user_event(key, value, limits)

    def decode_command(self, value: bytes | None, limits: Limits = DEFAULT_LIMITS) -> Command:
        return codec.decode_command(value, limits)

    def decode_membership_change(self, value: bytes) -> MembershipChange:
        return codec.decode_membership_change(value)

    def decode_command_result(self, value: bytes) -> CommandResult:
        return codec.decode_command_result(value)

    def decode_dead_letter(self, value: bytes) -> DeadLetter:
        return codec.decode_dead_letter(value)

    # encoding
    def encode_user_event(self, ev: UserEvent) -> bytes:
        return codec.encode_user_event(ev)

    def encode_command(self, cmd: Command) -> bytes:
        return codec.encode_command(cmd)

    def encode_membership_change(self, ch: MembershipChange) -> bytes:
        return codec.encode_membership_change(ch)

    def encode_command_result(self, res: CommandResult) -> bytes:
        return codec.encode_command_result(res)

    def encode_dead_letter(self, dl: DeadLetter) -> bytes:
        return codec.encode_dead_letter(dl)


SCHEMALESS = WireFormat()


_MOCKS: dict[str, Any] = {}


def registry_client(conf: "SchemaRegistry") -> Any:
    """confluent-kafka's ``SchemaRegistryClient`` for ``conf``; basic auth from ``..._USER_INFO`` or
    ``..._USER`` + ``..._PASSWORD(_FILE)``. A ``mock://NAME`` URL gives confluent-kafka's in-memory
    registry, one per NAME in this process (for tests: what one client registers, another reads)."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    if conf.url and conf.url.startswith("mock://"):
        if conf.url not in _MOCKS:
            _MOCKS[conf.url] = SchemaRegistryClient.new_client({"url": conf.url})
        return _MOCKS[conf.url]

    from processor.kafka_security import read_secret

    # one quick retry inside the client: a caller retries a record whose registry did not answer
    # (SchemaRegistryUnavailable) on its own schedule
    cfg: dict[str, Any] = {"url": conf.url, "timeout": 10, "max.retries": 1, "retries.wait.ms": 200}
    password = read_secret(conf.basic_auth_password, conf.basic_auth_password_file, "SCHEMA_REGISTRY_BASIC_AUTH_PASSWORD")
    if conf.basic_auth_user_info and (conf.basic_auth_user or password):
        raise ProcessorError("SCHEMA_REGISTRY_INVALID", "set SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO or "
                             "SCHEMA_REGISTRY_BASIC_AUTH_USER and _PASSWORD, not both",
                             "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO")
    if conf.basic_auth_user_info:
        cfg["basic.auth.user.info"] = conf.basic_auth_user_info
    elif conf.basic_auth_user or password:
        if not (conf.basic_auth_user and password):
            missing = "SCHEMA_REGISTRY_BASIC_AUTH_PASSWORD" if conf.basic_auth_user else \
                "SCHEMA_REGISTRY_BASIC_AUTH_USER"
            raise ProcessorError("SCHEMA_REGISTRY_INVALID", "basic auth needs both a user and a password", missing)
        cfg["basic.auth.user.info"] = f"{conf.basic_auth_user}:{password}"
    if conf.ssl_ca_location:
        cfg["ssl.ca.location"] = conf.ssl_ca_location
    try:
        return SchemaRegistryClient.new_client(cfg)
    except (ValueError, TypeError, OSError) as err:
        raise ProcessorError("SCHEMA_REGISTRY_INVALID", str(err), "SCHEMA_REGISTRY_URL") from None


def _registry_call(what: str, call: Callable[[], T]) -> T:
    """``call()``, with every failure that is the registry's (not the record's) raised as
    :class:`SchemaRegistryUnavailable`; the registry's own 4xx answers are re-raised as they are."""
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    try:
        return call()
    except SchemaRegistryError as err:
        if err.http_status_code in (401, 403):
            raise SchemaRegistryUnavailable(f"{what}: the registry refused our credentials (HTTP "
                                            f"{err.http_status_code}): check SCHEMA_REGISTRY_BASIC_AUTH_*") from None
        if err.http_status_code >= 500 or err.http_status_code < 400:
            raise SchemaRegistryUnavailable(f"{what}: {err}") from None
        raise
    except Exception as err:  # noqa: BLE001 - httpx connection/timeout errors and the like
        raise SchemaRegistryUnavailable(f"{what}: the registry did not answer ({type(err).__name__}: {err})") \
            from None


class RegistryWireFormat(WireFormat):
    """Confluent framing through a Schema Registry (see the module docstring)."""

    framed = True
    UNKNOWN_ID_TTL_S = 60.0  # an unknown id is asked again after this long, not per record

    def __init__(self, client: Any, topics: "Topics") -> None:
        self.client = client
        self.subjects = subjects(topics)
        self._ours: dict[str, int] = {}
        self._writers: dict[tuple[int, str], codec.WriterSchema] = {}
        self._unknown: dict[int, float] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------ our schemas
    @staticmethod
    def schema_text(name: str) -> str:
        """What is registered: our schema file's JSON (logical types kept)."""
        return json.dumps(schemas.raw_schema(name), sort_keys=True)

    def our_id(self, name: str) -> int:
        """The id of our current schema under its subject (looked up, never registered here)."""
        cached = self._ours.get(name)
        if cached is not None:
            return cached
        from confluent_kafka.schema_registry import Schema
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        subject = self.subjects[name]
        try:
            found = _registry_call(f"looking up our {name} schema under {subject}",
                                   lambda: self.client.lookup_schema(subject, Schema(self.schema_text(name), "AVRO")))
        except SchemaRegistryError as err:
            if err.http_status_code == 404:
                raise SchemaNotRegistered(subject) from None
            raise SchemaRegistryUnavailable(f"looking up our {name} schema under {subject}: {err}") from None
        schema_id = int(found.schema_id)
        with self._lock:  # records framed with our own schema then decode without asking the registry
            self._writers.setdefault((schema_id, name), codec.writer_schema(name, self.schema_text(name)))
        self._ours[name] = schema_id
        return schema_id

    def check(self) -> None:
        for name in self.subjects:
            self.our_id(name)

    def resolved(self, name: str, value: bytes | None) -> bool:
        if value is None or len(value) < HEADER.size or value[0] != MAGIC:
            return True
        _, schema_id = HEADER.unpack_from(value)
        return (schema_id, name) in self._writers or time.monotonic() < self._unknown.get(schema_id, 0.0)

    def resolve(self, name: str, value: bytes | None) -> None:
        try:
            self._body(name, value)
        except ContractError:
            pass  # the record's fault: its decode raises it again (cached) and it is dead-lettered

    def _frame(self, name: str, body: bytes) -> bytes:
        return HEADER.pack(MAGIC, self.our_id(name)) + body

    # ------------------------------------------------------------ writers' schemas
    def _writer(self, schema_id: int, name: str) -> codec.WriterSchema:
        key = (schema_id, name)
        found = self._writers.get(key)
        if found is not None:
            return found
        if time.monotonic() < self._unknown.get(schema_id, 0.0):
            raise ContractError("UNKNOWN_SCHEMA_ID", f"the Schema Registry has no schema with id {schema_id}")
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            schema = _registry_call(f"fetching schema id {schema_id}", lambda: self.client.get_schema(schema_id))
        except SchemaRegistryError as err:  # a 4xx answer: the registry has no such schema
            with self._lock:
                self._unknown[schema_id] = time.monotonic() + self.UNKNOWN_ID_TTL_S
            raise ContractError("UNKNOWN_SCHEMA_ID", f"the Schema Registry has no schema with id {schema_id} "
                                f"({err.error_message})") from None
        if (schema.schema_type or "AVRO").upper() != "AVRO":
            raise ContractError("INCOMPATIBLE_SCHEMA", f"schema id {schema_id} is a {schema.schema_type} schema, "
                                "not Avro")
        if schema.references:
            raise ContractError("INCOMPATIBLE_SCHEMA", f"schema id {schema_id} uses schema references, which this "
                                "processor does not resolve; register a self-contained schema")
        try:
            ws = codec.writer_schema(name, schema.schema_str)
        except ContractError as err:
            raise ContractError(err.code, f"schema id {schema_id}: {err.message}", err.path) from None
        with self._lock:
            self._writers[key] = ws
        return ws

    def _body(self, name: str, value: bytes | None) -> tuple[bytes | None, codec.WriterSchema | None]:
        """(Avro body, writer schema) of a framed value; (value, None) for a schemaless one."""
        if value is None or len(value) < HEADER.size or value[0] != MAGIC:
            return value, None
        _, schema_id = HEADER.unpack_from(value)
        return value[HEADER.size:], self._writer(schema_id, name)

    def _decode(self, name: str, value: bytes | None, decode: Callable[..., T]) -> T:
        body, writer = self._body(name, value)
        return decode(body, writer)

    # ------------------------------------------------------------ the contract
    def decode_user_event(self, key: bytes | None, value: bytes | None, limits: Limits = DEFAULT_LIMITS
                          ) -> UserEvent:
        if value is not None and len(value) > limits.max_message_bytes:  # before any registry call
            return codec.decode_user_event(key, value, limits)
        return self._decode(schemas.USER_EVENT, value,
                            lambda body, w: codec.decode_user_event(key, body, limits, writer=w))

    def decode_command(self, value: bytes | None, limits: Limits = DEFAULT_LIMITS) -> Command:
        if value is not None and len(value) > limits.max_message_bytes:
            return codec.decode_command(value, limits)
        return self._decode(schemas.AUTOMATION_COMMAND, value,
                            lambda body, w: codec.decode_command(body, limits, writer=w))

    def decode_membership_change(self, value: bytes) -> MembershipChange:
        return self._decode(schemas.MEMBERSHIP_CHANGE, value, lambda body, w: codec.decode_membership_change(body, w))

    def decode_command_result(self, value: bytes) -> CommandResult:
        return self._decode(schemas.COMMAND_RESULT, value, lambda body, w: codec.decode_command_result(body, w))

    def decode_dead_letter(self, value: bytes) -> DeadLetter:
        return self._decode(schemas.DEAD_LETTER, value, lambda body, w: codec.decode_dead_letter(body, w))

    def encode_user_event(self, ev: UserEvent) -> bytes:
        return self._frame(schemas.USER_EVENT, codec.encode_user_event(ev))

    def encode_command(self, cmd: Command) -> bytes:
        return self._frame(schemas.AUTOMATION_COMMAND, codec.encode_command(cmd, current_schema=True))

    def encode_membership_change(self, ch: MembershipChange) -> bytes:
        return self._frame(schemas.MEMBERSHIP_CHANGE, codec.encode_membership_change(ch))

    def encode_command_result(self, res: CommandResult) -> bytes:
        return self._frame(schemas.COMMAND_RESULT, codec.encode_command_result(res))

    def encode_dead_letter(self, dl: DeadLetter) -> bytes:
        return self._frame(schemas.DEAD_LETTER, codec.encode_dead_letter(dl))


@dataclass(frozen=True)
class Registration:
    subject: str
    schema_id: int
    compatibility: str  # what the subject's level was set to ("-" for the in-memory mock registry)


def register_schemas(settings: "Settings") -> list[Registration]:
    """Register every contract schema under its subject, after setting the subject's
    compatibility to :data:`COMPATIBILITY` (so the registry itself refuses a later incompatible
    version). Idempotent: registering the same schema again returns its id. For ``topics create``."""
    from confluent_kafka.schema_registry import Schema
    from confluent_kafka.schema_registry.error import SchemaRegistryError
    from confluent_kafka.schema_registry._sync.mock_schema_registry_client import MockSchemaRegistryClient

    client = registry_client(settings.schema_registry)
    out = []
    for name, subject in subjects(settings.topics).items():
        level = "-"
        try:
            if not isinstance(client, MockSchemaRegistryClient):  # the mock keeps no configs
                _registry_call(f"setting {subject}'s compatibility",
                               lambda: client.set_compatibility(subject_name=subject, level=COMPATIBILITY))
                level = COMPATIBILITY
            schema_id = _registry_call(f"registering {subject}", lambda: client.register_schema(
                subject, Schema(RegistryWireFormat.schema_text(name), "AVRO")))
        except SchemaRegistryError as err:
            raise ProcessorError("SCHEMA_REGISTRATION_FAILED", f"{subject}: {err}", subject) from None
        out.append(Registration(subject, int(schema_id), level))
    return out
