"""A small client for the admin HTTP API (used by the CLI's admin commands)."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from processor.errors import ProcessorError


def seg(value: str) -> str:
    """An id as one URL path segment: every reserved character quoted, '/' included (a user id
    "a/zzz" must not become two segments, "r?x" must not start a query)."""
    return quote(str(value), safe="")


@dataclass(frozen=True)
class AdminClient:
    base_url: str
    token: str

    @classmethod
    def from_env(cls, site: str, user: str = "cli") -> "AdminClient":
        base = os.environ.get("API_URL") or f"http://127.0.0.1:{os.environ.get('WEB_PORT', '6066')}"
        token = os.environ.get("ADMIN_TOKEN")
        if not token:
            secret = os.environ.get("ADMIN_JWT_SECRET")
            if not secret:
                raise ProcessorError("NO_CREDENTIALS", "set ADMIN_TOKEN (a JWT) or ADMIN_JWT_SECRET to mint one")
            from processor.api.auth import make_token

            token = make_token(secret, user, site, ["site_admin"], ttl_s=900)
        return cls(base.rstrip("/"), token)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, {"code": f"HTTP_{e.code}", "message": raw.decode(errors="replace")}
        except urllib.error.URLError as e:
            raise ProcessorError("API_UNREACHABLE", f"{self.base_url}: {e.reason}; is a worker running? "
                                 "(set API_URL)") from None

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, data = self.call(method, path, body)
        if status >= 400:
            err = data if isinstance(data, dict) else {}
            raise ProcessorError(err.get("code", f"HTTP_{status}"), err.get("message", str(data)), err.get("path", ""))
        return data

    def wait_command(self, site: str, command_id: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.ok("GET", f"/sites/{seg(site)}/commands/{seg(command_id)}")
            if st["status"] != "PENDING":
                return st
            time.sleep(0.2)
        return {"command_id": command_id, "status": "PENDING"}
