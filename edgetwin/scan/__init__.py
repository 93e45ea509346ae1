"""Discovery on a bus: which devices answer."""
