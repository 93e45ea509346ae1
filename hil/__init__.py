"""Hardware-in-the-loop runner: drive devices through fault scenarios, score what the gateway saw.

``python -m hil run SCENARIO``; the scenario format, the report and the exit codes are in
``hil/README.md``.
"""
