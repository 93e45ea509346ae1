"""Logging to stderr in a form journald reads well."""

from __future__ import annotations

import logging
import os
import sys

# sd-daemon(3) priority prefixes: journald strips them and files the line at that level.
_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prio = _PRIORITY.get(record.levelno, 6)
        return f"<{prio}>" + super().format(record).replace("\n", "\n" + f"<{prio}>")


def setup_logging(level: str = "INFO") -> None:
    """Send logs to stderr: priority-prefixed under journald, timestamped elsewhere."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # pymodbus logs every failed transaction; our drivers log state changes instead.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
