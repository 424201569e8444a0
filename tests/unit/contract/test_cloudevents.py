"""The CloudEvents binary-mode headers of a membership change (processor/contract/cloudevents.py):
exact values written out by hand from the Kafka protocol binding and docs/contract.md, checked by
the CloudEvents SDK's own binary-mode parser, and a pure function of the change."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from cloudevents.core.bindings import kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from hypothesis import given
from hypothesis import strategies as st

from processor.contract.cloudevents import headers, rfc3339
from processor.contract.models import MembershipChange


def change(**kw: object) -> MembershipChange:
    base: dict[str, object] = dict(change_id="9f2c4e1a7b3d5f60", site_id="site-1", segment_id="sales.emea",
                                   user_id="u-42", change="ADDED", cause_kind="USER_UPDATED", cause_id="ev-7",
                                   matched_rule_ids=("r1",), occurred_at=1_700_000_000_250,
                                   emitted_at=1_700_000_003_000, evidence=(("dept", '"Sales"'),))
    base.update(kw)
    return MembershipChange(**base)  # type: ignore[arg-type]


def test_every_header_of_a_change_in_order() -> None:
    """1_700_000_000 s is 2023-11-14T22:13:20Z; the event time is the cause's occurred_at, not
    emitted_at; the subject is the user; content-type is the value's media type."""
    assert headers(change()) == [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"9f2c4e1a7b3d5f60"),
        ("ce_source", b"/sites/site-1/segments/sales.emea"),
        ("ce_type", b"lms.segment.membership.changed.v1"),
        ("ce_time", b"2023-11-14T22:13:20.250Z"),
        ("ce_subject", b"u-42"),
        ("content-type", b"application/avro"),
    ]


def test_schema_registry_framing_has_its_own_content_type() -> None:
    framed = dict(headers(change(), "application/vnd.confluent.avro"))
    assert framed["content-type"] == b"application/vnd.confluent.avro"


def test_headers_do_not_depend_on_what_a_re_emission_may_not_keep() -> None:
    """Same change -> same headers; neither the evidence nor emitted_at nor the cause's id is
    read, so nothing that describes the decision rather than the change can move them."""
    first = headers(change())
    assert headers(change()) == first
    assert headers(change(evidence=None, emitted_at=1, cause_id="other", matched_rule_ids=())) == first


def test_values_are_utf8_and_non_ascii_ids_are_percent_encoded_in_the_source() -> None:
    """The binding: header values are UTF-8 strings; the source is a URI-reference, so a segment
    id in another script is percent-encoded (UTF-8) there, while the subject keeps the text."""
    h = dict(headers(change(site_id="Zürich", segment_id="Verkäufer", user_id="josé@example.org")))
    assert h["ce_source"] == b"/sites/Z%C3%BCrich/segments/Verk%C3%A4ufer"
    assert h["ce_subject"] == "josé@example.org".encode("utf-8") == b"jos\xc3\xa9@example.org"


def test_unknown_time_leaves_ce_time_out() -> None:
    """occurred_at 0 is the schema's default (time unknown): ce_time is optional, so it is absent
    rather than 1970-01-01; a time past year 9999 cannot be RFC 3339 and is absent too."""
    assert "ce_time" not in dict(headers(change(occurred_at=0)))
    assert "ce_time" not in dict(headers(change(occurred_at=10**15)))


def test_rfc3339_edges() -> None:
    assert rfc3339(-1) == "1969-12-31T23:59:59.999Z"
    assert rfc3339(1) == "1970-01-01T00:00:00.001Z"
    assert rfc3339(-62_135_596_800_000) == "0001-01-01T00:00:00.000Z"
    assert rfc3339(253_402_300_799_999) == "9999-12-31T23:59:59.999Z"
    assert rfc3339(253_402_300_800_000) is None


@given(st.integers(min_value=-62_135_596_800_000, max_value=253_402_300_799_999).filter(bool))
def test_rfc3339_round_trips_through_the_standard_parser(ms: int) -> None:
    t = rfc3339(ms)
    assert t is not None and t.endswith("Z")
    parsed = datetime.fromisoformat(t)
    assert parsed.utcoffset() == timedelta(0)
    assert (parsed - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(milliseconds=1) == ms


def test_the_cloudevents_sdk_reads_them_as_a_valid_v1_event() -> None:
    """The CloudEvents Python SDK's binary-mode parser (which validates required attributes and
    parses time as RFC 3339) reads the headers back as the same attributes."""
    ch = change(segment_id="Verkäufer")
    msg = kafka.KafkaMessage(headers=dict(headers(ch)), key=b"site-1:u-42", value=b"")
    ev = kafka.from_binary(msg, JSONFormat(), CloudEvent)
    assert ev.get_specversion() == "1.0"
    assert ev.get_id() == ch.change_id
    assert ev.get_source() == "/sites/site-1/segments/Verk%C3%A4ufer"
    assert ev.get_type() == "lms.segment.membership.changed.v1"
    assert ev.get_subject() == "u-42"
    assert ev.get_datacontenttype() == "application/avro"
    assert ev.get_time() is not None and int(ev.get_time().timestamp() * 1000) == ch.occurred_at


def test_cloudevents_env_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    """On unless CLOUDEVENTS is 0 / false / no (docs/contract.md, Environment)."""
    from processor.config import Settings

    monkeypatch.delenv("CLOUDEVENTS", raising=False)
    assert Settings.from_env().cloudevents is True
    for off in ("0", "false", "No "):
        monkeypatch.setenv("CLOUDEVENTS", off)
        assert Settings.from_env().cloudevents is False
    monkeypatch.setenv("CLOUDEVENTS", "1")
    assert Settings.from_env().cloudevents is True
