"""KAFKA_SECURITY_PROTOCOL & co: read from the environment, checked (an error names the variable to
fix), and mapped onto librdkafka, aiokafka and Faust (processor/kafka_security.py).

The broker side (a real TLS terminator, a broker refusing a SASL login) is in
tests/integration/test_kafka_tls.py; here the files are real PEM files from a throwaway CA.
"""

from __future__ import annotations

import ssl
from dataclasses import replace
from pathlib import Path

import pytest

from processor import kafka_security as ks
from processor.config import KafkaSecurity, Settings
from tests.support.tls_broker import KEY_PASSWORD, Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def mtls(pki: Pki, **kw: object) -> KafkaSecurity:
    return replace(KafkaSecurity(protocol="SSL", ssl_ca_location=str(pki.ca),
                                 ssl_certificate_location=str(pki.client_cert), ssl_key_location=str(pki.client_key),
                                 ssl_key_password_file=str(pki.client_key_password_file)), **kw)


def test_settings_read_every_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "KAFKA_SASL_MECHANISM": "scram-sha-512",
           "KAFKA_SASL_USERNAME": "svc", "KAFKA_SASL_PASSWORD_FILE": "/run/secrets/pw",
           "KAFKA_SSL_CA_LOCATION": "/etc/ca.pem", "KAFKA_SSL_CERTIFICATE_LOCATION": "/etc/c.pem",
           "KAFKA_SSL_KEY_LOCATION": "/etc/c.key", "KAFKA_SSL_KEY_PASSWORD": "kp",
           "KAFKA_SSL_ENDPOINT_IDENTIFICATION": "NONE"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert Settings.from_env().kafka_security == KafkaSecurity(
        protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="svc", sasl_password_file="/run/secrets/pw",
        ssl_ca_location="/etc/ca.pem", ssl_certificate_location="/etc/c.pem", ssl_key_location="/etc/c.key",
        ssl_key_password="kp", ssl_endpoint_identification="none")
    assert "kp" not in repr(Settings.from_env())  # passwords stay out of logs


def test_plaintext_adds_nothing_to_a_client() -> None:
    assert ks.librdkafka_config(KafkaSecurity()) == {}
    assert ks.faust_config(KafkaSecurity()) == {}
    assert ks.aiokafka_config(KafkaSecurity()) == {"security_protocol": "PLAINTEXT"}


def test_mutual_tls_for_librdkafka(pki: Pki) -> None:
    assert ks.librdkafka_config(mtls(pki)) == {
        "security.protocol": "ssl", "ssl.ca.location": str(pki.ca), "ssl.endpoint.identification.algorithm": "https",
        "ssl.certificate.location": str(pki.client_cert), "ssl.key.location": str(pki.client_key),
        "ssl.key.password": KEY_PASSWORD}  # the file's trailing newline is not part of the password
    assert ks.librdkafka_config(KafkaSecurity(protocol="SSL"))["ssl.ca.location"] == "probe"  # system trust store


def test_sasl_scram_over_tls_for_each_library(pki: Pki, tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    sec = KafkaSecurity(protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256", sasl_username="svc",
                        sasl_password_file=str(pw), ssl_ca_location=str(pki.ca), ssl_endpoint_identification="none")
    assert ks.librdkafka_config(sec) == {
        "security.protocol": "sasl_ssl", "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "svc",
        "sasl.password": "s3cret", "ssl.ca.location": str(pki.ca), "ssl.endpoint.identification.algorithm": "none"}
    aio = ks.aiokafka_config(sec)
    ctx = aio.pop("ssl_context")
    assert aio == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256",
                   "sasl_plain_username": "svc", "sasl_plain_password": "s3cret"}
    assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode == ssl.CERT_REQUIRED and not ctx.check_hostname
    assert [dict(c["subject"][0])["commonName"] for c in ctx.get_ca_certs()] == ["segment-automation test CA"]
    creds = ks.faust_config(sec)["broker_credentials"]
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    faust_auth = credentials_to_aiokafka_auth(creds)  # what Faust hands every aiokafka client it builds
    assert faust_auth["security_protocol"] == "SASL_SSL" and faust_auth["sasl_mechanism"] == "SCRAM-SHA-256"
    assert (faust_auth["sasl_plain_username"], faust_auth["sasl_plain_password"]) == ("svc", "s3cret")
    assert faust_auth["ssl_context"].get_ca_certs() == ctx.get_ca_certs()


def test_tls_alone_for_faust_and_aiokafka(pki: Pki) -> None:
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    auth = credentials_to_aiokafka_auth(ks.faust_config(mtls(pki))["broker_credentials"])
    assert auth["security_protocol"] == "SSL" and auth["ssl_context"].check_hostname
    assert ks.aiokafka_config(mtls(pki))["security_protocol"] == "SSL"


