"""Wires every layer together: supervisor, shutdown, systemd notify, logging."""
