"""`edgetwin status`: the running daemon's health, read from its /status.json, for a technician.

The daemon's metrics server (edgetwin.runtime.metrics) builds a :class:`Status` and serves it as
JSON beside /metrics; this module defines that document, fetches it, decides whether something
needs attention and renders it as plain text that reads well over SSH.
"""

from __future__ import annotations

import json
import math
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TextIO
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError

from edgetwin.errors import EdgetwinError

DEFAULT_PORT = 9877
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
STATUS_PATH = "/status.json"

EXIT_OK = 0
EXIT_ATTENTION = 1
EXIT_UNREACHABLE = 2

_MAX_BODY = 16 * 1024 * 1024


class _Doc(BaseModel):
    # Unknown keys are ignored so an older client can read a newer daemon's document.
    model_config = ConfigDict(extra="ignore", frozen=True)


class PointStatus(_Doc):
    """The twin's latest state of one point."""

    name: str
    unit: str = ""
    value: float | None = None  # None: no number could be read
    estimate: float | None = None
    score: float | None = None
    alarm: Literal["NORMAL", "WARNING", "ALARM"] = "NORMAL"
    quality: tuple[str, ...] = ()  # Quality flag names; empty means good
    ts: float | None = None  # unix s of the last reading; None: not read yet
    learning: bool = False  # still commissioning: the twin cannot alarm on it yet


class DeviceStatus(_Doc):
    """Availability and counters of one device, and its points."""

    name: str
    bus: str
    online: bool | None  # None until the first poll completed
    since: float  # unix s of the last online/offline change
    reason: str = ""  # why it went offline
    polls: int = 0
    failed_polls: int = 0
    overruns: int = 0
    breaker_open: bool = False
    errors: dict[str, int] = {}  # error kind → count since start
    points: tuple[PointStatus, ...] = ()


class AssetStatus(_Doc):
    """The twin's latest state of one asset, a multivariate model over points of its devices."""

    name: str
    device: str  # its first device (the only one, or the first of ``devices``)
    devices: tuple[str, ...] = ()  # every device it reads; absent from older documents
    alarm: Literal["NORMAL", "WARNING", "ALARM"] = "NORMAL"
    score: float | None = None
    contributions: dict[str, float] = {}  # point ("device.point" across devices) → share, 0..1
    ts: float | None = None  # unix s of its points' latest reading; None: not read yet
    learning: bool = False  # still commissioning: the twin cannot alarm on it yet
    away: bool = False  # scored against an operating point re-learnt after an alarm, not home


class UplinkStatus(_Doc):
    """The MQTT session."""

    broker: str
    connected: bool
    since: float  # unix s at which the daemon saw the state change
    published: int = 0


class BacklogStatus(_Doc):
    """The outbox: what waits for the broker's acknowledgement."""

    depth: int  # messages on disk
    bytes: int
    buffered: int = 0  # put but not committed yet
    oldest_age: float | None = None  # seconds; None when empty
    dropped_frames: int = 0  # ever, persisted with the database
    dropped_bytes: int = 0


class Status(_Doc):
    """Everything `edgetwin status` shows; served by the daemon as /status.json."""

    v: Literal[1] = 1
    gateway: str
    session: str
    version: str
    started: float  # unix s
    ts: float  # daemon clock when the document was built
    devices: tuple[DeviceStatus, ...]
    assets: tuple[AssetStatus, ...] = ()  # absent from an older daemon's document
    uplink: UplinkStatus
    backlog: BacklogStatus


class StatusUnavailableError(EdgetwinError):
    """The daemon could not be reached or did not answer with a status document."""

    def __init__(self, url: str, detail: str) -> None:
        self.url = url
        self.detail = detail
        super().__init__(f"cannot read the daemon's status from {url}: {detail}")


@dataclass(frozen=True, slots=True)
class Limits:
    """How long a degraded state may last before it needs attention."""

    uplink_down: float = 60.0  # s; longer than one reconnect at the default backoff cap
    backlog_age: float = 300.0  # s; the oldest unsent message


def status_url(url: str) -> str:
    """The /status.json address for a base URL (a full .json URL is kept as is)."""
    parts = urlsplit(url)
    if parts.path.endswith(".json"):
        return url
    return url.rstrip("/") + STATUS_PATH


