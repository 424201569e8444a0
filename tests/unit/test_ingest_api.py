"""The ingest endpoint's validation (the topic's own limits) and its broker-failure answer."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from processor.api.errors import ApiError
from processor.config import Settings
from processor.contract.models import UserEvent
from processor.http.catalog_writes import field_payload, segment_payload
from processor.http.ingest import Ingest, Rejection, parse_body, parse_record


def rec(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {"op": "upsert", "user_id": "42", "event_id": "moodle-1", "occurred_at": 1764800000000,
                               "profile": {"username": "alice", "department": "Sales"}}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not ...}


def test_the_contracts_example_records() -> None:
    up = parse_record(0, rec(event_type="USER_UPDATED", profile={
        "username": "alice", "department": "Sales", "lastaccess": 1764790000, "suspended": False,
        "profile_field_level": "Senior", "interests": ["a", "b"]}), "demo")
    assert up == UserEvent("moodle-1", "USER_UPDATED", "demo", "42", 1764800000000, {
        "username": "alice", "department": "Sales", "lastaccess": 1764790000, "suspended": False,
        "profile_field_level": "Senior", "interests": ["a", "b"]})
    default = parse_record(0, rec(), "demo")
    assert isinstance(default, UserEvent) and default.event_type == "USER_UPDATED"
    gone = parse_record(1, {"op": "delete", "user_id": "43", "event_id": "e2", "occurred_at": 1}, "demo")
    assert gone == UserEvent("e2", "USER_DELETED", "demo", "43", 1, {})


@pytest.mark.parametrize("record,code,path", [
    ("x", "INVALID_RECORD", "$.records[3]"),
    (rec(op="merge"), "INVALID_FIELD", "$.records[3].op"),
    (rec(user_id=""), "INVALID_ID", "$.records[3].user_id"),
    (rec(user_id="   "), "INVALID_ID", "$.records[3].user_id"),
    (rec(user_id=42), "INVALID_ID", "$.records[3].user_id"),
    (rec(event_id=...), "INVALID_ID", "$.records[3].event_id"),
    (rec(user_id="u" * 256), "LIMIT_EXCEEDED", "$.records[3].user_id"),
    (rec(occurred_at="yesterday"), "INVALID_FIELD", "$.records[3].occurred_at"),
    (rec(occurred_at=True), "INVALID_FIELD", "$.records[3].occurred_at"),
    (rec(event_type="USER_DELETED"), "INVALID_FIELD", "$.records[3].event_type"),
    (rec(profile=...), "INVALID_FIELD", "$.records[3].profile"),
    (rec(profile={"a": {"nested": 1}}), "INVALID_VALUE", "$.records[3].profile.a"),
    (rec(profile={"a": [1]}), "INVALID_VALUE", "$.records[3].profile.a[0]"),
    (rec(profile={"a": 2 ** 64}), "INVALID_VALUE", "$.records[3].profile.a"),
    (rec(profile={"a": "x" * (64 * 1024 + 1)}), "LIMIT_EXCEEDED", "$.records[3].profile.a"),
    (rec(profile={f"f{i}": 1 for i in range(501)}), "LIMIT_EXCEEDED", "$.records[3].profile"),
    (rec(profile={"a": ["x"] * 1001}), "LIMIT_EXCEEDED", "$.records[3].profile.a"),
    (rec(shoe_size=44), "INVALID_FIELD", "$.records[3].shoe_size"),
    ({"op": "delete", "user_id": "1", "event_id": "e", "occurred_at": 1, "profile": {"a": 1}}, "INVALID_FIELD",
     "$.records[3].profile"),
])
def test_a_record_the_topic_would_refuse_is_rejected_with_code_and_path(record: object, code: str, path: str) -> None:
    got = parse_record(3, record, "demo")
    assert isinstance(got, Rejection), got
    assert (got.code, got.path) == (code, path)
    assert got.message


@pytest.mark.parametrize("raw,status,code", [
    (b"{", 400, "INVALID_JSON"),
    (b"[]", 400, "INVALID_BODY"),
    (b'{"records": {}}', 400, "INVALID_FIELD"),
    (b'{"records": [], "extra": 1}', 400, "INVALID_FIELD"),
    (json.dumps({"records": [rec()] * 501}).encode(), 413, "TOO_MANY_RECORDS"),
    (b" " * (256 * 1024 + 1), 413, "BODY_TOO_LARGE"),
])
def test_whole_request_problems_are_4xx(raw: bytes, status: int, code: str) -> None:
    with pytest.raises(ApiError) as e:
        parse_body(raw)
    assert (e.value.status, e.value.code) == (status, code)


async def test_an_unreachable_broker_is_503_and_nothing_is_accepted() -> None:
    """A real librdkafka producer against a port nobody listens on: the records are never
    acknowledged, so the request fails as a whole (the bridge keeps them and resends)."""
    from processor.broker import free_port

    settings = Settings(bootstrap_servers=f"127.0.0.1:{free_port()}")
    from processor.runtime.clients import ingest_producer

    model = SimpleNamespace(ingest_producer=lambda timeout_s: ingest_producer(settings, timeout_s))
    api = SimpleNamespace(settings=settings, model=model)
    ingest = Ingest(api)  # type: ignore[arg-type]
    ingest.delivery_timeout_s = 1.0
    ev = parse_record(0, rec(), "demo")
    assert isinstance(ev, UserEvent)
    with pytest.raises(ApiError) as e:
        await ingest._produce([ev])
    assert (e.value.status, e.value.code) == (503, "BROKER_UNAVAILABLE")


def test_catalog_write_bodies() -> None:
    assert segment_payload({"name": "Sales"}, "sales") == {"segment_id": "sales", "name": "Sales"}
    assert field_payload({"name": "Level", "datatype": "MENU", "options": ["Junior", "Senior"]}, "level") == {
        "shortname": "level", "name": "Level", "datatype": "MENU", "options": ["Junior", "Senior"]}
    assert field_payload({"datatype": "CHECKBOX"}, "vip")["name"] == "vip"
    for bad, path in [({"datatype": "menu"}, "$.datatype"), ({"datatype": "MENU", "options": "a,b"}, "$.options"),
                      ({"datatype": "TEXT", "colour": 1}, "$.colour")]:
        with pytest.raises(ApiError) as e:
            field_payload(bad, "x")
        assert (e.value.status, e.value.path) == (400, path)
    with pytest.raises(ApiError):
        segment_payload({}, "s")
