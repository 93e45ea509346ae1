"""Physics models behind the simulated devices."""

from firmware_stubs.physics.pump import PumpModel

__all__ = ["PumpModel"]