def fetch_status(url: str, *, timeout: float = 5.0) -> Status:
    """GET the daemon's status document; StatusUnavailableError names the URL and the cause."""
    target = status_url(url)
    if urlsplit(target).scheme not in {"http", "https"}:
        raise StatusUnavailableError(target, "the URL must start with http:// or https://")
    # No proxy: the endpoint is the gateway itself, and an http_proxy variable must not divert it.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(target, timeout=timeout) as resp:
            body = resp.read(_MAX_BODY + 1)
    except urllib.error.HTTPError as exc:
        raise StatusUnavailableError(target, f"HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise StatusUnavailableError(
            target, f"{exc.reason}; is `edgetwin run` running with metrics on this address?"
        ) from exc
    except (OSError, ValueError) as exc:  # timeouts, resets, malformed URLs
        raise StatusUnavailableError(target, str(exc) or type(exc).__name__) from exc
    if len(body) > _MAX_BODY:
        raise StatusUnavailableError(target, "the answer is too large to be a status document")
    try:
        return Status.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise StatusUnavailableError(
            target, f"not an edgetwin status document ({where}: {first['msg']})"
        ) from exc


# -- attention -----------------------------------------------------------------------------


def attention(status: Status, limits: Limits = Limits()) -> list[str]:
    """Why the gateway needs a technician, one sentence each; empty when all is well."""
    now = status.ts
    out: list[str] = []
    for d in status.devices:
        if d.online is False:
            why = f": {d.reason}" if d.reason else ""
            out.append(f"device {d.name} offline since {_when(d.since, now)}{why}")
        for p in d.points:
            if p.alarm == "ALARM":
                out.append(
                    f"{d.name}/{p.name} in ALARM: value {_value(p)}, estimate "
                    f"{_num(p.estimate)}, score {_num(p.score, '.2f')}"
                )
            # An offline device's points are all bad; its own line already says why.
            if d.online is True and p.quality and p.ts is not None:
                out.append(f"{d.name}/{p.name} reads badly: {_quality(p)}")
    for a in status.assets:
        if a.alarm == "ALARM":
            top = _shares(a)
            out.append(
                f"asset {a.name} ({', '.join(_devices(a))}) in ALARM: "
                f"score {_num(a.score, '.2f')}" + (f"; mostly {top}" if top else "")
            )
    u = status.uplink
    if not u.connected and now - u.since > limits.uplink_down:
        out.append(f"uplink to {u.broker} disconnected for {_duration(now - u.since)}")
    b = status.backlog
    if b.oldest_age is not None and b.oldest_age > limits.backlog_age:
        out.append(f"backlog: {b.depth} messages waiting, the oldest for {_duration(b.oldest_age)}")
    if b.dropped_frames:
        out.append(
            f"{b.dropped_frames} frames ({_bytes(b.dropped_bytes)}) were dropped because the "
            "outbox was full: that data is lost"
        )
    return out


def needs_attention(status: Status, limits: Limits = Limits()) -> bool:
    """True when anything in :func:`attention` applies."""
    return bool(attention(status, limits))


# -- rendering -----------------------------------------------------------------------------


def render(status: Status, limits: Limits = Limits()) -> str:
    """A plain-text summary: attention items, devices and their points, assets, uplink, backlog."""
    now = status.ts
    issues = attention(status, limits)
    verdict = f"NEEDS ATTENTION ({len(issues)})" if issues else "OK"
    lines = [
        f"edgetwin {status.gateway}: {verdict}",
        f"  session {status.session}, version {status.version}, running for "
        f"{_duration(now - status.started)} (since {_clock(status.started)})",
    ]
    if issues:
        lines += ["", "Attention"] + [f"  ! {text}" for text in issues]
    lines += ["", "Devices"]
    for d in status.devices:
        lines += _device_lines(d, now)
    if not status.devices:
        lines.append("  (none configured)")
    if status.assets:
        lines += ["", "Assets", *_asset_lines(status.assets, now)]
    u = status.uplink
    state = "connected to" if u.connected else "DISCONNECTED from"
    lines += [
        "",
        "Uplink",
        f"  {state} {u.broker} since {_when(u.since, now)}",
        f"  {u.published} messages delivered since start",
    ]
    b = status.backlog
    oldest = "" if b.oldest_age is None else f", oldest waiting {_duration(b.oldest_age)}"
    lines += [
        "",
        "Backlog",
        f"  {b.depth} messages ({_bytes(b.bytes)}) waiting for the broker{oldest}; "
        f"{b.buffered} not yet on disk",
        f"  {b.dropped_frames} frames dropped over the size budget "
        f"({_bytes(b.dropped_bytes)}), ever",
    ]
    return "\n".join(lines)


