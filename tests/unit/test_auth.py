"""Token verification (processor/api/auth.py) and the worker's refusal of unsafe secrets.

Tokens are built here with PyJWT directly (not with the code under test) so each test controls
exactly which claims a token carries.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest

from processor.api.auth import AuthConfig, authenticate, make_token, secret_problem, verify_token
from processor.api.errors import ApiError
from processor.config import Settings
from tests.support.harness import TEST_JWT_SECRET
from processor.worker import security_problems

ROOT = Path(__file__).resolve().parents[2]
SECRET = "unit-test-secret-0123456789-abcdefghijkl"
CFG = AuthConfig(secret=SECRET)


def token(secret: str = SECRET, **claims: object) -> str:
    now = int(time.time())
    body: dict[str, object] = {"sub": "alice", "site_id": "acme", "roles": ["site_admin"], "iat": now,
                               "exp": now + 600}
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, secret, algorithm="HS256")


def refused(tok: str, cfg: AuthConfig = CFG) -> ApiError:
    with pytest.raises(ApiError) as info:
        authenticate({"Authorization": f"Bearer {tok}"}, cfg)
    assert info.value.status == 401
    return info.value


def test_a_complete_token_is_accepted() -> None:
    p = authenticate({"Authorization": f"Bearer {token()}"}, CFG)
    assert (p.sub, p.site_id, p.roles) == ("alice", "acme", ("site_admin",))


@pytest.mark.parametrize("claim", ["roles", "iat", "site_id", "sub", "exp"])
def test_every_documented_claim_is_required(claim: str) -> None:
    """sub, site_id, roles, exp and iat are required: a token without one is INVALID_TOKEN naming it
    (a token without roles, or without iat, used to pass)."""
    err = refused(token(**{claim: None}))
    assert err.code == "INVALID_TOKEN"
    assert repr(claim) in err.message


def test_roles_must_be_a_list_of_strings() -> None:
    assert refused(token(roles="site_admin")).code == "INVALID_TOKEN"
    assert refused(token(roles=[1])).code == "INVALID_TOKEN"


def test_lifetime_over_the_maximum_is_refused() -> None:
    """exp - iat above the configured maximum (default 24 h) is 401 TOKEN_LIFETIME_TOO_LONG, even
    though the token has not expired; exactly the maximum passes."""
    now = int(time.time())
    err = refused(token(iat=now, exp=now + 86400 + 1))
    assert err.code == "TOKEN_LIFETIME_TOO_LONG" and "86400" in err.message
    authenticate({"Authorization": f"Bearer {token(iat=now, exp=now + 86400)}"}, CFG)
    short = AuthConfig(secret=SECRET, max_lifetime_s=600)
    assert refused(make_token(SECRET, "alice", "acme", ["site_admin"], ttl_s=3600), short).code == \
        "TOKEN_LIFETIME_TOO_LONG"
    verify_token(make_token(SECRET, "alice", "acme", ["site_admin"], ttl_s=600), short)


def test_iat_in_the_future_is_refused() -> None:
    """A token cannot dodge the lifetime limit with a future iat."""
    now = int(time.time())
    assert refused(token(iat=now + 3600, exp=now + 7200)).code == "INVALID_TOKEN"


def test_audience_and_issuer_are_verified_when_configured() -> None:
    cfg = AuthConfig(secret=SECRET, audience="segment-api", issuer="https://idp.example")
    ok = token(aud="segment-api", iss="https://idp.example")
    assert verify_token(ok, cfg).sub == "alice"
    for bad in (token(iss="https://idp.example"),  # no aud
                token(aud="other-api", iss="https://idp.example"),
                token(aud="segment-api"),  # no iss
                token(aud="segment-api", iss="https://evil.example")):
        assert refused(bad, cfg).code == "INVALID_TOKEN"
    # not configured: a token without aud/iss is fine; one with an aud nobody verifies is not
    verify_token(token(), CFG)
    assert refused(token(aud="segment-api")).code == "INVALID_TOKEN"


def test_settings_read_the_new_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_JWT_AUDIENCE", "segment-api")
    monkeypatch.setenv("ADMIN_JWT_ISSUER", "https://idp.example")
    monkeypatch.setenv("ADMIN_JWT_MAX_LIFETIME_S", "900")
    monkeypatch.setenv("COMMANDS_REQUIRE_TOKEN", "1")
    s = Settings.from_env()
    cfg = AuthConfig.from_settings(s.with_(admin_jwt_secret=SECRET))
    assert (cfg.audience, cfg.issuer, cfg.max_lifetime_s) == ("segment-api", "https://idp.example", 900)
    assert s.commands_require_token is True
    monkeypatch.delenv("ADMIN_JWT_MAX_LIFETIME_S")
    monkeypatch.delenv("COMMANDS_REQUIRE_TOKEN")
    assert Settings.from_env().admin_jwt_max_lifetime_s == 86400
    assert Settings.from_env().commands_require_token is False


def test_tokens_minted_by_the_tools_still_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    """make_token (dev runner, tests, CLI) and the CLI's AdminClient mint tokens the API accepts."""
    from processor.admin_client import AdminClient

    cfg = AuthConfig(secret=TEST_JWT_SECRET)
    assert verify_token(make_token(TEST_JWT_SECRET, "me", "demo", ["site_admin"]), cfg).site_id == "demo"
    assert verify_token(make_token(TEST_JWT_SECRET, "me", "demo", ["site_admin"], ttl_s=8 * 3600), cfg)
    monkeypatch.delenv("ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("ADMIN_JWT_SECRET", TEST_JWT_SECRET)
    assert verify_token(AdminClient.from_env("demo").token, cfg).roles == ("site_admin",)


@pytest.mark.parametrize("secret", ["change-me", "changeme", "secret", "test", "", "short-but-random-Zx81",
                                    "change-me-change-me-change-me-change-me", "a" * 64, "abababab" * 8])
def test_unsafe_secrets_are_named(secret: str) -> None:
    assert secret_problem(secret) is not None


@pytest.mark.parametrize("secret", [TEST_JWT_SECRET, secrets.token_urlsafe(32), secrets.token_hex(32)])
def test_random_secrets_pass(secret: str) -> None:
    assert secret_problem(secret) is None


def test_security_problems_of_settings() -> None:
    assert security_problems(Settings(admin_jwt_secret=TEST_JWT_SECRET)) == []
    assert security_problems(Settings()) == []  # no secret: the API answers AUTH_NOT_CONFIGURED
    assert "ADMIN_JWT_SECRET" in security_problems(Settings(admin_jwt_secret="change-me"))[0]
    assert "COMMANDS_REQUIRE_TOKEN" in security_problems(Settings(commands_require_token=True))[0]


@pytest.mark.parametrize("secret", ["change-me", "0123456789abcdef"])
def test_worker_refuses_to_start_with_an_unsafe_secret(tmp_path: Path, secret: str) -> None:
    """`python -m processor worker` with a placeholder or short HS256 secret exits non-zero at once
    and says why, before touching the broker (none is running here)."""
    env = dict(os.environ, ADMIN_JWT_SECRET=secret, KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9",
               STATE_DIR=str(tmp_path / "state"), LOG_FORMAT="json")
    try:
        out = subprocess.run([sys.executable, "-m", "processor", "worker"], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("the worker did not refuse the secret (still running after 30 s)")
    assert out.returncode == 2, out.stderr[-2000:]
    assert "refusing to start: ADMIN_JWT_SECRET" in out.stderr
    if secret != "change-me":  # a placeholder is named; any other value never appears
        assert secret not in out.stderr
    assert not (tmp_path / "state").exists()


def test_command_principal_is_verified_like_an_api_token() -> None:
    """A command's token (COMMANDS_REQUIRE_TOKEN=1) must be present, valid like an API token, and
    for the command's site; otherwise FORBIDDEN at $.auth_token with the reason."""
    from processor.api.auth import command_principal
    from processor.errors import ProcessorError

    assert command_principal("acme", token(roles=["system"]), CFG).roles == ("system",)
    now = int(time.time())
    cases = {None: "no auth_token", "": "no auth_token", token(site_id="other"): "'other'",
             token(iat=now - 7200, exp=now - 3600): "TOKEN_EXPIRED", token(roles=None): "'roles'",
             token(exp=now + 90000): "TOKEN_LIFETIME_TOO_LONG", token(secret="x" * 40): "INVALID_TOKEN"}
    for tok, why in cases.items():
        with pytest.raises(ProcessorError) as info:
            command_principal("acme", tok, CFG)
        assert (info.value.code, info.value.path) == ("FORBIDDEN", "$.auth_token")
        assert why in info.value.message, (tok, info.value.message)


def test_publish_attaches_tokens_from_the_environment() -> None:
    """`commands publish`: ADMIN_TOKEN as given, else one minted per command from ADMIN_JWT_SECRET
    for the command's site and actor; neither set: no token."""
    from processor.contract.models import Actor, Command
    from processor.publish import with_tokens

    cmds = [Command("c1", "acme", 1, Actor("ops", ("site_admin",)), "DeleteRule", {"rule_id": "r"}),
            Command("c2", "beta", 1, Actor("sync", ("system",)), "DeleteSegment", {"segment_id": "s"})]
    assert [c.auth_token for c in with_tokens(cmds, {})] == [None, None]
    assert [c.auth_token for c in with_tokens(cmds, {"ADMIN_TOKEN": "tok", "ADMIN_JWT_SECRET": SECRET})] == \
        ["tok", "tok"]
    minted = [verify_token(c.auth_token or "", CFG) for c in with_tokens(cmds, {"ADMIN_JWT_SECRET": SECRET})]
    assert [(p.sub, p.site_id, p.roles) for p in minted] == [("ops", "acme", ("site_admin",)),
                                                              ("sync", "beta", ("system",))]
