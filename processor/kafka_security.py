"""Edge: how every Kafka client connects (TLS, SASL), from one :class:`~processor.config.KafkaSecurity`.

The settings have librdkafka's meanings (docs/deploy.md "TLS and SASL"). This module is the one
translation of them, for each client library the processor uses:

* :func:`librdkafka_config` - confluent-kafka's ``Producer``/``Consumer``/``AdminClient`` keys;
* :func:`aiokafka_config` - ``AIOKafkaConsumer``/``AIOKafkaProducer`` keyword arguments;
* :func:`faust_config` - ``faust.App`` settings (``broker_credentials``).

Each starts with :func:`check`: a wrong setting fails before any connection is tried, with a
:class:`KafkaSecurityError` whose ``path`` is the environment variable to fix (an unknown protocol
or mechanism, SASL without a username or password, a CA/certificate/key file that is missing,
unreadable or not PEM, a key password that does not decrypt the key, TLS files given for a
protocol without TLS). What only the broker can tell (a certificate not signed by the CA, a
refused password) is named by :func:`explain`, and :func:`preflight` turns it into an error
within seconds instead of librdkafka's endless reconnects. ``tests/unit/test_kafka_clients.py``
fails on a Kafka client built without these.
"""

from __future__ import annotations

import ssl
import threading
import time
from pathlib import Path
from typing import Any, Callable

from processor.config import KafkaSecurity
from processor.errors import ProcessorError

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
ENDPOINT_IDENTIFICATION = ("https", "none")
PLAINTEXT = KafkaSecurity()


class KafkaSecurityError(ProcessorError):
    """A TLS/SASL setting is wrong; ``path`` is the environment variable to fix."""

    def __init__(self, code: str, message: str, variable: str) -> None:
        super().__init__(code, message, variable)


class KafkaUnreachable(ProcessorError):
    """The brokers did not answer within the preflight's time (no TLS or SASL error seen)."""

    def __init__(self, message: str) -> None:
        super().__init__("KAFKA_UNREACHABLE", message, "KAFKA_BOOTSTRAP_SERVERS")


def _invalid(variable: str, message: str) -> KafkaSecurityError:
    return KafkaSecurityError("KAFKA_SECURITY_INVALID", message, variable)


# ------------------------------------------------------------------------ checks
def _readable(path: str, variable: str) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise _invalid(variable, f"{path} does not exist or is not a file")
    try:
        return p.read_bytes()
    except OSError as err:
        raise _invalid(variable, f"{path} cannot be read ({err.strerror or err})") from None


def read_secret(value: str | None, file: str | None, variable: str) -> str | None:
    """A secret given as ``variable`` or as ``variable_FILE`` (a mounted secret; one trailing
    newline, as ``echo`` and most secret stores leave, is dropped)."""
    if value and file:
        raise _invalid(variable, f"both {variable} and {variable}_FILE are set; set one")
    if file:
        text = _readable(file, f"{variable}_FILE").decode("utf-8", errors="strict")
        return text[:-1] if text.endswith("\n") else text
    return value


def sasl_password(sec: KafkaSecurity) -> str | None:
    return read_secret(sec.sasl_password, sec.sasl_password_file, "KAFKA_SASL_PASSWORD")


def ssl_key_password(sec: KafkaSecurity) -> str | None:
    return read_secret(sec.ssl_key_password, sec.ssl_key_password_file, "KAFKA_SSL_KEY_PASSWORD")


