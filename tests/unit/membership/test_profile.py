"""Unit tests for processor/membership/profile.py (merge_profile).

Spec (issue 2): USER_CREATED carries the full profile and replaces a stored
one; USER_UPDATED is a patch (present keys overwrite, null clears, absent
keys keep); USER_UPDATED for a never-seen user stores the patch;
USER_DELETED ignores the profile.
"""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from processor.contract.models import UserEvent
from processor.membership.profile import merge_profile


def ev(event_type: str, profile: dict) -> UserEvent:
    return UserEvent("e", event_type, "s", "u", 1, profile)


STORED = {"department": "Sales", "city": "Paris", "interests": ["chess"], "suspended": False}


def test_created_for_new_user_stores_profile():
    """USER_CREATED for an unknown user stores its profile and the user is not deleted."""
    profile, deleted = merge_profile(None, False, ev("USER_CREATED", {"department": "Sales", "lastlogin": 5}))
    assert profile == {"department": "Sales", "lastlogin": 5}
    assert deleted is False


def test_created_replaces_whole_profile():
    """USER_CREATED for a stored user replaces the profile: old keys not in the event are gone."""
    profile, deleted = merge_profile(STORED, False, ev("USER_CREATED", {"department": "HR"}))
    assert profile == {"department": "HR"}
    assert deleted is False


def test_created_drops_null_values():
    """Nulls in a full profile are not stored: null and missing mean the same to rules."""
    profile, _ = merge_profile(None, False, ev("USER_CREATED", {"department": "HR", "city": None}))
    assert profile == {"department": "HR"}


def test_updated_is_a_patch():
    """USER_UPDATED overwrites present keys, clears null keys and keeps absent keys."""
    profile, deleted = merge_profile(
        STORED, False, ev("USER_UPDATED", {"department": "Marketing", "city": None, "country": "FR"})
    )
    assert profile == {"department": "Marketing", "interests": ["chess"], "suspended": False, "country": "FR"}
    assert deleted is False


def test_updated_empty_patch_keeps_everything():
    """An empty patch changes nothing."""
    profile, _ = merge_profile(STORED, False, ev("USER_UPDATED", {}))
    assert profile == STORED


def test_updated_null_for_absent_key_is_harmless():
    """Clearing a key that is not stored is a no-op, not an error."""
    profile, _ = merge_profile(STORED, False, ev("USER_UPDATED", {"lang": None}))
    assert profile == STORED


def test_updated_for_unknown_user_stores_patch():
    """USER_UPDATED for a user never seen stores the patch (without nulls) as the profile."""
    profile, deleted = merge_profile(None, False, ev("USER_UPDATED", {"department": "Sales", "city": None}))
    assert profile == {"department": "Sales"}
    assert deleted is False


def test_deleted_wipes_profile_and_ignores_payload():
    """USER_DELETED marks the user deleted, wipes the profile and ignores the event's profile."""
    profile, deleted = merge_profile(STORED, False, ev("USER_DELETED", {"department": "Sales"}))
    assert profile == {}
    assert deleted is True


def test_deleted_unknown_user():
    """USER_DELETED for a never-seen user records a deleted, empty user."""
    assert merge_profile(None, False, ev("USER_DELETED", {})) == ({}, True)


def test_update_after_delete_does_not_resurrect_old_profile():
    """A user updated after deletion starts from the patch only, not from a pre-deletion profile."""
    profile, deleted = merge_profile({"department": "Sales"}, True, ev("USER_UPDATED", {"city": "Rome"}))
    assert profile == {"city": "Rome"}
    assert deleted is False


def test_created_after_delete_undeletes():
    """USER_CREATED after USER_DELETED recreates the user."""
    profile, deleted = merge_profile({}, True, ev("USER_CREATED", {"department": "Sales"}))
    assert (profile, deleted) == ({"department": "Sales"}, False)


def test_merge_does_not_mutate_inputs():
    """merge_profile returns a new dict; the stored profile and the event are untouched."""
    stored = copy.deepcopy(STORED)
    patch = {"department": None, "city": "Rome"}
    event = ev("USER_UPDATED", patch)
    merge_profile(stored, False, event)
    assert stored == STORED
    assert patch == {"department": None, "city": "Rome"}


_vals = st.one_of(st.text(max_size=5), st.integers(), st.booleans(), st.lists(st.text(max_size=3), max_size=2))
_keys = st.sampled_from(["a", "b", "c", "d", "e", "f"])


@settings(max_examples=200, deadline=None)
@given(stored=st.dictionaries(_keys, _vals), patch=st.dictionaries(_keys, st.one_of(st.none(), _vals)))
def test_property_patch_semantics(stored, patch):
    """For any stored profile and patch: patched keys take the new value, null keys vanish, others are kept."""
    merged, deleted = merge_profile(stored, False, ev("USER_UPDATED", patch))
    assert deleted is False
    for k in set(stored) | set(patch):
        if k in patch and patch[k] is None:
            assert k not in merged
        elif k in patch:
            assert merged[k] == patch[k]
        else:
            assert merged[k] == stored[k]
    assert set(merged) <= set(stored) | set(patch)
    assert None not in merged.values()
