"""Base error type shared by all subpackages.

Every error the processor reports to an operator carries a machine ``code``,
a ``path`` (where in the input the problem is, JSON-path style) and a message
an admin can act on.
"""

from __future__ import annotations


class ProcessorError(Exception):
    """An error with a machine code, a location and an actionable message."""

    def __init__(self, code: str, message: str, path: str = "$") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.path = path

    def __str__(self) -> str:
        if not self.path:  # an error about no place in particular: not "CODE at : message"
            return f"{self.code}: {self.message}"
        return f"{self.code} at {self.path}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "path": self.path, "message": self.message}