def check(sec: KafkaSecurity) -> None:
    """Raise :class:`KafkaSecurityError` naming the first wrong setting; return when all are usable."""
    if sec.protocol not in PROTOCOLS:
        raise _invalid("KAFKA_SECURITY_PROTOCOL", f"{sec.protocol!r} is not one of {', '.join(PROTOCOLS)}")
    if sec.ssl_endpoint_identification not in ENDPOINT_IDENTIFICATION:
        raise _invalid("KAFKA_SSL_ENDPOINT_IDENTIFICATION",
                       f"{sec.ssl_endpoint_identification!r} is not one of {', '.join(ENDPOINT_IDENTIFICATION)}")
    if sec.uses_sasl:
        if sec.sasl_mechanism is None:
            raise _invalid("KAFKA_SASL_MECHANISM", f"KAFKA_SECURITY_PROTOCOL={sec.protocol} needs a mechanism: "
                           f"one of {', '.join(MECHANISMS)}")
        if sec.sasl_mechanism not in MECHANISMS:
            raise _invalid("KAFKA_SASL_MECHANISM", f"{sec.sasl_mechanism!r} is not one of {', '.join(MECHANISMS)}")
        if not sec.sasl_username:
            raise _invalid("KAFKA_SASL_USERNAME", f"KAFKA_SECURITY_PROTOCOL={sec.protocol} needs a username")
        if not sasl_password(sec):
            raise _invalid("KAFKA_SASL_PASSWORD", f"KAFKA_SECURITY_PROTOCOL={sec.protocol} needs a password "
                           "(KAFKA_SASL_PASSWORD, or KAFKA_SASL_PASSWORD_FILE for a mounted secret)")
    else:
        given = [n for n, v in (("KAFKA_SASL_MECHANISM", sec.sasl_mechanism), ("KAFKA_SASL_USERNAME", sec.sasl_username),
                                ("KAFKA_SASL_PASSWORD", sec.sasl_password),
                                ("KAFKA_SASL_PASSWORD_FILE", sec.sasl_password_file)) if v]
        if given:
            raise _invalid(given[0], f"set, but KAFKA_SECURITY_PROTOCOL={sec.protocol} does not use SASL "
                           "(SASL_PLAINTEXT or SASL_SSL does)")
    if not sec.uses_tls:
        given = [n for n, v in (("KAFKA_SSL_CA_LOCATION", sec.ssl_ca_location),
                                ("KAFKA_SSL_CERTIFICATE_LOCATION", sec.ssl_certificate_location),
                                ("KAFKA_SSL_KEY_LOCATION", sec.ssl_key_location)) if v]
        if given:
            raise _invalid(given[0], f"set, but KAFKA_SECURITY_PROTOCOL={sec.protocol} does not use TLS "
                           "(SSL or SASL_SSL does)")
        return
    if sec.ssl_ca_location:
        _readable(sec.ssl_ca_location, "KAFKA_SSL_CA_LOCATION")
        try:
            ssl.create_default_context(cafile=sec.ssl_ca_location)
        except (ssl.SSLError, ValueError) as err:
            raise _invalid("KAFKA_SSL_CA_LOCATION", f"{sec.ssl_ca_location} holds no PEM CA certificate "
                           f"({err})") from None
    if bool(sec.ssl_certificate_location) != bool(sec.ssl_key_location):
        missing = "KAFKA_SSL_KEY_LOCATION" if sec.ssl_certificate_location else "KAFKA_SSL_CERTIFICATE_LOCATION"
        raise _invalid(missing, "a client certificate needs both KAFKA_SSL_CERTIFICATE_LOCATION and "
                       "KAFKA_SSL_KEY_LOCATION")
    if sec.ssl_certificate_location and sec.ssl_key_location:
        _readable(sec.ssl_certificate_location, "KAFKA_SSL_CERTIFICATE_LOCATION")
        key = _readable(sec.ssl_key_location, "KAFKA_SSL_KEY_LOCATION")
        password = ssl_key_password(sec)
        if b"ENCRYPTED" in key and not password:
            raise _invalid("KAFKA_SSL_KEY_PASSWORD", f"the key {sec.ssl_key_location} is encrypted; set "
                           "KAFKA_SSL_KEY_PASSWORD (or KAFKA_SSL_KEY_PASSWORD_FILE)")
        try:
            ssl.create_default_context().load_cert_chain(sec.ssl_certificate_location, sec.ssl_key_location,
                                                         password or None)
        except ssl.SSLError as err:
            text = str(err)
            if b"ENCRYPTED" in key and ("bad decrypt" in text or "BAD_DECRYPT" in text or "PEM lib" in text):
                raise _invalid("KAFKA_SSL_KEY_PASSWORD", f"does not decrypt the key {sec.ssl_key_location}") \
                    from None
            if "KEY_VALUES_MISMATCH" in text or "key values mismatch" in text:
                raise _invalid("KAFKA_SSL_KEY_LOCATION", f"{sec.ssl_key_location} is not the key of the "
                               f"certificate {sec.ssl_certificate_location}") from None
            raise _invalid("KAFKA_SSL_CERTIFICATE_LOCATION", f"{sec.ssl_certificate_location} with key "
                           f"{sec.ssl_key_location} cannot be loaded ({text})") from None
    elif sec.ssl_key_password or sec.ssl_key_password_file:
        raise _invalid("KAFKA_SSL_KEY_PASSWORD", "set without KAFKA_SSL_KEY_LOCATION")


