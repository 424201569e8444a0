"""Bearer-token authentication and per-site authorization.

Tokens are JWTs signed with HS256 (``ADMIN_JWT_SECRET``) or EdDSA/RS256 (the
PEM public key in ``ADMIN_JWT_PUBLIC_KEY``). Required claims: ``sub``,
``site_id``, ``roles``, ``exp`` and ``iat``; a token may live at most
``ADMIN_JWT_MAX_LIFETIME_S`` (``exp - iat``, default 24 h), and ``aud`` / ``iss``
are verified when ``ADMIN_JWT_AUDIENCE`` / ``ADMIN_JWT_ISSUER`` are set.
Authorization is checked before any lookup, so a caller never learns whether
another site's objects exist: every request for another site is 403, whatever
it names. The worker verifies tokens carried by commands on the bus with the
same :func:`verify_token` (``COMMANDS_REQUIRE_TOKEN=1``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import jwt

from processor.api.errors import ApiError
from processor.errors import ProcessorError

if TYPE_CHECKING:
    from processor.config import Settings

READ, WRITE_RULES, WRITE_CATALOG = "read", "write_rules", "write_catalog"
INGEST = "ingest"  # POST /sites/{site}/ingest/users (processor/http/ingest.py)
WRITE_SETTINGS = "write_settings"  # PUT /sites/{site}/settings (processor/http/catalog_admin.py)
ROLES_FOR = {
    READ: frozenset({"site_admin"}),
    WRITE_RULES: frozenset({"site_admin"}),
    WRITE_CATALOG: frozenset({"site_admin", "system"}),
    INGEST: frozenset({"system", "ingest"}),
    WRITE_SETTINGS: frozenset({"site_admin"}),
}
REQUIRED_CLAIMS = ("sub", "site_id", "roles", "exp", "iat")
DEFAULT_MAX_LIFETIME_S = 86400
MAX_TOKEN_CHARS = 8192  # far above any real token; a longer header is not parsed at all

MIN_SECRET_BYTES = 32
MIN_SECRET_DISTINCT_CHARS = 8
# Values people paste from examples. Under 32 bytes they are refused anyway; the list also
# catches them padded by repetition ("change-me-change-me-change-me-x").
PLACEHOLDER_SECRETS = ("change-me", "changeme", "change_me", "changeit", "secret", "mysecret",
                       "supersecret", "jwt-secret", "jwt_secret", "your-secret", "your-secret-here",
                       "test", "testing", "password", "admin", "default", "example", "dev", "xxx")


@dataclass(frozen=True, slots=True)
class Principal:
    sub: str
    site_id: str
    roles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AuthConfig:
    secret: str | None = None
    public_key: str | None = None
    leeway_s: int = 0
    audience: str | None = None  # verified when set (ADMIN_JWT_AUDIENCE)
    issuer: str | None = None  # verified when set (ADMIN_JWT_ISSUER)
    max_lifetime_s: int = DEFAULT_MAX_LIFETIME_S  # exp - iat (ADMIN_JWT_MAX_LIFETIME_S)

    @property
    def enabled(self) -> bool:
        return bool(self.secret or self.public_key)

    @classmethod
    def from_settings(cls, s: "Settings") -> "AuthConfig":
        return cls(secret=s.admin_jwt_secret, public_key=s.admin_jwt_public_key,
                   audience=s.admin_jwt_audience, issuer=s.admin_jwt_issuer,
                   max_lifetime_s=s.admin_jwt_max_lifetime_s)


def secret_problem(secret: str) -> str | None:
    """Why ``secret`` must not sign tokens (None when it may): too short, a known placeholder,
    or too little variety. Anyone who read an example could otherwise mint any token."""
    size = len(secret.encode())
    low = secret.strip().lower()
    for p in PLACEHOLDER_SECRETS:
        if re.fullmatch(rf"(?:{re.escape(p)}[-_. ]?)+\w{{0,3}}", low):
            return f"is the placeholder {p!r}"
    if size < MIN_SECRET_BYTES:
        return f"is {size} bytes; at least {MIN_SECRET_BYTES} are required"
    if len(set(secret)) < MIN_SECRET_DISTINCT_CHARS:
        return f"has only {len(set(secret))} distinct characters; use random bytes"
    return None


def authenticate(headers: Mapping[str, str], cfg: AuthConfig) -> Principal:
    """The verified principal, or 401 (missing, malformed, bad signature, expired)."""
    if not cfg.enabled:
        raise ApiError(401, "AUTH_NOT_CONFIGURED",
                       "the API is disabled: set ADMIN_JWT_SECRET (HS256) or ADMIN_JWT_PUBLIC_KEY (EdDSA/RS256)")
    header = headers.get("Authorization") or headers.get("authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "UNAUTHENTICATED", "send 'Authorization: Bearer <JWT>'")
    return verify_token(token.strip(), cfg)


def verify_token(token: str, cfg: AuthConfig) -> Principal:
    """Verify a compact JWT: signature, ``exp``/``iat``, ``aud``/``iss`` when configured, the
    required claims and their types, and the lifetime limit; else :class:`ApiError` 401."""
    if not cfg.enabled:
        raise ApiError(401, "AUTH_NOT_CONFIGURED",
                       "token verification is disabled: set ADMIN_JWT_SECRET or ADMIN_JWT_PUBLIC_KEY")
    if len(token) > MAX_TOKEN_CHARS:
        raise ApiError(401, "INVALID_TOKEN", f"the token is longer than {MAX_TOKEN_CHARS} characters")
    key, algorithms = (cfg.public_key, ["EdDSA", "RS256"]) if cfg.public_key else (cfg.secret, ["HS256"])
    required = [*REQUIRED_CLAIMS, *(["aud"] if cfg.audience else []), *(["iss"] if cfg.issuer else [])]
    try:
        claims: dict[str, Any] = jwt.decode(token, key, algorithms=algorithms, options={"require": required},
                                            audience=cfg.audience, issuer=cfg.issuer, leeway=cfg.leeway_s)
    except jwt.ExpiredSignatureError:
        raise ApiError(401, "TOKEN_EXPIRED", "the token has expired; get a new one") from None
    except jwt.MissingRequiredClaimError as exc:
        raise ApiError(401, "INVALID_TOKEN", f"the token lacks the required claim {exc.claim!r} "
                       f"(required: {', '.join(required)})") from None
    except jwt.InvalidTokenError as exc:
        raise ApiError(401, "INVALID_TOKEN", f"the token is not valid: {exc}") from None
    roles, site, sub = claims["roles"], claims["site_id"], claims["sub"]
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles) or not isinstance(site, str):
        raise ApiError(401, "INVALID_TOKEN",
                       "the token needs claims 'site_id' (string) and 'roles' (list of strings)")
    lifetime = claims["exp"] - claims["iat"]
    if lifetime > cfg.max_lifetime_s:
        raise ApiError(401, "TOKEN_LIFETIME_TOO_LONG",
                       f"the token is valid for {int(lifetime)} s (exp - iat); at most "
                       f"{cfg.max_lifetime_s} s are accepted: issue shorter-lived tokens")
    return Principal(str(sub), site, tuple(roles))


def command_principal(site_id: str, token: str | None, cfg: AuthConfig) -> Principal:
    """The verified issuer of a command on the bus (COMMANDS_REQUIRE_TOKEN=1): its token is
    checked exactly as the API checks a bearer token, and must be for the command's site.
    Otherwise :class:`ProcessorError` FORBIDDEN at ``$.auth_token`` (the command is REJECTED)."""
    if not token:
        raise ProcessorError("FORBIDDEN", "the command carries no auth_token, and this worker requires the "
                             "issuing admin's JWT (COMMANDS_REQUIRE_TOKEN=1): send it through the admin API, "
                             "or publish with ADMIN_TOKEN set", "$.auth_token")
    try:
        p = verify_token(token, cfg)
    except ApiError as err:
        raise ProcessorError("FORBIDDEN", f"the command's token is refused ({err.code}): {err.message}",
                             "$.auth_token") from None
    if p.site_id != site_id:
        raise ProcessorError("FORBIDDEN", f"the command's token is for site {p.site_id!r}, not {site_id!r}",
                             "$.auth_token")
    return p


def authorize(p: Principal, site_id: str, action: str) -> None:
    """403 unless the principal holds a role allowed for ``action`` on exactly this site."""
    if p.site_id != site_id:
        raise ApiError(403, "FORBIDDEN", "this token is not valid for that site")
    allowed = ROLES_FOR[action]
    if not allowed & set(p.roles):
        raise ApiError(403, "FORBIDDEN", f"requires role {' or '.join(sorted(allowed))}")


def make_token(secret: str, sub: str, site_id: str, roles: list[str], ttl_s: int = 3600,
               now: int | None = None) -> str:
    """Issue an HS256 token (dev runner, tests, ops tooling)."""
    import time

    iat = int(time.time()) if now is None else now
    return jwt.encode({"sub": sub, "site_id": site_id, "roles": roles, "iat": iat, "exp": iat + ttl_s},
                      secret, algorithm="HS256")
