"""``JsonFormatter``: one JSON object a line with the record's ``extra=`` fields; ``log_config`` for the process."""

from __future__ import annotations

import datetime
import io
import json
import logging
import logging.config
from collections.abc import Iterator
from pathlib import Path

import pytest

from txtoken.logs import JsonFormatter, log_config


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.jsonlog")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)
    logger.propagate = True


def test_extra_fields_become_members(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    logger.info("refused %s", "GET", extra={"status": 401, "code": "token_missing", "path": Path("/x")})
    line = json.loads(stream.getvalue())
    assert line["message"] == "refused GET"
    assert (line["level"], line["logger"]) == ("INFO", "test.jsonlog")
    assert (line["status"], line["code"], line["path"]) == (401, "token_missing", "/x")  # str() of non-JSON values
    assert datetime.datetime.fromisoformat(line["time"]).utcoffset() == datetime.timedelta(0)
    assert isinstance(line["process"], int)
    assert not {"args", "msg", "levelno", "pathname"} & set(line)


def test_one_line_per_record_with_the_exception(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed\nacross lines")
    (text,) = stream.getvalue().splitlines()
    line = json.loads(text)
    assert line["message"] == "failed\nacross lines"
    assert "ValueError: boom" in line["exception"]


@pytest.mark.parametrize(("log_format", "formatter"), [("json", JsonFormatter), ("text", logging.Formatter)])
def test_log_config_sets_one_formatter_for_every_logger(log_format: str, formatter: type) -> None:
    config = log_config("warning", "json" if log_format == "json" else "text")
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        logging.config.dictConfig(config)
        (handler,) = root.handlers
        assert type(handler.formatter) is formatter
        assert root.level == logging.WARNING
        assert logging.getLogger("uvicorn.error").handlers == []  # uvicorn's loggers propagate to the root
    finally:
        for handler in root.handlers:
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
