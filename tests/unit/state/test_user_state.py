"""Unit tests for processor/state/user_state.py: stored user state and its codec."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import io

import fastavro

from processor.contract import schemas
from processor.state.user_state import (
    FORMAT_V1,
    FORMAT_V2,
    RECENT_EVENT_IDS,
    Fact,
    UserState,
    decode_state,
    encode_state,
)


def full_state() -> UserState:
    return UserState(
        site_id="site-ü",
        user_id="u:1",
        deleted=False,
        profile={"department": "Sales", "suspended": True, "lastlogin": 1_700_000_000, "score": 2.5,
                 "interests": ["chess", "go"], "empty": []},
        last_offset=12345678901,
        last_control_offset=77,
        recent_event_ids=["e1", "e2"],
        facts={
            "sales": Fact(True, "cid-1", "ADDED", "USER_CREATED", "e1", ("r1", "r2"), 10, 20),
            "hr": Fact(False, "cid-2", "REMOVED", "RULE_DELETED", "cmd-9", (), 30, 40),
        },
    )


def test_round_trip_full_state():
    """A state with every profile value type and both kinds of fact round trips exactly."""
    st_ = full_state()
    got = decode_state(encode_state(st_))
    assert got == st_
    assert type(got.profile["suspended"]) is bool
    assert type(got.profile["score"]) is float
    assert got.facts["sales"].matched_rule_ids == ("r1", "r2")


def test_round_trip_fresh_state():
    """A fresh state (defaults) round trips, last_offset -1 included."""
    st_ = UserState("s", "u")
    got = decode_state(encode_state(st_))
    assert got == st_
    assert got.last_offset == -1


def test_round_trip_deleted_state():
    """A deleted user's state round trips with deleted set and REMOVED facts kept."""
    st_ = UserState("s", "u", deleted=True, facts={"x": Fact(False, "c", "REMOVED", "USER_DELETED", "e", (), 1, 2)})
    assert decode_state(encode_state(st_)) == st_


def test_encoding_has_version_byte():
    """The stored value starts with the current format version byte."""
    assert encode_state(UserState("s", "u")).startswith(FORMAT_V2)


def test_format_1_written_by_an_older_worker_still_decodes() -> None:
    """State bytes in format 1 (no last_control_offset; still in changelogs after an upgrade) decode,
    with last_control_offset defaulting to -1 and everything else intact."""
    old = full_state()
    rec = {
        "site_id": old.site_id, "user_id": old.user_id, "deleted": old.deleted, "profile": old.profile,
        "last_offset": old.last_offset, "next_check_at": 0, "recent_event_ids": old.recent_event_ids,
        "facts": {seg: {"member": f.member, "change_id": f.change_id, "change": f.change,
                        "cause_kind": f.cause_kind, "cause_id": f.cause_id,
                        "matched_rule_ids": list(f.matched_rule_ids), "occurred_at": f.occurred_at,
                        "emitted_at": f.emitted_at} for seg, f in old.facts.items()},
    }
    buf = io.BytesIO()
    buf.write(FORMAT_V1)
    fastavro.schemaless_writer(buf, schemas.parsed_schema(schemas.USER_STATE_V1), rec)
    got = decode_state(buf.getvalue())
    assert got.last_control_offset == -1
    got.last_control_offset = old.last_control_offset
    assert got == old


@pytest.mark.parametrize("raw", [b"", b"\x03" + encode_state(UserState("s", "u"))[1:], b"\x00abc"])
def test_unknown_format_rejected(raw):
    """A value without the known version byte raises ValueError instead of being misread."""
    with pytest.raises(ValueError):
        decode_state(raw)


def test_remember_event_keeps_most_recent_bounded():
    """recent_event_ids keeps only the newest RECENT_EVENT_IDS ids, oldest dropped first."""
    st_ = UserState("s", "u")
    for i in range(RECENT_EVENT_IDS + 5):
        st_.remember_event(f"e{i}")
    assert len(st_.recent_event_ids) == RECENT_EVENT_IDS
    assert st_.recent_event_ids[0] == "e5"
    assert st_.recent_event_ids[-1] == f"e{RECENT_EVENT_IDS + 4}"


def test_is_member():
    """is_member is true only for segments whose last fact is a membership."""
    st_ = full_state()
    assert st_.is_member("sales") is True
    assert st_.is_member("hr") is False
    assert st_.is_member("unknown") is False


_ids = st.text(max_size=12)
_vals = st.one_of(st.text(max_size=10), st.integers(min_value=-(2**63), max_value=2**63 - 1),
                  st.floats(allow_nan=False), st.booleans(), st.lists(st.text(max_size=5), max_size=3))
_facts = st.builds(
    Fact,
    st.booleans(), _ids, st.sampled_from(["ADDED", "REMOVED"]), st.sampled_from(["USER_CREATED", "RULE_CREATED"]),
    _ids, st.lists(_ids, max_size=3).map(tuple), st.integers(0, 2**62), st.integers(0, 2**62),
)


@settings(max_examples=100, deadline=None)
@given(
    site=_ids, user=_ids, deleted=st.booleans(),
    profile=st.dictionaries(st.text(max_size=10), _vals, max_size=6),
    last_offset=st.integers(-1, 2**62),
    recent=st.lists(_ids, max_size=RECENT_EVENT_IDS),
    facts=st.dictionaries(_ids, _facts, max_size=4),
)
def test_property_round_trip(site, user, deleted, profile, last_offset, recent, facts):
    """Any state round trips through encode_state/decode_state unchanged, value types included."""
    st_ = UserState(site_id=site, user_id=user, deleted=deleted, profile=profile, last_offset=last_offset,
                    recent_event_ids=recent, facts=facts)
    got = decode_state(encode_state(st_))
    assert got == st_
    for k, v in profile.items():
        assert type(got.profile[k]) is type(v)
