"""Structured rule compile errors."""

from __future__ import annotations

from processor.errors import ProcessorError


class RuleError(ProcessorError):
    """One problem in a condition tree.

    Codes: INVALID_CONDITION (malformed JSON/tree), UNKNOWN_FIELD,
    INVALID_OPERATOR (unknown, or not valid for the field's type),
    INVALID_VALUE (wrong value type, or not a menu option).
    """

    def __init__(self, code: str, message: str, path: str = "$", suggestion: str | None = None) -> None:
        if suggestion:
            message = f"{message} (did you mean {suggestion!r}?)"
        super().__init__(code, message, path)
        self.suggestion = suggestion


class CompileError(ProcessorError):
    """A condition tree failed to compile; ``errors`` lists every problem found."""

    def __init__(self, errors: list[RuleError]) -> None:
        first = errors[0]
        extra = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(first.code, first.message + extra, first.path)
        self.errors = errors