# ----------------------------------------------------------------------- mappings
def librdkafka_config(sec: KafkaSecurity) -> dict[str, Any]:
    """The librdkafka (confluent-kafka) keys for ``sec``; ``{}`` for PLAINTEXT, so a plain client's
    configuration is exactly what it was. Merge it into every client's config."""
    check(sec)
    if sec.protocol == "PLAINTEXT":
        return {}
    conf: dict[str, Any] = {"security.protocol": sec.protocol.lower()}
    if sec.uses_sasl:
        conf.update({"sasl.mechanism": sec.sasl_mechanism, "sasl.username": sec.sasl_username,
                     "sasl.password": sasl_password(sec)})
    if sec.uses_tls:
        # unset: librdkafka probes the usual system locations (its default build path may not exist)
        conf["ssl.ca.location"] = sec.ssl_ca_location or "probe"
        conf["ssl.endpoint.identification.algorithm"] = sec.ssl_endpoint_identification
        if sec.ssl_certificate_location:
            conf["ssl.certificate.location"] = sec.ssl_certificate_location
            conf["ssl.key.location"] = sec.ssl_key_location
            password = ssl_key_password(sec)
            if password:
                conf["ssl.key.password"] = password
    return conf


def ssl_context(sec: KafkaSecurity) -> ssl.SSLContext | None:
    """The TLS context aiokafka and Faust use (None without TLS): the CA (or the system's trust
    store), the client certificate, and the host name check unless endpoint identification is none."""
    check(sec)
    if not sec.uses_tls:
        return None
    from aiokafka.helpers import create_ssl_context

    ctx = create_ssl_context(cafile=sec.ssl_ca_location, certfile=sec.ssl_certificate_location,
                             keyfile=sec.ssl_key_location, password=ssl_key_password(sec) or None)
    if sec.ssl_endpoint_identification == "none":
        ctx.check_hostname = False  # the chain is still verified against the CA
    return ctx


def aiokafka_config(sec: KafkaSecurity) -> dict[str, Any]:
    """``AIOKafkaConsumer``/``AIOKafkaProducer`` keyword arguments for ``sec`` (aiokafka names SCRAM's
    credentials ``sasl_plain_*`` too)."""
    check(sec)
    conf: dict[str, Any] = {"security_protocol": sec.protocol}
    if sec.uses_tls:
        conf["ssl_context"] = ssl_context(sec)
    if sec.uses_sasl:
        conf.update({"sasl_mechanism": sec.sasl_mechanism, "sasl_plain_username": sec.sasl_username,
                     "sasl_plain_password": sasl_password(sec)})
    return conf


def faust_config(sec: KafkaSecurity) -> dict[str, Any]:
    """``faust.App`` settings for ``sec``: ``broker_credentials`` (Faust hands them to every aiokafka
    client it builds: consumer, producer, topic creation); ``{}`` for PLAINTEXT."""
    check(sec)
    if sec.protocol == "PLAINTEXT":
        return {}
    import faust

    ctx = ssl_context(sec)
    if sec.uses_sasl:
        return {"broker_credentials": faust.SASLCredentials(
            username=sec.sasl_username, password=sasl_password(sec), ssl_context=ctx, mechanism=sec.sasl_mechanism)}
    return {"broker_credentials": faust.SSLCredentials(ctx)}


# ---------------------------------------------------------------- broker answers
# librdkafka's error codes (rd_kafka_resp_err_t) for what only the broker can tell
_ERR_SSL, _ERR_AUTHENTICATION = -181, -169


def explain(sec: KafkaSecurity, code: int | None, text: str) -> KafkaSecurityError | None:
    """The setting behind a connection error librdkafka reported (its error code and text, from
    ``error_cb`` or a log line), or None when it is not a TLS/SASL/protocol problem."""
    low = text.lower()
    if "unsupported sasl mechanism" in low or "no shared mechanism" in low or "mechanism handshake failed" in low:
        return KafkaSecurityError("KAFKA_AUTH_FAILED", f"the broker does not offer KAFKA_SASL_MECHANISM="
                                  f"{sec.sasl_mechanism} ({text.strip()})", "KAFKA_SASL_MECHANISM")
    if code == _ERR_AUTHENTICATION or "sasl authentication" in low or "authentication failed" in low:
        return KafkaSecurityError(
            "KAFKA_AUTH_FAILED",
            f"the broker refused the SASL {sec.sasl_mechanism or ''} login of KAFKA_SASL_USERNAME="
            f"{sec.sasl_username!r}: check KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE) and "
            f"KAFKA_SASL_MECHANISM ({text.strip()})", "KAFKA_SASL_PASSWORD")
    if "alert certificate required" in low or "alert bad certificate" in low or "alert unknown ca" in low:
        have = f"the certificate in KAFKA_SSL_CERTIFICATE_LOCATION={sec.ssl_certificate_location} is not one it " \
               "trusts" if sec.ssl_certificate_location else "none was given: set KAFKA_SSL_CERTIFICATE_LOCATION " \
               "and KAFKA_SSL_KEY_LOCATION"
        return KafkaSecurityError("KAFKA_TLS_FAILED", f"the broker requires a client certificate (mutual TLS) and "
                                  f"{have} ({text.strip()})", "KAFKA_SSL_CERTIFICATE_LOCATION")
    if code == _ERR_SSL or "ssl handshake failed" in low or "certificate verify failed" in low:
        if "hostname" in low or "host name" in low or "ip address mismatch" in low:
            return _name_mismatch(text)
        where = f"the CA in KAFKA_SSL_CA_LOCATION={sec.ssl_ca_location}" if sec.ssl_ca_location else \
            "the system's trust store (set KAFKA_SSL_CA_LOCATION to the CA that signed it)"
        return KafkaSecurityError("KAFKA_TLS_FAILED", f"TLS with the broker failed: its certificate is not "
                                  f"trusted by {where} ({text.strip()})", "KAFKA_SSL_CA_LOCATION")
    if "security.protocol" in low or (not sec.uses_tls and "ssl" in low and "handshake" in low):
        return KafkaSecurityError("KAFKA_PROTOCOL_MISMATCH", f"the broker does not speak KAFKA_SECURITY_PROTOCOL="
                                  f"{sec.protocol} on this listener ({text.strip()})", "KAFKA_SECURITY_PROTOCOL")
    return None


