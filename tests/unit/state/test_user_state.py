"""Unit tests for processor/state/user_state.py: stored user state and its codec."""

from __future__ import annotations

import io
import json
from pathlib import Path

import fastavro
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.contract import schemas
from processor.state.user_state import (
    FORMAT_V1,
    FORMAT_V3,
    RECENT_EVENT_IDS,
    Fact,
    UserState,
    decode_state,
    encode_state,
    is_deleted,
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
    assert encode_state(UserState("s", "u")).startswith(FORMAT_V3)


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


@pytest.mark.parametrize("raw", [b"", b"\x04" + encode_state(UserState("s", "u"))[1:], b"\x00abc"])
def test_unknown_format_rejected(raw):
    """A value without the known version byte raises ValueError instead of being misread."""
    with pytest.raises(ValueError):
        decode_state(raw)


OLD_STATES = json.loads((Path(__file__).parent / "fixtures" / "old_user_states.json").read_text())


def fixture_states() -> dict[str, UserState]:
    """The states whose bytes tests/unit/state/fixtures/old_user_states.json holds (formats 1 and 2,
    written by the code of commit 7c2fa80, the last to write format 2)."""
    full = full_state()
    full.profile.update({"city": None, "big": -(2**63), "neg": -0.5, "text": "日本語 ✓"})
    full.next_check_at = 1_750_000_123
    return {
        "full": full,
        "deleted": UserState("s", "u", deleted=True,
                             facts={"x": Fact(False, "c", "REMOVED", "USER_DELETED", "e", (), 1, 2)}),
        "fresh": UserState("s", "u"),
    }


@pytest.mark.parametrize("name", ["full", "deleted", "fresh"])
def test_format_2_bytes_written_by_the_avro_codec_still_decode(name):
    """State bytes an older worker stored in format 2 (Avro) decode to the same state, value types
    included, and are rewritten in the current format."""
    want = fixture_states()[name]
    raw = bytes.fromhex(OLD_STATES["format_2"][name])
    assert raw[:1] == b"\x02"
    got = decode_state(raw)
    assert got == want
    assert is_deleted(raw) is want.deleted
    assert {k: type(v) for k, v in got.profile.items()} == {k: type(v) for k, v in want.profile.items()}
    assert decode_state(encode_state(got)) == want and encode_state(got)[:1] == FORMAT_V3


@pytest.mark.parametrize("name", ["full", "deleted", "fresh"])
def test_format_1_bytes_still_decode(name):
    """Stored format 1 bytes (no last_control_offset) decode with last_control_offset -1."""
    want = fixture_states()[name]
    raw = bytes.fromhex(OLD_STATES["format_1"][name])
    assert raw[:1] == FORMAT_V1
    assert is_deleted(raw) is want.deleted
    got = decode_state(raw)
    assert got.last_control_offset == -1
    got.last_control_offset = want.last_control_offset
    assert got == want


@pytest.mark.parametrize("raw", [
    encode_state(full_state())[:-3],  # truncated
    FORMAT_V3 + msgspec.msgpack.encode(["s", "u", False, {}, -1, 0, []]),  # fields missing
    FORMAT_V3 + msgspec.msgpack.encode(["s", "u", "no", {}, -1, 0, [], {}, -1]),  # a string for a bool
    FORMAT_V3 + msgspec.msgpack.encode(["s", "u", False, {"k": {"x": 1}}, -1, 0, [], {}, -1]),  # a map value
    FORMAT_V3 + msgspec.msgpack.encode(["s", "u", False, {}, -1, 0, [], {"seg": [True, "c"]}, -1]),  # short fact
])
def test_corrupt_current_format_is_rejected(raw):
    """Format 3 bytes of the wrong shape or types raise ValueError instead of yielding a bad state."""
    with pytest.raises(ValueError, match="format 3"):
        decode_state(raw)


def test_is_deleted_of_a_corrupt_current_format_is_rejected():
    """The deleted flag of format 3 bytes whose first fields are of the wrong type: ValueError."""
    with pytest.raises(ValueError, match="format 3"):
        is_deleted(FORMAT_V3 + msgspec.msgpack.encode(["s", "u", "no"]))


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
