"""``JsonFormatter``: one JSON object per log record, with the record's ``extra=`` fields as members.

::

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.getLogger("txtoken").addHandler(handler)

``txtoken serve --log-format json`` uses it for every logger of the process.
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any

__all__ = ["JsonFormatter"]

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
