"""Logging for the service and tools: the journal under systemd, readable stderr otherwise.

:func:`setup_logging` picks the handler once, at start. Structured fields (upper-case
names such as ``SESSION``, ``SNAPSHOT_SET_ID``, ``WRITER``) are passed with
:func:`log_fields` or a :func:`bind` adapter; in the journal they are fields
(``journalctl SESSION=3``), on stderr they follow the message as ``KEY=value``.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

from snapd_vss.errors import InvalidArgs

# Journal field names: upper-case letters, digits and '_', not starting with '_' or a digit.
_FIELD_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_HANDLER_MARK = "_snapd_vss_handler"
STDERR_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def running_under_journal(env: Mapping[str, str] | None = None, fd: int = 2) -> bool:
    """True when ``fd`` (stderr) is systemd's journal stream, or we are a systemd service
    whose stderr was not redirected elsewhere.

    systemd sets ``JOURNAL_STREAM=<dev>:<inode>`` of the stream it connects; a match with
    ``fd`` means our output goes to the journal anyway, so send it natively with fields.
    """
    env = os.environ if env is None else env
    stream = env.get("JOURNAL_STREAM", "")
    if stream:
        try:
            device, inode = (int(part) for part in stream.split(":", 1))
            info = os.fstat(fd)
        except (ValueError, OSError):
            return False
        return (info.st_dev, info.st_ino) == (device, inode)
    return bool(env.get("INVOCATION_ID"))


class FieldsFormatter(logging.Formatter):
    """The plain stderr format, with any structured fields appended as ``KEY=value``."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = record_fields(record)
        if fields:
            text += " " + " ".join(f"{key}={_quote(value)}" for key, value in fields.items())
        return text


def _quote(value: object) -> str:
    text = str(value)
    if text == "" or any(ch.isspace() or ch in "\"'=" for ch in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def record_fields(record: logging.LogRecord) -> dict[str, object]:
    """The structured fields a record carries (its upper-case attributes)."""
    return {key: value for key, value in vars(record).items() if _FIELD_NAME.match(key)}


def _journal_handler(identifier: str) -> logging.Handler:
    from systemd.journal import JournalHandler

    handler: logging.Handler = JournalHandler(SYSLOG_IDENTIFIER=identifier)
    return handler


def setup_logging(
    name: str,
    level: int | str = logging.INFO,
    *,
    env: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
) -> logging.Logger:
    """Send the root logger's records to the journal (under systemd) or to ``stream``
    (default stderr), at ``level``. ``name`` is the program's name (SYSLOG_IDENTIFIER).

    Calling it again replaces the handler it installed before. Returns the logger ``name``.
    """
    stream = sys.stderr if stream is None else stream
    handler: logging.Handler
    try:
        fd: int | None = stream.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (e.g. io.StringIO)
        fd = None
    if fd is not None and running_under_journal(env, fd):
        try:
            handler = _journal_handler(name)
        except ImportError:  # systemd-python not installed: journald still reads stderr
            handler = logging.StreamHandler(stream)
            handler.setFormatter(FieldsFormatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(FieldsFormatter(STDERR_FORMAT))
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    return logging.getLogger(name)


def _checked_fields(fields: Mapping[str, object]) -> dict[str, object]:
    for key in fields:
        if not _FIELD_NAME.match(key):
            raise InvalidArgs(
                f"log field name {key!r} is not valid; use upper-case letters, digits and '_' "
                "(e.g. SESSION, SNAPSHOT_SET_ID, WRITER)"
            )
    return dict(fields)


def log_fields(
    logger: logging.Logger | logging.LoggerAdapter[Any],
    level: int,
    message: str,
    *args: object,
    **fields: object,
) -> None:
    """Log ``message`` with structured ``fields``, e.g.
    ``log_fields(log, logging.INFO, "frozen", SESSION="3", WRITER="db")``."""
    logger.log(level, message, *args, extra=_checked_fields(fields), stacklevel=2)


class FieldsAdapter(logging.LoggerAdapter[logging.Logger]):
    """A logger that adds the same structured fields to every record (see :func:`bind`)."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return msg, kwargs


def bind(logger: logging.Logger, **fields: object) -> FieldsAdapter:
    """A logger whose records all carry ``fields``, e.g. ``bind(log, SESSION="3")``."""
    return FieldsAdapter(logger, _checked_fields(fields))
