"""A test double of Confluent Schema Registry's REST API, for worker and tool subprocesses.

confluent-kafka's ``mock://`` registry lives in one process; a worker or a CLI run in a
subprocess needs one it reaches over HTTP. No real registry runs here (no Docker; Karapace needs
a Kafka of its own and pins its own aiokafka), so this serves the part of the documented API
(docs.confluent.io, "Schema Registry API Reference") that clients use, with its documented
behaviour:

* ``POST /subjects/{subject}/versions`` ``{"schema", "schemaType"?, "references"?}`` -> ``{"id"}``:
  the same schema again returns its id (ids are global: one schema, one id, in every subject); a
  schema incompatible with the subject's versions under its compatibility level is ``409``
  (error_code 409); one that is not valid Avro ``422`` (42201).
* ``POST /subjects/{subject}`` (lookup) -> ``{"subject", "id", "version", "schema"}``; ``404``
  40401 (subject not found) or 40403 (schema not found).
* ``GET /schemas/ids/{id}`` -> ``{"schema"}`` (``schemaType`` only when not AVRO); ``404`` 40403.
* ``PUT /config/{subject}`` ``{"compatibility"}`` -> the same; ``GET /config/{subject}`` ->
  ``{"compatibilityLevel"}`` (``404`` 40408 when the subject has none set);
  ``GET /subjects``, ``GET /subjects/{subject}/versions``, ``.../versions/latest``.
* HTTP basic auth when a user is given (``401`` error_code 401 otherwise); JSON answers with
  ``Content-Type: application/vnd.schemaregistry.v1+json``.

Compatibility (the default level is BACKWARD, as Confluent's): ``BACKWARD`` = the new schema
reads data of the latest version, ``FORWARD`` = the latest reads the new one's, ``FULL`` both;
``_TRANSITIVE`` against every version; ``NONE`` nothing. "Reads" is checked by fastavro schema
resolution on records generated from the writer schema (every field, symbol and branch:
tests/support/avro_evolution.py).

``down()`` makes it answer 503 (a registry that is unavailable) until ``up()``.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import fastavro

from processor.contract.schemas import _strip_logical
from tests.support.avro_evolution import _read, _write, samples

CT = "application/vnd.schemaregistry.v1+json"
LEVELS = {"NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE"}


def _reads(reader: dict[str, Any], writer: dict[str, Any]) -> bool:
    w, r = fastavro.parse_schema(_strip_logical(writer)), fastavro.parse_schema(_strip_logical(reader))
    try:
        for rec in samples(_strip_logical(writer)):
            _read(_write(w, rec), w, r)
    except Exception:  # noqa: BLE001 - any resolution failure: not readable
        return False
    return True


class _Error(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        self.status, self.code, self.message = status, code, message


class SchemaRegistryDouble:
    def __init__(self, user: str | None = None, password: str | None = None) -> None:
        self.auth = f"{user}:{password}" if user else None
        self.schemas: list[tuple[str, str]] = []  # id - 1 -> (canonical JSON text, schemaType)
        self.subjects: dict[str, list[int]] = {}  # subject -> schema ids by version
        self.config: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.unavailable = False
        self._lock = threading.Lock()
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    status, answer = double.handle(method, self.path, body, self.headers.get("Authorization"))
                except _Error as err:
                    status, answer = err.status, {"error_code": err.code, "message": err.message}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", CT)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_PUT(self) -> None:
                self._serve("PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="schema-registry-double", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "SchemaRegistryDouble":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def down(self) -> None:
        self.unavailable = True

    def up(self) -> None:
        self.unavailable = False

    # ------------------------------------------------------------------ the API
    def handle(self, method: str, raw_path: str, body: bytes, authorization: str | None) -> tuple[int, Any]:
        path = raw_path.split("?", 1)[0]
        with self._lock:
            self.requests.append((method, path))
        if self.unavailable:
            raise _Error(503, 50003, "Error while forwarding the request to the leader (unavailable)")
        if self.auth and authorization != "Basic " + base64.b64encode(self.auth.encode()).decode():
            raise _Error(401, 401, "Unauthorized")
        with self._lock:
            if m := re.fullmatch(r"/subjects/([^/]+)/versions", path):
                if method == "POST":
                    return 200, {"id": self._register(_unquote(m[1]), json.loads(body))}
                return 200, self._versions(_unquote(m[1]))
            if m := re.fullmatch(r"/subjects/([^/]+)/versions/latest", path):
                subject = _unquote(m[1])
                versions = self._versions(subject)
                sid = self.subjects[subject][-1]
                return 200, {"subject": subject, "version": versions[-1], "id": sid, "schema": self.schemas[sid - 1][0]}
            if (m := re.fullmatch(r"/subjects/([^/]+)", path)) and method == "POST":
                return 200, self._lookup(_unquote(m[1]), json.loads(body))
            if path == "/subjects":
                return 200, sorted(self.subjects)
            if m := re.fullmatch(r"/schemas/ids/(\d+)", path):
                sid = int(m[1])
                if not 0 < sid <= len(self.schemas):
                    raise _Error(404, 40403, "Schema not found")
                text, kind = self.schemas[sid - 1]
                return 200, {"schema": text, **({"schemaType": kind} if kind != "AVRO" else {})}
            if m := re.fullmatch(r"/config/([^/]+)", path):
                subject = _unquote(m[1])
                if method == "PUT":
                    level = str(json.loads(body).get("compatibility", "")).upper()
                    if level not in LEVELS:
                        raise _Error(422, 42203, f"Invalid compatibility level {level}")
                    self.config[subject] = level
                    return 200, {"compatibility": level}
                if subject not in self.config:
                    raise _Error(404, 40408, f"Subject '{subject}' does not have subject-level compatibility "
                                 "configured")
                return 200, {"compatibilityLevel": self.config[subject]}
        raise _Error(404, 404, "HTTP 404 Not Found")

    def _versions(self, subject: str) -> list[int]:
        if subject not in self.subjects:
            raise _Error(404, 40401, f"Subject '{subject}' not found.")
        return list(range(1, len(self.subjects[subject]) + 1))

    @staticmethod
    def _canonical(req: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
        kind = req.get("schemaType", "AVRO") or "AVRO"
        try:
            parsed = json.loads(req["schema"])
            fastavro.parse_schema(_strip_logical(parsed))
        except Exception as exc:  # noqa: BLE001
            raise _Error(422, 42201, f"Invalid schema: {exc}") from None
        return json.dumps(parsed, sort_keys=True, separators=(",", ":")), kind, parsed

    def _register(self, subject: str, req: dict[str, Any]) -> int:
        text, kind, parsed = self._canonical(req)
        ids = self.subjects.get(subject, [])
        for sid in ids:
            if self.schemas[sid - 1][0] == text:
                return sid
        level = self.config.get(subject, "BACKWARD")
        older = [json.loads(self.schemas[sid - 1][0]) for sid in ids]
        against = older if level.endswith("TRANSITIVE") else older[-1:]
        for old in against:
            back = _reads(parsed, old) if level.startswith(("BACKWARD", "FULL")) else True
            fwd = _reads(old, parsed) if level.startswith(("FORWARD", "FULL")) else True
            if not (back and fwd):
                raise _Error(409, 409, f"Schema being registered is incompatible with an earlier schema for subject "
                             f"\"{subject}\" (compatibility {level})")
        existing = [i for i, (t, k) in enumerate(self.schemas, 1) if t == text and k == kind]
        sid = existing[0] if existing else len(self.schemas) + 1
        if not existing:
            self.schemas.append((text, kind))
        self.subjects.setdefault(subject, []).append(sid)
        return sid

    def _lookup(self, subject: str, req: dict[str, Any]) -> dict[str, Any]:
        if subject not in self.subjects:
            raise _Error(404, 40401, f"Subject '{subject}' not found.")
        text, _, _ = self._canonical(req)
        for version, sid in enumerate(self.subjects[subject], 1):
            if self.schemas[sid - 1][0] == text:
                return {"subject": subject, "version": version, "id": sid, "schema": self.schemas[sid - 1][0]}
        raise _Error(404, 40403, "Schema not found")


def _unquote(s: str) -> str:
    from urllib.parse import unquote

    return unquote(s)
