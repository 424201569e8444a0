"""HTTP-facing errors: an HTTP status plus the machine code, path and message."""

from __future__ import annotations

from processor.errors import ProcessorError


class ApiError(ProcessorError):
    def __init__(self, status: int, code: str, message: str, path: str | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(code, message, path or "")
        self.status = status
        self.retry_after = retry_after  # seconds, sent as Retry-After (429, 503)

    def body(self) -> dict[str, str]:
        out = {"code": self.code, "message": self.message}
        if self.path:
            out["path"] = self.path
        return out

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
