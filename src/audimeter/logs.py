"""Logging set-up: readable lines by default, one JSON object per line on request; and
`ProblemLog`, which logs a recurring failure once per change instead of at every attempt."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Collection, Hashable
from datetime import UTC, datetime
from typing import Literal

LogFormat = Literal["text", "json"]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str = "info", fmt: LogFormat = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%Y-%m-%d %H:%M:%S"
            )
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request URL at INFO; audimeter reports what matters itself.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


class ProblemLog:
    """Logs each thing's problem once when it starts or changes, and once when it is over.

    A thing is whatever `key` names (a source, a mount, a stream, a file). A problem seen again
    unchanged goes to DEBUG only, so a server failing every poll is one warning, not thousands.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger
        self._problems: dict[Hashable, str] = {}

    def failed(self, key: Hashable, problem: str, message: str, *args: object) -> None:
        """`key` has `problem`; `message % args` is the warning when that is news."""
        if self._problems.get(key) == problem:
            self._log.debug(message, *args)
            return
        self._problems[key] = problem
        self._log.warning(message, *args)

    def succeeded(self, key: Hashable, message: str, *args: object) -> None:
        """`key` works; `message % args` is logged when it had a problem until now."""
        if self._problems.pop(key, None) is not None:
            self._log.info(message, *args)

    def retain(self, keys: Collection[Hashable]) -> None:
        """Forget, quietly, the problems of things no longer followed: a mount or stream that
        went away takes its problem with it, and one coming back failing is news again."""
        for key in self._problems.keys() - set(keys):
            del self._problems[key]
