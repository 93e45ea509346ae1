"""The demo's live view: one row per point, updated in place, and the latest alarm changes."""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from edgetwin.cloud.mirror import PointUpdate
from edgetwin.core.types import Alarm, Quality

_STYLE = {Alarm.NORMAL: "green", Alarm.WARNING: "yellow", Alarm.ALARM: "bold red"}


@dataclass
class DemoView:
    """What the demo shows; fed by the cloud-side Mirror's updates."""

    broker: str
    fault_at: float | None = None
    fault: str = "cavitation"
    started: float = field(default_factory=time.monotonic)
    points: dict[str, PointUpdate] = field(default_factory=dict)
    raised: dict[str, float] = field(default_factory=dict)  # point → elapsed s of first ALARM
    changes: deque[str] = field(default_factory=lambda: deque(maxlen=6))
    updates: int = 0
    session: str = ""

    def elapsed(self) -> float:
        """Seconds since the demo started."""
        return time.monotonic() - self.started

    def feed(self, u: PointUpdate) -> None:
        """Take one decoded point update."""
        before = self.points.get(u.id)
        self.points[u.id] = u
        self.updates += 1
        self.session = u.session
        t = self.elapsed()
        if before is not None and before.alarm != u.alarm:
            self.changes.append(
                f"t={t:5.1f} s  {u.id}: {before.alarm.name} → {u.alarm.name} (score {u.score:.2f})"
            )
        if u.alarm == Alarm.ALARM and u.id not in self.raised:
            self.raised[u.id] = t

    def render(self, outbox_depth: int, frames_sent: int) -> Group:
        """The table, the status line and the latest alarm changes."""
        table = Table(title="edgetwin demo: PD-100 pump over Modbus TCP", box=box.SIMPLE_HEAD)
        table.add_column("point", no_wrap=True)
        table.add_column("unit", no_wrap=True)
        for col in ("raw", "estimate", "score"):
            table.add_column(col, justify="right", no_wrap=True)
        table.add_column("alarm", no_wrap=True)
        table.add_column("quality", no_wrap=True)
        for key in sorted(self.points):
            u = self.points[key]
            style = _STYLE[u.alarm]
            raw = "—" if math.isnan(u.value) else f"{u.value:,.3f}"
            bar = "█" * min(8, int(u.score * 4))
            quality = "ok" if u.quality == Quality.GOOD else (u.quality.name or "bad").lower()
            table.add_row(
                key,
                u.unit,
                raw,
                f"{u.estimate:,.3f}",
                Text(f"{bar} {u.score:6.2f}", style=style),
                Text(u.alarm.name, style=style),
                quality,
            )
        t = self.elapsed()
        if self.fault_at is None:
            fault = "no fault scheduled"
        elif t < self.fault_at:
            fault = f"{self.fault} fault in {self.fault_at - t:.0f} s"
        else:
            fault = f"[bold red]{self.fault}[/] injected at {self.fault_at:.0f} s"
        status = Text.from_markup(
            f"t={t:.0f} s · {fault} · frames sent {frames_sent} · outbox {outbox_depth} · "
            f"broker {self.broker}"
        )
        parts: list[Table | Text] = [table, status]
        if self.changes:
            parts.append(Text("\n".join(self.changes), style="dim"))
        return Group(*parts)
