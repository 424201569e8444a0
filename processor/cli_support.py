"""What the CLI's commands share: exit codes, errors, the default site, time format, Kafka checks.

Exit codes (documented in README "Exit codes"; scripts branch on them):

====  ============  ==============================================================================
0     OK            done; every command ACCEPTED
1     ERROR         bad input (a file, a value, an id) or the API refused the request (a 4xx)
2     USAGE         wrong options or arguments (click's own code)
3     UNREACHABLE   Kafka or a worker's API could not be reached (nothing was sent, or not all)
4     REJECTED      a command was REJECTED (its code and message are printed)
5     TIMED_OUT     no result within the wait: the command may still be applied later
====  ============  ==============================================================================

``moodle`` commands use 3 for "Moodle unavailable" too (docs/moodle.md).
"""

from __future__ import annotations

import datetime as _dt
import os
from typing import Any

import click

OK, ERROR, USAGE, UNREACHABLE, REJECTED, TIMED_OUT = 0, 1, 2, 3, 4, 5
EXIT_CODES = {OK: "OK", ERROR: "ERROR", USAGE: "USAGE", UNREACHABLE: "UNREACHABLE", REJECTED: "REJECTED",
              TIMED_OUT: "TIMED_OUT"}


class CliError(click.ClickException):
    """An error line (``Error: ...``) and a distinct exit code."""

    def __init__(self, message: str, exit_code: int = ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def error_text(code: str, message: str, path: str | None = None) -> str:
    """``CODE at PATH: message``, or ``CODE: message`` when there is no path (not ``at :``)."""
    return f"{code} at {path}: {message}" if path else f"{code}: {message}"


def processor_error(err: Any) -> CliError:
    """A ProcessorError as the CLI reports it: unreachable APIs exit 3, anything else 1."""
    code = getattr(err, "code", "ERROR")
    exit_code = UNREACHABLE if code in ("API_UNREACHABLE", "KAFKA_UNREACHABLE", "DEV_RUN_NOT_FOUND",
                                        "SCHEMA_REGISTRY_UNAVAILABLE") else ERROR
    return CliError(error_text(code, getattr(err, "message", str(err)), getattr(err, "path", "")), exit_code)


def token_site(token: str | None) -> str | None:
    """The ``site_id`` claim of a JWT, read without verifying it (the API verifies): only to pick
    the default ``--site``."""
    if not token:
        return None
    import jwt

    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    site = claims.get("site_id") if isinstance(claims, dict) else None
    return site if isinstance(site, str) and site else None


def resolve_site(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    """``--site`` callback: the given site, else the site of ``ADMIN_TOKEN``."""
    if value:
        return value
    site = token_site(os.environ.get("ADMIN_TOKEN"))
    if site:
        return site
    raise click.UsageError("give --site SITE (the default is the site_id of ADMIN_TOKEN, which is not set; "
                           "against `make run`: eval \"$(python -m processor dev token --export)\")", ctx)


site_option = click.option("--site", default=None, callback=resolve_site,
                           help="Site id (default: the site_id of ADMIN_TOKEN).")


def iso_time(ms: int | None) -> str:
    """Epoch milliseconds as local ISO-8601 with its UTC offset (``2024-05-01T14:03:07+02:00``): the
    console shows local time too, and the offset says which."""
    if ms is None:
        return "-"
    return _dt.datetime.fromtimestamp(ms / 1000, _dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def require_kafka(bootstrap: str, timeout: float = 10.0, security: Any = None) -> None:
    """Fail with exit code 3 unless the brokers at ``bootstrap`` answer a metadata request with the
    connection settings ``security`` (a :class:`processor.config.KafkaSecurity`; None: plaintext).
    A wrong TLS/SASL setting fails at once, naming the variable to fix (processor/kafka_security.py):
    exit 1 when the setting itself is unusable (KAFKA_SECURITY_INVALID), 3 when the broker refused
    it (KAFKA_TLS_FAILED, KAFKA_AUTH_FAILED)."""
    from processor import kafka_security
    from processor.runtime import clients

    try:
        clients.preflight(bootstrap, security, timeout)
    except kafka_security.KafkaUnreachable as err:
        raise CliError(f"{err.code}: {err.message}", UNREACHABLE) from None
    except kafka_security.KafkaSecurityError as err:
        raise CliError(error_text(err.code, err.message, err.path),
                       ERROR if err.code == "KAFKA_SECURITY_INVALID" else UNREACHABLE) from None
