"""Shared test support: real brokers, free ports, child processes."""