def _name_mismatch(text: str) -> KafkaSecurityError:
    return KafkaSecurityError(
        "KAFKA_TLS_FAILED", "the broker's certificate is signed by the CA but does not name the host connected to "
        "(KAFKA_BOOTSTRAP_SERVERS or a broker's advertised listener): connect by a name the certificate holds, or "
        f"set KAFKA_SSL_ENDPOINT_IDENTIFICATION=none to check only the CA ({text.strip()})",
        "KAFKA_SSL_ENDPOINT_IDENTIFICATION")


def _chain_trusted(address: str, sec: KafkaSecurity, timeout: float) -> bool:
    """Whether the broker at ``address`` (host:port) presents a certificate chain the CA trusts, its
    name aside: librdkafka reports a wrong CA and a name mismatch with the same words."""
    import socket

    host, _, port = address.strip().rpartition(":")
    ctx = ssl.create_default_context(cafile=sec.ssl_ca_location)
    ctx.check_hostname = False
    if sec.ssl_certificate_location:
        ctx.load_cert_chain(sec.ssl_certificate_location, sec.ssl_key_location, ssl_key_password(sec) or None)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=host.strip("[]")):
            return True
    except (OSError, ValueError):
        return False


def preflight(bootstrap_servers: str, sec: KafkaSecurity, timeout: float,
              new_admin: Callable[[dict[str, Any]], Any]) -> int:
    """Ask the brokers for metadata with ``sec``; return the number of brokers. Raise
    :class:`KafkaSecurityError` as soon as librdkafka reports a TLS/SASL failure (naming the
    setting), or :class:`KafkaUnreachable` after ``timeout`` seconds without an answer. For the
    tools before they start, and for a worker at start (docs/deploy.md "TLS and SASL").
    ``new_admin``: builds the librdkafka AdminClient for ``sec`` with these extra config keys
    (processor/runtime/clients.py's ``preflight`` passes its own constructor)."""
    from confluent_kafka import KafkaException

    check(sec)
    seen: list[tuple[KafkaSecurityError, str]] = []
    lock = threading.Lock()

    def on_error(err: Any) -> None:
        found = explain(sec, err.code(), err.str())
        if found is not None:
            with lock:
                seen.append((found, err.str()))

    admin = new_admin({"socket.timeout.ms": int(timeout * 1000), "error_cb": on_error})
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            return len(admin.list_topics(timeout=min(0.5, max(0.05, deadline - time.monotonic()))).brokers)
        except KafkaException as exc:
            last = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc)
        admin.poll(0)  # serves error_cb
        with lock:
            found, text = seen[0] if seen else (None, "")
        if found is not None:
            if found.path == "KAFKA_SSL_CA_LOCATION" and sec.ssl_endpoint_identification == "https" and \
                    _chain_trusted(bootstrap_servers.split(",")[0], sec, min(5.0, timeout)):
                raise _name_mismatch(text)
            raise found
        if time.monotonic() >= deadline:
            raise KafkaUnreachable(f"Kafka at {bootstrap_servers} did not answer within {timeout:.0f} s ({last}); "
                                   "is the broker running? (KAFKA_BOOTSTRAP_SERVERS; and does this listener "
                                   f"speak KAFKA_SECURITY_PROTOCOL={sec.protocol}?)")


__all__ = ["KafkaSecurityError", "KafkaUnreachable", "aiokafka_config", "check", "explain", "faust_config",
           "librdkafka_config", "preflight", "ssl_context", "PLAINTEXT"]
