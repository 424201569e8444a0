"""API command ids carry their issue time (processor/api/command_ids.py), so a status poll for a
command that was decided and has left the de-duplication window answers COMMAND_EXPIRED instead
of PENDING forever."""

from __future__ import annotations

import re
import uuid

from processor.api.command_ids import CLOCK_SKEW_MS, expired, issued_ms, new_command_id

T = 1_760_000_000_000  # some ms timestamp
HOUR = 3_600_000


def test_api_ids_keep_their_shape_and_are_uuid7_with_the_issue_time() -> None:
    """Same shape as the old ids (api- + 32 hex), now a UUIDv7 (RFC 9562) whose time is the issue time."""
    cid = new_command_id(T)
    assert re.fullmatch(r"api-[0-9a-f]{32}", cid)
    u = uuid.UUID(cid[4:])
    assert u.version == 7 and u.variant == uuid.RFC_4122
    assert issued_ms(cid) == T
    assert len({new_command_id(T) for _ in range(1000)}) == 1000  # random part differs


def test_ids_sort_by_issue_time() -> None:
    ids = [new_command_id(T + d) for d in (0, 1, 1_000, HOUR)]
    assert sorted(ids) == ids


def test_other_ids_have_no_issue_time() -> None:
    """Old API ids (UUIDv4), CLI/bus ids and look-alikes carry no time: None."""
    for cid in (f"api-{uuid.uuid4().hex}", "cmd-1234", "api-" + "0" * 32, new_command_id(T).upper(),
                new_command_id(T) + "0", "api-" + new_command_id(T)[4:16] + "_" + new_command_id(T)[17:]):
        assert issued_ms(cid) is None, cid


def test_expired_after_the_ttl_pending_before() -> None:
    cid = new_command_id(T)
    assert not expired(cid, T + HOUR, HOUR, None)
    assert expired(cid, T + HOUR + 1, HOUR, None)


def test_expired_when_issued_clearly_before_the_sites_oldest_kept_command() -> None:
    """A site's API commands are decided in order: one issued well before the oldest kept one
    was decided and forgotten. Within the clock-skew margin it may still be pending."""
    cid = new_command_id(T)
    assert expired(cid, T + 1_000, HOUR, new_command_id(T + CLOCK_SKEW_MS + 1))
    assert not expired(cid, T + 1_000, HOUR, new_command_id(T + CLOCK_SKEW_MS))
    assert not expired(cid, T + 1_000, HOUR, "cmd-from-the-cli")  # no time: tells nothing


def test_ids_without_time_are_never_called_expired() -> None:
    assert not expired("cmd-1", T + 100 * HOUR, HOUR, new_command_id(T + 50 * HOUR))
