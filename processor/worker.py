"""Edge: run one Faust worker process."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, NoReturn

from processor.config import Settings
from processor.topics import TopicCreateError, TopicLayoutError, ensure_topics

if TYPE_CHECKING:
    from processor.runtime.app import Runtime

LEVELS = {"critical": "crit", "warning": "warn"}


def run_worker(settings: Settings) -> None:
    """Ensure topics exist (idempotent), then run the Faust worker until stopped."""
    import faust

    json_logs = os.environ.get("LOG_FORMAT", "json").lower() == "json"
    if not json_logs:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    refuse_insecure_settings(settings, json_logs)
    runtime = start_or_refuse(settings, json_logs)
    level = LEVELS.get(settings.log_level, settings.log_level)
    from processor.logs import worker_logging_config

    # JSON: our handler replaces Faust's (mode's) own stream handler instead of joining it, which
    # wrote every line twice (plain and JSON)
    worker = faust.Worker(runtime.app, loglevel=level,
                          logging_config=worker_logging_config(level) if json_logs else None)
    # Faust's terminal spinner (enabled at levels >= warn) sets the root logger to DEBUG so it
    # can spin on every record: every debug call in faust/aiokafka then builds a LogRecord
    # (measured: ~7% of a worker's CPU in a backfill). A worker has no terminal to spin in.
    worker.spinner = None
    worker.execute_from_commandline()


def start_or_refuse(settings: Settings, json_logs: bool = True) -> "Runtime":
    """Check the installed faust-streaming, the broker profile, the connection to Kafka (TLS/SASL
    preflight: a refused login fails within seconds, naming the setting), the topics and the
    Schema Registry subjects, then build the worker; exit with status 2 and the reason when one
    of them is not right. A registry that does not answer yet is not fatal: the worker holds its
    input until it does (docs/deploy.md "Schema Registry")."""
    from processor.errors import ProcessorError
    from processor.runtime import clients, faust_compat
    from processor.runtime.broker_profile import profile_for
    from processor.wire import SchemaRegistryUnavailable, WireFormat

    try:
        faust_compat.apply()
        profile_for(settings)
        clients.preflight(settings.bootstrap_servers, settings.kafka_security, timeout=30.0)
    except ProcessorError as err:
        _refuse(err.code, f"{err.path}: {err.message}" if err.path not in ("", "$") else err.message, json_logs)
    settings = settings.with_(replication_factor=checked_topics(settings, json_logs))
    try:
        WireFormat.from_settings(settings).check()
    except SchemaRegistryUnavailable as err:
        logging.getLogger("processor").warning("%s; input is held until it answers", err,
                                               extra={"error_code": err.code})
    except ProcessorError as err:
        _refuse(err.code, err.message, json_logs)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    from processor.runtime.app import Runtime

    return Runtime(settings)


def _refuse(code: str, message: str, json_logs: bool) -> NoReturn:
    log = logging.getLogger("processor")
    if json_logs and not logging.getLogger().handlers:
        from processor.logs import json_handler

        logging.getLogger().addHandler(json_handler())
    log.critical("refusing to start: %s", message, extra={"error_code": code})
    raise SystemExit(2)


def security_problems(settings: Settings) -> list[str]:
    """What makes these settings unsafe to serve with (empty: none)."""
    from processor.api.auth import secret_problem

    out = []
    if settings.admin_jwt_secret:
        why = secret_problem(settings.admin_jwt_secret)
        if why:
            out.append(f"ADMIN_JWT_SECRET {why}: anyone who knows or guesses it can mint a site_admin token "
                       "for any site. Set 32+ random bytes, e.g. "
                       "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
    if settings.admin_jwt_max_lifetime_s <= 0:
        out.append("ADMIN_JWT_MAX_LIFETIME_S must be a positive number of seconds")
    if settings.commands_require_token and not (settings.admin_jwt_secret or settings.admin_jwt_public_key):
        out.append("COMMANDS_REQUIRE_TOKEN=1 needs ADMIN_JWT_SECRET or ADMIN_JWT_PUBLIC_KEY "
                   "to verify command tokens")
    return out


def refuse_insecure_settings(settings: Settings, json_logs: bool = True) -> None:
    """Log why and exit with status 2 when :func:`security_problems` finds anything."""
    problems = security_problems(settings)
    if not problems:
        return
    log = logging.getLogger("processor")
    if json_logs and not logging.getLogger().handlers:
        from processor.logs import json_handler

        logging.getLogger().addHandler(json_handler())
    for p in problems:
        log.critical("refusing to start: %s", p, extra={"error_code": "INSECURE_CONFIG"})
    raise SystemExit(2)


def checked_topics(settings: Settings, json_logs: bool = True) -> int:
    """Create missing topics and check the others (processor/topics.py); exit with status 2 when a
    topic cannot be created or its layout is wrong (or a config drifted, with TOPICS_STRICT=1).
    Returns the replication factor in use."""
    try:
        return ensure_topics(settings).replication_factor
    except (TopicLayoutError, TopicCreateError) as err:
        _refuse(err.code, err.message, json_logs)
