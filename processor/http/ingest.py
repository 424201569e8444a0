"""``POST /sites/{site}/ingest/users``, user snapshots over HTTP for bridges that cannot
speak Kafka and Avro (the Moodle plugin, scripts). Contract: /work INGEST_CONTRACT.md, docs/api.md.

Each record becomes a ``UserEvent`` validated exactly as the topic validates it (the record is
encoded and then decoded with ``processor.contract.codec``, so the same limits and codes
apply). Valid records are produced to the user-events topic (keyed ``site:user``, the workers'
partitioner, ``acks=all``); the answer is sent only after Kafka acknowledged every one of them,
so ACCEPTED means durable. If the broker fails any of them the whole request is ``503
BROKER_UNAVAILABLE`` with ``Retry-After`` and nothing is reported accepted: the bridge resends,
and the processor drops the duplicates by ``event_id``. A record is never accepted and then dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web as aioweb

from processor.api.auth import INGEST
from processor.api.errors import ApiError
from processor.contract.codec import decode_user_event, encode_user_event, user_event_key
from processor.contract.exceptions import ContractError
from processor.contract.models import UserEvent

if TYPE_CHECKING:
    from processor.http.api import Api

log = logging.getLogger("processor.api.ingest")

MAX_BODY = 256 * 1024
MAX_RECORDS = 500
LONG_MIN, LONG_MAX = -(2 ** 63), 2 ** 63 - 1
RECORD_KEYS = {"op", "user_id", "event_id", "occurred_at", "event_type", "profile"}
DELIVERY_TIMEOUT_S = 15.0
RETRY_AFTER_S = 5


@dataclass(frozen=True)
class Rejection:
    code: str
    path: str
    message: str


def _reject(code: str, path: str, message: str) -> Rejection:
    return Rejection(code, path, message)


def _check_value(value: Any, path: str) -> Rejection | None:
    """A profile value the topic can carry: null, string, integer (64-bit), float, boolean, or a
    list of strings."""
    if value is None or isinstance(value, (str, bool, float)):
        return None
    if isinstance(value, int):
        if not LONG_MIN <= value <= LONG_MAX:
            return _reject("INVALID_VALUE", path, "integers must fit in 64 bits (datetimes are epoch seconds)")
        return None
    if isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, str):
                return _reject("INVALID_VALUE", f"{path}[{i}]", "multi-valued fields are arrays of strings")
        return None
    return _reject("INVALID_VALUE", path, "a profile value is a string, number, boolean, null or an array of "
                   "strings (not an object)")


def parse_record(i: int, rec: Any, site_id: str) -> UserEvent | Rejection:
    """One record of the request -> the ``UserEvent`` it stands for, or why it is refused (pure)."""
    at = f"$.records[{i}]"
    if not isinstance(rec, dict):
        return _reject("INVALID_RECORD", at, "each record is an object {op, user_id, event_id, occurred_at, ...}")
    extra = sorted(set(rec) - RECORD_KEYS)
    if extra:
        return _reject("INVALID_FIELD", f"{at}.{extra[0]}", f"unknown field {extra[0]!r}; a record has "
                       f"{', '.join(sorted(RECORD_KEYS))}")
    op = rec.get("op")
    if op not in ("upsert", "delete"):
        return _reject("INVALID_FIELD", f"{at}.op", "op must be 'upsert' or 'delete'")
    for key in ("user_id", "event_id"):
        v = rec.get(key)
        if not isinstance(v, str) or not v.strip():
            return _reject("INVALID_ID", f"{at}.{key}", f"{key} must be a non-empty string")
    occurred = rec.get("occurred_at")
    if isinstance(occurred, bool) or not isinstance(occurred, int) or not 0 <= occurred <= LONG_MAX:
        return _reject("INVALID_FIELD", f"{at}.occurred_at", "occurred_at must be epoch milliseconds (an integer)")
    etype = rec.get("event_type")
    if op == "delete":
        if etype not in (None, "USER_DELETED"):
            return _reject("INVALID_FIELD", f"{at}.event_type", "a delete is USER_DELETED (or leave event_type out)")
        if rec.get("profile") not in (None, {}):
            return _reject("INVALID_FIELD", f"{at}.profile", "a delete carries no profile")
        etype, profile = "USER_DELETED", {}
    else:
        etype = etype or "USER_UPDATED"
        if etype not in ("USER_CREATED", "USER_UPDATED"):
            return _reject("INVALID_FIELD", f"{at}.event_type", "an upsert is USER_CREATED or USER_UPDATED")
        profile = rec.get("profile")
        if not isinstance(profile, dict):
            return _reject("INVALID_FIELD", f"{at}.profile", "an upsert needs profile: an object of field -> value")
        for name, value in profile.items():
            bad = _check_value(value, f"{at}.profile.{name}")
            if bad:
                return bad
    ev = UserEvent(rec["event_id"], etype, site_id, rec["user_id"], occurred, profile)
    try:  # the topic's own validation: what a worker would dead-letter is refused here
        decode_user_event(user_event_key(site_id, ev.user_id), encode_user_event(ev))
    except ContractError as err:
        code = "INVALID_ID" if err.code == "EMPTY_ID" else err.code
        return _reject(code, at + err.path[1:] if err.path.startswith("$") else at, err.message)
    except (ValueError, TypeError, OverflowError) as exc:
        return _reject("INVALID_VALUE", f"{at}.profile", f"the profile cannot be encoded: {exc}"[:300])
    return ev


def parse_body(raw: bytes) -> list[Any]:
    """The request's ``records`` list, or a whole-request 4xx."""
    if len(raw) > MAX_BODY:
        raise ApiError(413, "BODY_TOO_LARGE", f"request body is larger than {MAX_BODY // 1024} KiB; send fewer "
                       "records per request")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "INVALID_JSON", "request body is not valid JSON", "$") from None
    if not isinstance(body, dict):
        raise ApiError(400, "INVALID_BODY", "request body must be a JSON object {\"records\": [...]}", "$")
    extra = sorted(set(body) - {"records"})
    if extra:
        raise ApiError(400, "INVALID_FIELD", f"unknown field {extra[0]!r}", f"$.{extra[0]}")
    records = body.get("records")
    if not isinstance(records, list):
        raise ApiError(400, "INVALID_FIELD", "records must be an array", "$.records")
    if len(records) > MAX_RECORDS:
        raise ApiError(413, "TOO_MANY_RECORDS", f"at most {MAX_RECORDS} records per request, got {len(records)}",
                       "$.records")
    return records


