"""Device-side simulators (firmware stubs) that edgetwin's tests and demo talk to."""
