"""Structured JSON log lines (one object per line) with the ids an operator greps for."""

from __future__ import annotations

import json
import logging
import time

_STD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extra}``; extras such as site_id, user_id,
    command_id come from ``log.info(..., extra={...})``."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in _STD and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def json_handler() -> logging.Handler:
    h = logging.StreamHandler()
    h.setFormatter(JsonFormatter())
    return h


# Faust/mode's level words -> logging's levels
_LEVELS = {"crit": logging.CRITICAL, "critical": logging.CRITICAL, "error": logging.ERROR, "warn": logging.WARNING,
           "warning": logging.WARNING, "info": logging.INFO, "debug": logging.DEBUG}


def worker_logging_config(level: str | int) -> dict[str, object]:
    """A ``logging.config.dictConfig`` for a Faust worker with JSON logs: the root logger's only
    handler is the JSON one on stderr. Faust (mode) otherwise installs its own stream handler and
    appends ``loghandlers`` next to it, so every record came out twice, plain and JSON."""
    lvl = level if isinstance(level, int) else _LEVELS.get(str(level).lower(), logging.INFO)
    return {
        "version": 1,
        "disable_existing_loggers": False,  # the processor's and Faust's loggers exist already
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"json": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "root": {"level": lvl, "handlers": ["json"]},
    }
