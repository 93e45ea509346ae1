"""Bytes ⇄ frames and register codecs: pure, no asyncio, no I/O."""
