"""The run's result as a rich table for the operator and as a JSON report for the rig's records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from hil.runner import RunResult, describe


def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def table(result: RunResult) -> Table:
    """One row per expectation of each fault window."""
    sc = result.scenario
    t = Table(title=f"{sc.name} ({result.mode})", title_justify="left")
    for col in ("fault", "window s", "expectation", "within s", "result", "delay s", "cleared"):
        t.add_column(col)
    t.add_column("ok", justify="center")
    for r in result.score.windows:
        w = r.window
        cleared = "—"
        if r.detected_at is not None:
            cleared = f"at {r.cleared_at:.2f}" if r.cleared_at is not None else "no"
            if not r.expect.clears:
                cleared += " (not required)"
        t.add_row(
            w.fault,
            f"{w.start:g} to {w.end:g}",
            r.expect.label,
            f"{r.expect.within:g}",
            r.status,
            _s(r.delay),
            cleared,
            "[green]✔[/green]" if r.ok else "[red]✘[/red]",
        )
    return t


def show(result: RunResult, console: Console) -> None:
    """Print the table, the false alarms, the notes and the verdict."""
    console.print(table(result))
    false, allowed = result.score.false_alarms, result.score.false_alarms_allowed
    style = "green" if len(false) <= allowed else "red"
    console.print(f"[{style}]false alarms: {len(false)} (allowed {allowed})[/{style}]")
    for e in false:
        console.print(f"  {e.t:+8.2f} s  {describe(e.body)}", highlight=False)
    for note in result.notes:
        console.print(f"[red]{note}[/red]", highlight=False)
    verdict = (
        "[bold green]PASSED[/bold green]"
        if result.exit_code == 0
        else "[bold red]FAILED[/bold red]"
    )
    console.print(f"{verdict} ({len(result.events)} events)")


def to_json(result: RunResult, *, source: Path, scale: float) -> dict[str, Any]:
    """The JSON report: scenario, per-window results, false alarms and every event."""
    sc = result.scenario
    return {
        "scenario": {
            "name": sc.name,
            "description": sc.description,
            "file": str(source),
            "mode": result.mode,
            "scale": scale,
            "duration": sc.duration,
            "clear_grace": sc.clear_grace,
            "lead": result.lead,
            "broker": result.broker,
        },
        "passed": result.exit_code == 0,
        "exit_code": result.exit_code,
        "windows": [r.to_json() for r in result.score.windows],
        "false_alarms": [e.to_json() for e in result.score.false_alarms],
        "false_alarms_allowed": result.score.false_alarms_allowed,
        "gateway_exit": result.gateway_exit,
        "notes": result.notes,
        "events": [e.to_json() for e in result.events],
    }


def write(result: RunResult, out: Path, *, source: Path, scale: float) -> None:
    """Write the JSON report to ``out``."""
    out.write_text(json.dumps(to_json(result, source=source, scale=scale), indent=2) + "\n")