def _wrong(pki: Pki, tmp_path: Path) -> list[tuple[KafkaSecurity, str, str]]:
    """(settings, the variable the error must name, a word of its message)"""
    not_pem = tmp_path / "not-a-ca.pem"
    not_pem.write_text("hello\n")
    unreadable = tmp_path / "unreadable.pem"
    unreadable.write_bytes(pki.ca.read_bytes())
    unreadable.chmod(0)
    sasl = KafkaSecurity(protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username="u", sasl_password="p")
    return [
        (KafkaSecurity(protocol="TLS"), "KAFKA_SECURITY_PROTOCOL", "PLAINTEXT, SSL"),
        (replace(sasl, sasl_mechanism=None), "KAFKA_SASL_MECHANISM", "needs a mechanism"),
        (replace(sasl, sasl_mechanism="GSSAPI"), "KAFKA_SASL_MECHANISM", "not one of"),
        (replace(sasl, sasl_username=None), "KAFKA_SASL_USERNAME", "username"),
        (replace(sasl, sasl_password=None), "KAFKA_SASL_PASSWORD", "password"),
        (replace(sasl, sasl_password=None, sasl_password_file=str(tmp_path / "missing")), "KAFKA_SASL_PASSWORD_FILE",
         "does not exist"),
        (replace(sasl, sasl_password_file=str(pki.ca)), "KAFKA_SASL_PASSWORD", "both"),
        (KafkaSecurity(sasl_username="u"), "KAFKA_SASL_USERNAME", "does not use SASL"),
        (KafkaSecurity(ssl_ca_location=str(pki.ca)), "KAFKA_SSL_CA_LOCATION", "does not use TLS"),
        (mtls(pki, ssl_ca_location=str(tmp_path / "nope.pem")), "KAFKA_SSL_CA_LOCATION", "does not exist"),
        (mtls(pki, ssl_ca_location=str(not_pem)), "KAFKA_SSL_CA_LOCATION", "no PEM CA certificate"),
        (mtls(pki, ssl_endpoint_identification="yes"), "KAFKA_SSL_ENDPOINT_IDENTIFICATION", "https, none"),
        (mtls(pki, ssl_key_location=None), "KAFKA_SSL_KEY_LOCATION", "both"),
        (mtls(pki, ssl_key_password_file=None), "KAFKA_SSL_KEY_PASSWORD", "encrypted"),
        (mtls(pki, ssl_key_password_file=None, ssl_key_password="wrong"), "KAFKA_SSL_KEY_PASSWORD", "does not decrypt"),
        (mtls(pki, ssl_key_location=str(pki.server_key), ssl_key_password_file=None), "KAFKA_SSL_KEY_LOCATION",
         "is not the key"),
    ] + ([(mtls(pki, ssl_ca_location=str(unreadable)), "KAFKA_SSL_CA_LOCATION", "cannot be read")]
         if not _root() else [])


def _root() -> bool:
    import os

    return os.geteuid() == 0  # root reads a file of mode 000


def test_a_wrong_setting_is_refused_naming_its_variable(pki: Pki, tmp_path: Path) -> None:
    for sec, variable, words in _wrong(pki, tmp_path):
        for build in (ks.librdkafka_config, ks.aiokafka_config, ks.faust_config):
            with pytest.raises(ks.KafkaSecurityError) as exc:
                build(sec)
            assert (exc.value.code, exc.value.path) == ("KAFKA_SECURITY_INVALID", variable), (sec, exc.value)
            assert words in exc.value.message, exc.value.message


@pytest.mark.parametrize("code, text, variable", [
    (-181, "ssl://b:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: "
           "broker certificate could not be verified", "KAFKA_SSL_CA_LOCATION"),
    (-195, "ssl://b:9093/bootstrap: Receive failed: error:0A00045C:SSL routines::tlsv13 alert certificate required",
     "KAFKA_SSL_CERTIFICATE_LOCATION"),
    (-169, "sasl_ssl://b:9093/bootstrap: SASL authentication error: Authentication failed during authentication due "
           "to invalid credentials with SASL mechanism SCRAM-SHA-512", "KAFKA_SASL_PASSWORD"),
    (-195, "sasl_plaintext://b:9092/bootstrap: SASL PLAIN mechanism handshake failed: Broker: Unsupported SASL "
           "mechanism: broker's supported mechanisms: SCRAM-SHA-512", "KAFKA_SASL_MECHANISM"),
])
def test_broker_refusals_name_the_setting(code: int, text: str, variable: str) -> None:
    found = ks.explain(KafkaSecurity(protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="u",
                                     sasl_password="p"), code, text)
    assert found is not None and found.path == variable, found


def test_a_plain_connection_failure_is_no_security_error() -> None:
    assert ks.explain(KafkaSecurity(), -195, "b:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: "
                      "Connection refused") is None
