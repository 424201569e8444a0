"""Unit tests for processor/state/keys.py: user table keys.

A backfill scans every user of one site with a RocksDB prefix scan, so
``user_prefix(site)`` must be a prefix of exactly that site's user keys and
of no other site's (``"a"`` vs ``"ab"`` must not collide).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.state.keys import (
    FIRED,
    TIMER,
    fired_key,
    parse_fired_key,
    parse_user_key,
    timer_key,
    user_key,
    user_prefix,
)


def test_prefix_of_a_is_not_prefix_of_ab():
    """user_prefix('a') is not a prefix of any key of site 'ab' (the naive "a" + user would be)."""
    for user in ("", "b", "bc", ":x", "1"):
        assert not user_key("ab", user).startswith(user_prefix("a"))
    assert not user_key("a", "b").startswith(user_prefix("ab"))


def test_site_with_separator_like_chars_does_not_collide():
    """Sites containing ':' or digits cannot be confused with site+user splits."""
    assert user_key("a:b", "c") != user_key("a", "b:c")
    assert not user_key("a:b", "c").startswith(user_prefix("a"))
    assert parse_user_key(user_key("a:b", "c")) == ("a:b", "c")
    assert parse_user_key(user_key("a", "b:c")) == ("a", "b:c")


def test_keys_start_with_their_site_prefix():
    """Every user key of a site starts with that site's prefix."""
    for user in ("u1", "u2", "", "é"):
        assert user_key("site-a", user).startswith(user_prefix("site-a"))


@pytest.mark.parametrize("site", ["", "a", "é", "x" * 127, "x" * 128, "y" * 300, "ü" * 100, "日本" * 50])
def test_parse_round_trip_including_long_sites(site):
    """parse_user_key inverts user_key, including sites whose UTF-8 length needs a multi-byte varint."""
    assert parse_user_key(user_key(site, "user-1")) == (site, "user-1")


def test_parse_rejects_non_user_keys():
    """Keys from another keyspace are refused."""
    with pytest.raises(ValueError):
        parse_user_key(b"Xsomething")


def test_keys_are_bytes_and_distinct_per_user():
    """Keys are bytes, and different users of a site get different keys."""
    assert isinstance(user_key("s", "u"), bytes)
    assert user_key("s", "u1") != user_key("s", "u2")


_text = st.text(max_size=40)


@settings(max_examples=300, deadline=None)
@given(site=_text, other=_text, user=_text)
def test_property_prefix_isolation(site, other, user):
    """For any two different sites, no key of one starts with the other's prefix."""
    if site == other:
        assert user_key(other, user).startswith(user_prefix(site))
    else:
        assert not user_key(other, user).startswith(user_prefix(site))


@settings(max_examples=300, deadline=None)
@given(site=_text, user=_text)
def test_property_round_trip(site, user):
    """parse_user_key(user_key(s, u)) == (s, u) for all strings."""
    assert parse_user_key(user_key(site, user)) == (site, user)


@settings(max_examples=100, deadline=None)
@given(site=_text, users=st.lists(_text, max_size=5), others=st.lists(st.tuples(_text, _text), max_size=5))
def test_property_prefix_scan_returns_exactly_the_site(site, users, others):
    """Scanning sorted keys by the site prefix yields exactly that site's users."""
    keys = [user_key(site, u) for u in users] + [user_key(s, u) for s, u in others]
    found = {parse_user_key(k) for k in sorted(keys) if k.startswith(user_prefix(site))}
    expected = {(site, u) for u in users} | {(s, u) for s, u in others if s == site}
    assert found == expected


@given(st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1), st.text(max_size=20), st.text(max_size=20))
def test_fired_keys_round_trip_and_sort_by_tick_offset(a, b, site, user):
    """A tick's 'fired' entries parse back, sort by tick offset (a tick scans from the oldest)
    and live in their own keyspace, apart from users and timers."""
    ukey = user_key(site, user)
    assert parse_fired_key(fired_key(a, ukey)) == (a, ukey)
    if a < b:
        assert fired_key(a, ukey) < fired_key(b, user_key("", ""))
    assert fired_key(a, ukey).startswith(FIRED)
    assert not fired_key(a, ukey).startswith(user_prefix(site)[:1])
    assert not timer_key(a, ukey).startswith(FIRED) and timer_key(a, ukey).startswith(TIMER)
