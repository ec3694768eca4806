"""Structured logs: one JSON object per line, carrying the request or job id, with secrets masked."""
from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import re
import sys
from typing import Iterator

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_job: contextvars.ContextVar[tuple[int, str] | None] = contextvars.ContextVar("job", default=None)

_SECRET_PATTERNS = [
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)([^\"'\n]+)"),
    re.compile(r"(?i)((?:access_token|refresh_token|consumer_secret|consumer_key|password|api_key|secret|authorization|token)"
               r"[\"']?\s*[:=]\s*[\"']?)([^\s\"',&}]+)"),
    re.compile(r"(?i)(bearer\s+)([A-Za-z0-9._~+/=-]+)"),
    re.compile(r"(?i)(://[^:/@\s]+:)([^@\s]+)(@)"),
]
_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def mask_secrets(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "***" + (m.group(3) if m.lastindex and m.lastindex >= 3 else ""), text)
    return text


@contextlib.contextmanager
def request_log_context(request_id: str) -> Iterator[None]:
    token = _request_id.set(request_id)
    try:
        yield
    finally:
        _request_id.reset(token)


@contextlib.contextmanager
def job_log_context(job_id: int, kind: str) -> Iterator[None]:
    token = _job.set((job_id, kind))
    try:
        yield
    finally:
        _job.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if (request_id := _request_id.get()) is not None:
            entry["request_id"] = request_id
        if (job := _job.get()) is not None:
            entry["job_id"], entry["job_kind"] = job
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_") and value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return mask_secrets(json.dumps(entry, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = ""
        if (request_id := _request_id.get()) is not None:
            prefix = f"[req {request_id}] "
        elif (job := _job.get()) is not None:
            prefix = f"[job {job[0]} {job[1]}] "
        return mask_secrets(prefix + super().format(record))


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_companion", False):
            root.removeHandler(existing)
    handler._companion = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # Libraries narrate every step at INFO; their warnings are what an operator needs.
    for chatty in ("alembic", "celery", "kombu", "apscheduler", "werkzeug"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLevelName(level)))
