"""The processor's HTTP API as the connector uses it (docs/api.md): reads, ingest, catalog writes.

Configured like the other admin tools: ``API_URL`` (default ``http://127.0.0.1:$WEB_PORT``) and
``ADMIN_TOKEN``, or ``ADMIN_JWT_SECRET`` to mint a short-lived token with the roles the
connector needs (``site_admin`` to read members and profiles, ``system`` to ingest and write
the catalog). 503s (a worker or the broker unavailable) and connection errors are retried.
"""

from __future__ import annotations

import os
import time
from typing import Any, Iterator

import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential_jitter

from processor.errors import ProcessorError

ROLES = ["site_admin", "system"]


class _Retry(Exception):
    pass


class ProcessorApi:
    def __init__(self, base_url: str, token: str, retry_for: float = 120.0, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.retry_for = retry_for
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    @classmethod
    def from_env(cls, site: str) -> "ProcessorApi":
        base = os.environ.get("API_URL") or f"http://127.0.0.1:{os.environ.get('WEB_PORT', '6066')}"
        token = os.environ.get("ADMIN_TOKEN")
        if not token:
            secret = os.environ.get("ADMIN_JWT_SECRET")
            if not secret:
                raise ProcessorError("NO_CREDENTIALS", "set ADMIN_TOKEN (a JWT with roles site_admin and system for "
                                     "this site) or ADMIN_JWT_SECRET to mint one")
            from processor.api.auth import make_token

            token = make_token(secret, "moodle-connector", site, ROLES, ttl_s=6 * 3600)
        return cls(base, token)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        def once() -> tuple[int, Any]:
            try:
                r = self.session.request(method, self.base_url + path, json=body, timeout=self.timeout)
            except requests.RequestException as exc:
                raise _Retry(f"{self.base_url}: {exc}") from None
            if r.status_code == 503:
                raise _Retry(f"{method} {path}: 503 {r.text[:200]}")
            try:
                return r.status_code, r.json()
            except ValueError:
                return r.status_code, {"code": f"HTTP_{r.status_code}", "message": r.text[:300]}

        try:
            return Retrying(retry=retry_if_exception_type(_Retry), reraise=True,
                            wait=wait_exponential_jitter(multiplier=0.2, max=10, jitter=0.3),
                            stop=stop_after_delay(self.retry_for))(once)
        except _Retry as exc:
            raise ProcessorError("API_UNAVAILABLE", f"the processor's API is not answering ({exc}); is a worker "
                                 "running? (API_URL)") from None

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, data = self.call(method, path, body)
        if status >= 400:
            err = data if isinstance(data, dict) else {}
            raise ProcessorError(err.get("code", f"HTTP_{status}"), f"{method} {path}: {err.get('message', data)}",
                                 err.get("path", "$"))
        return data

    # ------------------------------------------------------------------- reads
    def segments(self, site: str) -> list[dict[str, Any]]:
        return list(self.ok("GET", f"/sites/{site}/segments")["segments"])

    def members(self, site: str, segment: str) -> set[str]:
        out: set[str] = set()
        cursor = ""
        while True:
            page = self.ok("GET", f"/sites/{site}/segments/{segment}/members?limit=500"
                           + (f"&cursor={cursor}" if cursor else ""))
            out.update(m["user_id"] for m in page["members"])
            cursor = page["next_cursor"]
            if not cursor:
                return out

    def profiles(self, site: str) -> Iterator[list[dict[str, Any]]]:
        cursor = ""
        while True:
            page = self.ok("GET", f"/sites/{site}/users?limit=500" + (f"&cursor={cursor}" if cursor else ""))
            yield page["users"]
            cursor = page["next_cursor"]
            if not cursor:
                return

    # ------------------------------------------------------------------ writes
    def ingest(self, site: str, records: list[dict[str, Any]]) -> dict[str, Any]:
        return dict(self.ok("POST", f"/sites/{site}/ingest/users", {"records": records}))

    def put_segment(self, site: str, segment: str, name: str) -> str:
        return str(self.ok("PUT", f"/sites/{site}/segments/{segment}", {"name": name})["command_id"])

    def put_field(self, site: str, shortname: str, payload: dict[str, Any]) -> str:
        return str(self.ok("PUT", f"/sites/{site}/fields/{shortname}", payload)["command_id"])

    def wait_commands(self, site: str, ids: list[str], timeout: float = 120.0) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while len(out) < len(ids) and time.monotonic() < deadline:
            for cid in ids:
                if cid not in out:
                    st = self.ok("GET", f"/sites/{site}/commands/{cid}")
                    if st["status"] != "PENDING":
                        out[cid] = st
            if len(out) < len(ids):
                time.sleep(0.2)
        for cid in ids:
            out.setdefault(cid, {"command_id": cid, "status": "PENDING"})
        return out
