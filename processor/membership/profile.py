"""Fold a user event into the stored profile."""

from __future__ import annotations

from processor.contract.models import Profile, UserEvent


def merge_profile(stored: Profile | None, stored_deleted: bool, ev: UserEvent) -> tuple[Profile, bool]:
    """Return ``(profile, deleted)`` after applying ``ev``.

    USER_CREATED replaces the profile (how an LMS bootstraps or resyncs a
    user). USER_UPDATED is a patch: present keys overwrite, ``null`` clears,
    absent keys keep their value; for a user never seen (or deleted) the patch
    becomes the profile. USER_DELETED wipes the profile. Null values are never
    stored, so "missing" and "null" are the same thing to the rule engine.
    """
    if ev.event_type == "USER_DELETED":
        return {}, True
    if ev.event_type == "USER_CREATED" or stored is None or stored_deleted:
        return {k: v for k, v in ev.profile.items() if v is not None}, False
    merged = dict(stored)
    for k, v in ev.profile.items():
        if v is None:
            merged.pop(k, None)
        else:
            merged[k] = v
    return merged, False
