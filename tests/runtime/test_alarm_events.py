"""Which twin alarm changes become MQTT events: raises and clears of ALARM, not WARNING flicker."""

from __future__ import annotations

import json
from pathlib import Path

from edgetwin.config import load_config_text
from edgetwin.core.types import Alarm
from edgetwin.runtime.gateway import Gateway
from edgetwin.runtime.twin_stage import AlarmChange

CONFIG = """
[gateway]
id = "gw"
state_dir = "{state}"

[[buses]]
name = "plant"
kind = "modbus_tcp"
host = "127.0.0.1"

[[devices]]
name = "pump"
bus = "plant"
points = [{{ name = "flow", table = "input", address = 0, type = "float32" }}]
"""


def change(before: Alarm, after: Alarm, score: float) -> AlarmChange:
    return AlarmChange(
        device="pump",
        point="flow",
        index=0,
        before=before,
        after=after,
        ts=1.0,
        value=3.0,
        estimate=2.0,
        score=score,
        severity="minor",
    )


async def test_warning_flicker_makes_no_event_and_alarm_raise_and_clear_do(
    tmp_path: Path,
) -> None:
    cfg = load_config_text(CONFIG.format(state=tmp_path), filename="t.toml")
    gw = Gateway(cfg, session="s1")
    await gw.outbox.open()
    try:
        gw._put_alarms(
            [
                change(Alarm.NORMAL, Alarm.WARNING, 0.6),
                change(Alarm.WARNING, Alarm.NORMAL, 0.2),
                change(Alarm.WARNING, Alarm.ALARM, 1.3),
                change(Alarm.ALARM, Alarm.WARNING, 0.7),
                change(Alarm.NORMAL, Alarm.ALARM, 2.5),
                change(Alarm.ALARM, Alarm.NORMAL, 0.1),
            ]
        )
        await gw.outbox.flush()
        rows = await gw.outbox.pending(100)
    finally:
        await gw.outbox.close()
    assert {r.topic for r in rows} == {gw.topics.events}
    events = [json.loads(r.payload) for r in rows]
    assert [(e["previous"], e["alarm"]) for e in events] == [(1, 2), (2, 1), (0, 2), (2, 0)]
    assert gw.stats.events == 4
    assert [e.get("severity") for e in events] == ["minor", None, "minor", None]
