"""Fixtures for the firmware stub tests: fail a test that leaves tasks or threads behind."""

from tests.support.leaks import no_leaks

__all__ = ["no_leaks"]
