"""Running the processor's command-line tools against a broker of a test's own: its settings
read from environment variables, topics of its own, the CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

from processor.config import Settings, Topics


def topic_env(suffix: str) -> dict[str, str]:
    """TOPIC_* variables naming every topic ``<default name>.<suffix>``."""
    t = Topics()
    names = {"TOPIC_USER_EVENTS": t.user_events, "TOPIC_COMMANDS": t.commands,
             "TOPIC_MEMBERSHIP_CHANGES": t.membership_changes, "TOPIC_COMMAND_RESULTS": t.command_results,
             "TOPIC_DEAD_LETTERS": t.dead_letters, "TOPIC_CATALOG": t.catalog, "TOPIC_CONTROL": t.control}
    return {k: f"{v}.{suffix}" for k, v in names.items()}


def settings_from_env(env: dict[str, str]) -> Settings:
    """``Settings.from_env()`` with ``env`` added to this process's environment (restored after)."""
    old = dict(os.environ)
    os.environ.update(env)
    try:
        return Settings.from_env()
    finally:
        os.environ.clear()
        os.environ.update(old)


def processor_cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m processor ARGS`` with ``env`` and none of this process's KAFKA_* and
    SCHEMA_REGISTRY_* variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "SCHEMA_REGISTRY_"))}
    return subprocess.run([sys.executable, "-m", "processor", *args], capture_output=True, text=True,
                          env={**clean, **env}, timeout=timeout)
