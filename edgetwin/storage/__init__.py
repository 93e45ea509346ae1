"""Durable storage: the SQLite store-and-forward outbox between the twin and the uplink."""

from __future__ import annotations

from edgetwin.storage.outbox import KINDS, DropRecord, Outbox, OutboxRow, OutboxStats

__all__ = ["KINDS", "DropRecord", "Outbox", "OutboxRow", "OutboxStats"]
