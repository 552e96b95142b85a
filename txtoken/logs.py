"""Logging: ``JsonFormatter`` (one JSON object per record, its ``extra=`` fields as members) and the process-wide
configuration of ``txtoken serve`` (``--log-level``, ``--log-format``).

::

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.getLogger("txtoken").addHandler(handler)
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any, Literal

__all__ = ["LOG_FORMATS", "LOG_LEVELS", "JsonFormatter", "LogFormat", "log_config"]

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")

# The attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """Formats a record as ``{"time", "level", "logger", "message", "process", ...extra fields}``.

    ``time`` is ISO 8601 in UTC with milliseconds; an exception is a string member ``exception``. Values JSON cannot
    represent are written as their ``str``.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and name not in entry:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


def log_config(level: str = "info", log_format: LogFormat = "text") -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` for the whole process (uvicorn's loggers included): one handler on
    standard error writing the message alone (``text``) or one JSON object a line (``json``)."""
    formatter: dict[str, Any] = (
        {"()": "txtoken.logs.JsonFormatter"} if log_format == "json" else {"format": "%(message)s"}
    )
    propagate = {"handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "default": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
        },
        "root": {"handlers": ["default"], "level": level.upper()},
        "loggers": {"uvicorn": propagate, "uvicorn.error": propagate, "uvicorn.access": propagate},
    }
