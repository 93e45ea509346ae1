"""Per-device coordinators: polling schedule, backoff and availability."""
