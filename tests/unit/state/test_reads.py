"""processor/state/reads.py over two real rocksdict partitions, written as the worker writes them:
pages are merged across partitions in user-id order, ``after`` is exclusive, ``limit`` holds,
and another site's or segment's keys never leak in (expected values come from what was written)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
import rocksdict

from processor.state import reads
from processor.state.keys import member_key, user_key
from processor.state.members import member_entry
from processor.state.user_state import UserState, encode_state

SITE = "s"
USERS = [f"u{i:03d}" for i in range(40)]
MEMBERS = USERS[::3]


@pytest.fixture
def handles(tmp_path: Path) -> Iterator[list[Any]]:
    dbs = []
    for p in (0, 1):
        opts = rocksdict.Options(raw_mode=True)
        opts.create_if_missing(True)
        dbs.append(rocksdict.Rdict(str(tmp_path / f"p{p}"), opts))
    for i, uid in enumerate(USERS):
        db = dbs[i % 2]  # alternate partitions: pages must merge
        db[user_key(SITE, uid)] = encode_state(UserState(SITE, uid, profile={"n": i}))
        if uid in MEMBERS:
            db[member_key(SITE, "seg", uid)] = member_entry(1000 + i, ("r1",), "RULE_CREATED")
    for db in dbs:  # neighbours that must not appear: another site and another segment
        db[user_key(SITE + "x", "intruder")] = encode_state(UserState(SITE + "x", "intruder"))
        db[member_key(SITE, "seg2", "other")] = member_entry(1, ("r9",), "USER_CREATED")
    yield dbs
    for db in dbs:
        db.close()


def test_members_pages_merge_partitions_in_user_order(handles: list[Any]) -> None:
    first = reads.members(handles, SITE, "seg", "", 5)
    assert [m.user_id for m in first] == MEMBERS[:5]
    assert first[0].as_dict() == {"user_id": MEMBERS[0], "since": 1000, "matched_rule_ids": ["r1"],
                                  "cause": "RULE_CREATED"}
    rest = reads.members(handles, SITE, "seg", first[-1].user_id, 500)
    assert [m.user_id for m in rest] == MEMBERS[5:]


def test_users_pages_merge_partitions_and_stay_in_the_site(handles: list[Any]) -> None:
    page = reads.users(handles, SITE, USERS[9], 7)
    assert [st.user_id for st in page] == USERS[10:17]
    assert [st.profile["n"] for st in page] == list(range(10, 17))
    assert [st.user_id for st in reads.users(handles, SITE, USERS[-2], 50)] == [USERS[-1]]


def test_one_user_is_found_in_whichever_partition_holds_it(handles: list[Any]) -> None:
    assert reads.user(handles, SITE, USERS[1]).profile == {"n": 1}  # type: ignore[union-attr]
    assert reads.user(handles, SITE, "nobody") is None


def test_a_site_scan_sees_every_user_and_member_of_the_site_only(handles: list[Any]) -> None:
    scan = reads.HandleScan(handles, SITE, lambda: True)
    assert sorted(st.user_id for st in scan.users()) == USERS
    assert sum(1 for deleted in scan.user_deleted_flags() if not deleted) == len(USERS)
    assert sorted(scan.member_segments()) == ["seg"] * len(MEMBERS) + ["seg2", "seg2"]
    assert scan.current()
