"""GET /sites/{site}/commands/{id} never answers PENDING forever (issue 17).

Workers keep a bounded de-duplication window of command records, so a command decided long ago
is forgotten. API command ids now carry their issue time: an id issued more than
COMMAND_STATUS_TTL_S ago, or well before the site's oldest remembered API command, that is not
in the window answers 410 COMMAND_EXPIRED; a recent one still answers PENDING.
"""

from __future__ import annotations

import time

from processor.api.command_ids import CLOCK_SKEW_MS, issued_ms, new_command_id
from tests.support.harness import Cluster
from tests.integration.test_api import admin, call


def test_status_of_a_command_older_than_the_ttl_is_410_not_pending(cluster: Cluster, site: str) -> None:
    """An API id issued 2 h ago (default TTL 1 h) and unknown: 410 COMMAND_EXPIRED; one issued
    now and unknown (it may still be on its way): 200 PENDING, as before."""
    base, tok = cluster.workers[0].url, admin(site)
    now = int(time.time() * 1000)
    fresh, old = new_command_id(now), new_command_id(now - 2 * 3600 * 1000)
    assert call(base, "GET", f"/sites/{site}/commands/{fresh}", tok) == (200, {"command_id": fresh,
                                                                              "status": "PENDING",
                                                                              "state": "PENDING"})
    code, body = call(base, "GET", f"/sites/{site}/commands/{old}", tok)
    assert code == 410, body
    assert body["code"] == "COMMAND_EXPIRED" and old in body["message"]
    assert call(base, "GET", f"/sites/{site}/commands/cmd-not-from-the-api", tok)[1]["status"] == "PENDING"


def test_api_ids_carry_their_issue_time_and_older_ones_than_the_oldest_kept_are_expired(
        cluster: Cluster, site: str) -> None:
    """A write through the API gets a time-ordered id (issued now) and is decided (REJECTED here:
    the segment does not exist). An unknown API id issued two minutes before it, on the same
    site, was decided before it and forgotten: 410 COMMAND_EXPIRED, within the TTL."""
    base, tok = cluster.workers[0].url, admin(site)
    before = int(time.time() * 1000)
    code, body = call(base, "POST", f"/sites/{site}/rules", tok,
                      {"rule_id": "r1", "segment_id": "nope", "name": "r", "condition": 'department == "Sales"'})
    after = int(time.time() * 1000)
    assert code == 202, body
    issued = issued_ms(body["command_id"])
    assert issued is not None and before <= issued <= after
    cluster.wait(lambda: call(base, "GET", body["poll"], tok)[1]["status"] == "REJECTED", what="rejected")
    earlier = new_command_id(issued - 2 * CLOCK_SKEW_MS)
    code, err = call(base, "GET", f"/sites/{site}/commands/{earlier}", tok)
    assert code == 410 and err["code"] == "COMMAND_EXPIRED", err
