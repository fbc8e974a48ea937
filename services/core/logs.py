"""Structured logs: one JSON object per line, with the request id and trace id when there is one.

Callers pass facts as keyword fields (`log(logger, "rpc", method=..., code=...)`); personal data is
never passed, so it can never reach a log line.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from wuye.core.context import current_or_none


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        request = current_or_none()
        if request is not None:
            entry.setdefault("request_id", request.request_id)
            entry.setdefault("trace_id", request.trace_id)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(level: str, service: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("wuye").info("logging configured", extra={"fields": {"service": service}})


def log(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: object) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"fields": fields})
