"""processor/members_cli.py: the CLI's CSV export copies the streamed body to a file, and a body
the server cut short (chunked, closed before the last chunk) is an error that leaves no file.

A small HTTP server on loopback stands in for a worker: it answers exactly what the worker's
export sends on the wire (processor/http/people.py), complete or cut short.
"""

from __future__ import annotations

import http.server
import threading
from pathlib import Path
from typing import Iterator

import pytest

from processor.admin_client import AdminClient
from processor.errors import ProcessorError
from processor.members_cli import export_csv

BODY = "\ufeffuser_id,name,email,member_since_utc,matched_rule_ids\r\n".encode() + b"".join(
    f"u{i:04d},Name {i},u{i}@example.org,2026-12-05 10:00:00,r\r\n".encode() for i in range(3000))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    cut = False

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.headers.get("Authorization") != "Bearer tok":
            body = b'{"code": "UNAUTHENTICATED", "message": "no token"}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/csv; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        half = len(BODY) // 2
        for part in (BODY[:half], BODY[half:]):
            self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            if self.cut:  # the worker closes the connection before the terminating chunk
                self.wfile.flush()
                self.close_connection = True
                return
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[Handler]]]:
    handler = type("H", (Handler,), {})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", handler
    finally:
        srv.shutdown()
        srv.server_close()


def test_the_whole_body_lands_in_the_file(server: tuple[str, type[Handler]], tmp_path: Path) -> None:
    url, _ = server
    out = tmp_path / "m.csv"
    assert export_csv(AdminClient(url, "tok"), "s", "seg", out) == len(BODY)
    assert out.read_bytes() == BODY
    assert [p.name for p in tmp_path.iterdir()] == ["m.csv"]


def test_a_body_cut_short_is_an_error_and_leaves_no_file(server: tuple[str, type[Handler]], tmp_path: Path) -> None:
    url, handler = server
    handler.cut = True
    out = tmp_path / "m.csv"
    with pytest.raises(ProcessorError) as err:
        export_csv(AdminClient(url, "tok"), "s", "seg", out)
    assert err.value.code == "API_UNREACHABLE" and "stopped after" in err.value.message
    assert list(tmp_path.iterdir()) == []


def test_a_refusal_is_its_code(server: tuple[str, type[Handler]], tmp_path: Path) -> None:
    url, _ = server
    with pytest.raises(ProcessorError) as err:
        export_csv(AdminClient(url, "wrong"), "s", "seg", tmp_path / "m.csv")
    assert err.value.code == "UNAUTHENTICATED"
    assert list(tmp_path.iterdir()) == []
