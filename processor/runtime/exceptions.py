"""Errors of the Kafka-facing runtime: each carries a code like every other ProcessorError.

``path`` names where: a topic and partition (``$topic.<name>[<partition>]``) or a setting
(``$env.<NAME>``).
"""

from __future__ import annotations

from processor.errors import ProcessorError


class ChangelogError(ProcessorError):
    """A users changelog record was not acknowledged: the local store holds a write the changelog
    does not, so the worker stops like a crash (the next owner replays and re-emits)."""

    def __init__(self, message: str, topic: str = "", partition: int | None = None) -> None:
        where = f"$topic.{topic}[{partition}]" if topic and partition is not None else "$"
        super().__init__("CHANGELOG_WRITE_FAILED", message, where)


class OutboxSendError(ProcessorError):
    """A membership change of a released batch was not acknowledged; the batch is queued again
    (at-least-once) and no input offset is committed past it."""

    def __init__(self, message: str, topic: str = "") -> None:
        super().__init__("OUTPUT_NOT_DELIVERED", message, f"$topic.{topic}" if topic else "$")


class OutputDeliveryError(ProcessorError):
    """The output client still had unacknowledged records when its flush gave up."""

    def __init__(self, message: str) -> None:
        super().__init__("OUTPUT_FLUSH_TIMEOUT", message)


class DeadLetterSendError(ProcessorError):
    """The broker did not take a dead letter within the client's delivery timeout (its input
    partition is then paused until a retry succeeds: processor/runtime/dead_letters.py)."""

    def __init__(self, message: str, topic: str = "") -> None:
        super().__init__("DEAD_LETTER_NOT_SENT", message, f"$topic.{topic}" if topic else "$")


class InvalidSetting(ProcessorError, ValueError):
    """A setting the worker cannot run with (refused at start, not at first use)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__("INVALID_SETTING", message, f"$env.{name}")
