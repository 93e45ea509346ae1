"""The only code that touches sockets, ttys and buses."""
