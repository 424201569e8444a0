"""Bearer-token authentication and per-site authorization.

Tokens are JWTs signed with HS256 (``ADMIN_JWT_SECRET``) or EdDSA/RS256 (the
PEM public key in ``ADMIN_JWT_PUBLIC_KEY``). ``exp`` and ``sub`` are required;
``site_id`` and ``roles`` say what the bearer may do. Authorization is checked
before any lookup, so a caller never learns whether another site's objects
exist: every request for another site is 403, whatever it names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import jwt

from processor.api.errors import ApiError

READ, WRITE_RULES, WRITE_CATALOG = "read", "write_rules", "write_catalog"
INGEST = "ingest"  # POST /sites/{site}/ingest/users (processor/api/ingest.py)
ROLES_FOR = {
    READ: frozenset({"site_admin"}),
    WRITE_RULES: frozenset({"site_admin"}),
    WRITE_CATALOG: frozenset({"site_admin", "system"}),
    INGEST: frozenset({"system", "ingest"}),
}


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

    @property
    def enabled(self) -> bool:
        return bool(self.secret or self.public_key)


def authenticate(headers: Mapping[str, str], cfg: AuthConfig) -> Principal:
    """The verified principal, or 401 (missing, malformed, bad signature, expired)."""
    if not cfg.enabled:
        raise ApiError(401, "AUTH_NOT_CONFIGURED",
                       "the API is disabled: set ADMIN_JWT_SECRET (HS256) or ADMIN_JWT_PUBLIC_KEY (EdDSA/RS256)")
    header = headers.get("Authorization") or headers.get("authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "UNAUTHENTICATED", "send 'Authorization: Bearer <JWT>'")
    try:
        if cfg.public_key:
            claims: dict[str, Any] = jwt.decode(token.strip(), cfg.public_key, algorithms=["EdDSA", "RS256"],
                                                options={"require": ["exp", "sub"]}, leeway=cfg.leeway_s)
        else:
            claims = jwt.decode(token.strip(), cfg.secret, algorithms=["HS256"],
                                options={"require": ["exp", "sub"]}, leeway=cfg.leeway_s)
    except jwt.ExpiredSignatureError:
        raise ApiError(401, "TOKEN_EXPIRED", "the token has expired; get a new one") from None
    except jwt.InvalidTokenError as exc:
        raise ApiError(401, "INVALID_TOKEN", f"the token is not valid: {exc}") from None
    roles = claims.get("roles") or []
    site = claims.get("site_id")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles) or not isinstance(site, str):
        raise ApiError(401, "INVALID_TOKEN", "the token needs claims 'site_id' (string) and 'roles' (list)")
    return Principal(str(claims["sub"]), site, tuple(roles))


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
