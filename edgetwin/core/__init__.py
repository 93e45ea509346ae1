"""Plain data types shared by every layer; no I/O, no asyncio."""