class _Delivery:
    """Delivery reports of one request's records (called on the flushing thread)."""

    def __init__(self, n: int) -> None:
        self.errors: list[str] = []
        self.acked = 0
        self.lock = threading.Lock()

    def __call__(self, err: Any, msg: Any) -> None:
        with self.lock:
            if err is None:
                self.acked += 1
            else:
                self.errors.append(str(err))


class Ingest:
    """The handler and its producer (created on first use, shared by requests)."""

    def __init__(self, api: "Api") -> None:
        self.api = api
        self._producer: Any = None
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ingest-flush")
        self.delivery_timeout_s = DELIVERY_TIMEOUT_S

    def routes(self) -> list[tuple[str, str, Any]]:
        return [("POST", "/sites/{site}/ingest/users", self.ingest_users)]

    def _client(self) -> Any:
        """The runtime's ingest producer (``acks=all``, the workers' partitioner, one request in
        flight so a user's records stay in order), giving up on a record after the delivery timeout."""
        if self._producer is None:
            self._producer = self.api.model.ingest_producer(self.delivery_timeout_s)
        return self._producer

    def _wait(self, client: Any, report: _Delivery, n: int) -> None:
        """Flush, then serve delivery reports until all ``n`` arrived (another request's flush on
        the other thread may be the one that runs some of them) or the time is up."""
        deadline = time.monotonic() + self.delivery_timeout_s + 5
        client.flush(self.delivery_timeout_s + 5)
        while report.acked + len(report.errors) < n and time.monotonic() < deadline:
            client.poll(0.05)

    async def _produce(self, events: list[UserEvent]) -> None:
        """Produce and wait for every acknowledgement; 503 if any record was not acknowledged."""
        if not events:
            return
        client = self._client()
        topic = self.api.settings.topics.user_events
        report = _Delivery(len(events))
        loop = asyncio.get_running_loop()
        for ev in events:
            while True:
                try:
                    client.produce(topic, encode_user_event(ev), user_event_key(ev.site_id, ev.user_id),
                                   on_delivery=report)
                    break
                except BufferError:
                    await loop.run_in_executor(self._executor, client.flush, 1.0)
        await loop.run_in_executor(self._executor, self._wait, client, report, len(events))
        if report.errors or report.acked < len(events):
            detail = report.errors[0] if report.errors else f"{len(events) - report.acked} not acknowledged in time"
            log.warning("ingest: broker did not acknowledge %d of %d records: %s", len(events) - report.acked,
                        len(events), detail)
            raise ApiError(503, "BROKER_UNAVAILABLE", f"Kafka did not acknowledge the records ({detail}); nothing "
                           f"was accepted, resend the request in {RETRY_AFTER_S}s")

    @staticmethod
    async def _read_body(request: aioweb.Request) -> bytes:
        """The whole body, up to MAX_BODY + 1 bytes (``content.read(n)`` returns what has arrived so
        far, which for a large body sent in several segments is only a part of it)."""
        parts: list[bytes] = []
        total = 0
        while total <= MAX_BODY:
            chunk = await request.content.read(64 * 1024)
            if not chunk:
                break
            parts.append(chunk)
            total += len(chunk)
        return b"".join(parts)

    async def ingest_users(self, request: aioweb.Request) -> aioweb.Response:
        self.api.principal(request, INGEST)
        site = request.match_info["site"]
        if request.content_length and request.content_length > MAX_BODY:
            raise ApiError(413, "BODY_TOO_LARGE", f"request body is larger than {MAX_BODY // 1024} KiB")
        records = parse_body(await self._read_body(request))
        parsed = [parse_record(i, r, site) for i, r in enumerate(records)]
        events = [p for p in parsed if isinstance(p, UserEvent)]
        try:
            await self._produce(events)
        except ApiError as err:
            return aioweb.json_response(err.body(), status=err.status, headers={"Retry-After": str(RETRY_AFTER_S)})
        results: list[dict[str, Any]] = []
        for i, (rec, p) in enumerate(zip(records, parsed)):
            eid = rec.get("event_id") if isinstance(rec, dict) and isinstance(rec.get("event_id"), str) else None
            if isinstance(p, UserEvent):
                results.append({"index": i, "event_id": eid, "status": "ACCEPTED"})
            else:
                results.append({"index": i, "event_id": eid, "status": "REJECTED", "code": p.code, "path": p.path,
                                "message": p.message})
        return aioweb.json_response({"accepted": len(events), "rejected": len(records) - len(events),
                                     "results": results})
