"""A gathered read reaches every worker with the caller's ids and token, and this worker's part
never goes over HTTP.

Two real API servers of processor/http over in-memory read models: the peer is served on
loopback; "this" worker is not served at all (its own URL refuses connections), so a gathered
read that called its own endpoint instead of answering directly would fail with 503. Each read
model records the arguments its store was asked for: ids that need quoting in a URL (a user id
with spaces, '%', '?', '&', '#', non-ASCII) must arrive at the peer exactly as at the local
store.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from processor import http
from processor.api.auth import AuthConfig, make_token
from processor.api.errors import ApiError
from processor.broker import free_port
from processor.config import Settings
from processor.http.api import Api
from processor.http.peers import CountsRead, MemberSearchRead, MembersRead, PreviewRead, ProfilesRead, UserRead
from processor.state.members import member_entry
from processor.state.reads import HandleScan, Member
from processor.state.user_state import UserState, encode_state
from tests.support.api_double import InMemoryModel

SECRET = "unit-test-secret-0123456789-abcdefghijkl"
SITE = "site-é.1"
ODD = "ann smith 100% ?a=1&b=2 #x ü"  # an opaque user id: anything but '/' and control characters


class RecordingStore:
    """A worker's stored state, answering with its name so answers can be told apart."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[tuple[Any, ...]] = []

    def owned_partitions(self) -> list[int]:
        return [0]

    def user(self, site_id: str, user_id: str) -> UserState | None:
        self.calls.append(("user", site_id, user_id))
        return UserState(site_id, user_id, profile={"worker": self.name})

    def members(self, site_id: str, segment_id: str, after: str = "", limit: int = 50) -> list[Member]:
        self.calls.append(("members", site_id, segment_id, after, limit))
        return [Member(f"{self.name}-member", 1, ["r1"], "RULE_CREATED")]

    def users(self, site_id: str, after: str = "", limit: int = 50) -> list[UserState]:
        self.calls.append(("users", site_id, after, limit))
        return [UserState(site_id, f"{self.name}-user", profile={"worker": self.name})]

    def scan(self, site_id: str) -> HandleScan:
        self.calls.append(("scan", site_id))
        return RecordingScan(self, site_id)


class RecordingScan(HandleScan):
    """A scan with no users, whose segment reads answer one member and record their arguments."""

    def __init__(self, store: RecordingStore, site_id: str) -> None:
        super().__init__([], site_id, lambda: True)
        self.store = store

    def partition_members(self, segment_id: str, after: str = "") -> list[Iterator[tuple[str, bytes, bytes | None]]]:
        self.store.calls.append(("members of", segment_id, after))
        uid = f"{self.store.name}-member"
        return [iter([(uid, member_entry(1, ("r1",), "RULE_CREATED"),
                       encode_state(UserState(self.site_id, uid, profile={"firstname": self.store.name})))])]


class Model(InMemoryModel):
    """The read model of one worker (processor/http/model.py), in memory, over a RecordingStore."""

    def __init__(self, name: str, url: str) -> None:
        super().__init__(RecordingStore(name), url)
        self.peers = [url]

    async def send_command(self, site_id: str, value: bytes) -> None:
        raise AssertionError("no writes here")


@pytest.fixture
def settings() -> Iterator[Settings]:
    yield Settings(bootstrap_servers="127.0.0.1:9", admin_jwt_secret=SECRET)


@pytest.fixture
async def pair(settings: Settings) -> AsyncIterator[tuple[Api, Model, Model]]:
    """(this worker's Api, its model, the served peer's model)."""
    peer_app = web.Application()
    server = TestServer(peer_app, host="127.0.0.1")
    peer = Model("peer", "")
    http.install(peer_app, peer, settings)
    await server.start_server()
    peer.url = str(server.make_url("")).rstrip("/")
    me = Model("me", f"http://127.0.0.1:{free_port()}")  # nobody listens there
    me.peers = sorted([me.url, peer.url])
    peer.peers = me.peers
    api = Api(me, settings, AuthConfig(secret=SECRET))
    try:
        yield api, me, peer
    finally:
        await api.peers.close()
        await server.close()


def bearer(site: str = SITE) -> str:
    return f"Bearer {make_token(SECRET, 'alice', site, ['site_admin'])}"


async def test_each_read_reaches_the_peer_with_the_same_ids_and_this_worker_directly(pair: Any) -> None:
    api, me, peer = pair
    reads = [MembersRead(SITE, "seg-ü", ODD, 7), UserRead(SITE, ODD), ProfilesRead(SITE, ODD, 3),
             CountsRead(SITE),
             PreviewRead(SITE, "seg-ü", "r-1", {"field": "city", "op": "equals", "value": "x"}),
             MemberSearchRead(SITE, "seg-ü", ODD, 7, ODD)]
    answers = {type(r).__name__: await api.peers.gather(r, bearer()) for r in reads}
    for model in (me, peer):  # a members page reads the segment's entries with their users' states
        assert model.store.calls == [
            ("scan", SITE), ("members of", "seg-ü", ODD), ("user", SITE, ODD), ("users", SITE, ODD, 3),
            ("scan", SITE), ("scan", SITE), ("scan", SITE), ("members of", "seg-ü", ODD)]
    # one answer per worker, each from its own store
    assert sorted((m["user_id"], m["name"]) for a in answers["MembersRead"] for m in a["members"]) == [
        ("me-member", "me"), ("peer-member", "peer")]
    assert sorted(a["profile"]["worker"] for a in answers["UserRead"]) == ["me", "peer"]
    assert sorted(u["user_id"] for a in answers["ProfilesRead"] for u in a["users"]) == ["me-user", "peer-user"]
    assert answers["CountsRead"] == [{"members": {}, "users": 0, "deleted_users": 0}] * 2
    assert [a["evaluated"] for a in answers["PreviewRead"]] == [0, 0]


async def test_the_callers_token_goes_to_the_peer(pair: Any) -> None:
    """The peer authorizes the forwarded token itself: another site's token is refused there,
    and the whole read is 503 (never this worker's part alone)."""
    api, me, peer = pair
    with pytest.raises(ApiError) as err:
        await api.peers.gather(UserRead(SITE, "u1"), bearer("another-site"))
    assert (err.value.status, err.value.code) == (503, "WORKER_UNAVAILABLE")
    assert peer.store.calls == []
