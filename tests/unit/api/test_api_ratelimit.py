"""The write limit per token subject and site (the limits library's moving window)."""

from __future__ import annotations

import pytest

from processor.api.errors import ApiError
from processor.api.ratelimit import WriteLimiter


def test_the_write_past_the_limit_is_a_429_with_retry_after() -> None:
    lim = WriteLimiter(3)
    for _ in range(3):
        lim.hit("site", "alice")
    with pytest.raises(ApiError) as err:
        lim.hit("site", "alice")
    assert (err.value.status, err.value.code) == (429, "RATE_LIMITED")
    assert 1 <= int(err.value.headers()["Retry-After"]) <= 60
    with pytest.raises(ApiError):  # a refused write does not free a place
        lim.hit("site", "alice")


def test_other_subjects_and_sites_have_their_own_window() -> None:
    lim = WriteLimiter(1)
    lim.hit("site", "alice")
    lim.hit("site", "bob")
    lim.hit("other", "alice")
    lim.hit("a/b", "c")
    lim.hit("a", "b/c")  # ids containing the library's key separator do not share a window
    with pytest.raises(ApiError):
        lim.hit("a/b", "c")


def test_zero_turns_the_limit_off() -> None:
    lim = WriteLimiter(0)
    for _ in range(1000):
        lim.hit("site", "alice")