def _device_lines(d: DeviceStatus, now: float) -> list[str]:
    if d.online is None:
        state = "WAITING for its first poll"
    else:
        state = f"{'ONLINE' if d.online else 'OFFLINE'} since {_when(d.since, now)}"
    lines = [f"  {d.name} (bus {d.bus})  {state}"]
    if d.online is False and d.reason:
        lines.append(f"      why: {d.reason}")
    errors = ", ".join(f"{k} {n}" for k, n in sorted(d.errors.items()) if n)
    lines.append(
        f"      polls {d.polls}, failed {d.failed_polls}, overruns {d.overruns}"
        + (f"; errors: {errors}" if errors else "")
    )
    if d.breaker_open:
        lines.append("      breaker open: only probed, after a growing pause")
    if not d.points:
        return lines
    rows = [("point", "value", "unit", "quality", "alarm", "score", "read")]
    rows += [
        (
            p.name,
            _value(p),
            p.unit,
            _quality(p),
            "learning" if p.learning else p.alarm,
            _num(p.score, ".2f"),
            "never" if p.ts is None else _ago(now - p.ts),
        )
        for p in d.points
    ]
    return lines + _table(rows, right={1, 5}, indent="      ")


def _asset_lines(assets: tuple[AssetStatus, ...], now: float) -> list[str]:
    rows = [("asset", "devices", "alarm", "score", "read", "top points")]
    rows += [
        (
            a.name,
            ",".join(_devices(a)),
            _asset_state(a),
            _num(a.score, ".2f"),
            "never" if a.ts is None else _ago(now - a.ts),
            _shares(a) or "-",
        )
        for a in assets
    ]
    return _table(rows, right={3}, indent="  ")


def _asset_state(a: AssetStatus) -> str:
    if a.learning:
        return "learning"
    return f"{a.alarm}, away" if a.away else a.alarm


def _devices(a: AssetStatus) -> tuple[str, ...]:
    """The devices an asset reads (an older daemon names only the one)."""
    return a.devices or (a.device,)


def _table(rows: Sequence[tuple[str, ...]], right: set[int], indent: str) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        indent
        + "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    ]


def _shares(a: AssetStatus, top: int = 3) -> str:
    if a.ts is None:
        return ""
    ranked = sorted(a.contributions.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{n} {share * 100:.0f} %" for n, share in ranked[:top] if share >= 0.005)


def _value(p: PointStatus) -> str:
    if p.ts is None or p.value is None or not math.isfinite(p.value):
        return "n/a"
    if p.value.is_integer() and abs(p.value) < 1e15:
        return f"{p.value:.0f}"  # counters and status words: every digit matters
    return f"{p.value:.6g}"


def _num(x: float | None, fmt: str = ".6g") -> str:
    return "n/a" if x is None or not math.isfinite(x) else format(x, fmt)


def _quality(p: PointStatus) -> str:
    if p.ts is None:
        return "-"
    return "good" if not p.quality else "|".join(q.lower() for q in p.quality)


def _clock(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _when(ts: float, now: float) -> str:
    return f"{_clock(ts)} ({_ago(now - ts)})"


def _ago(seconds: float) -> str:
    return "just now" if seconds < 1 else f"{_duration(seconds)} ago"


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{max(0.0, seconds):.1f} s"
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


# -- command -------------------------------------------------------------------------------


def run_status(
    url: str = DEFAULT_URL,
    *,
    as_json: bool = False,
    limits: Limits = Limits(),
    timeout: float = 5.0,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """`edgetwin status`: print the summary; exit 0 (all well), 1 (attention) or 2 (unreachable)."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        status = fetch_status(url, timeout=timeout)
    except StatusUnavailableError as exc:
        print(f"edgetwin status: {exc}", file=err)
        return EXIT_UNREACHABLE
    issues = attention(status, limits)
    if as_json:
        doc = status.model_dump(mode="json")
        doc["attention"] = issues
        print(json.dumps(doc, indent=2), file=out)
    else:
        print(render(status, limits), file=out)
    return EXIT_ATTENTION if issues else EXIT_OK
