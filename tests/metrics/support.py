"""Shared helpers for the metrics tests: HTTP against the real server, live views."""

from __future__ import annotations

import asyncio
import io
import json
import urllib.error
import urllib.request
from dataclasses import dataclass

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from edgetwin.config import load_config_text
from edgetwin.runtime.metrics import GatewayMetrics, UplinkView, twin_assets, twin_points
from edgetwin.runtime.twin_stage import TwinStage
from edgetwin.status import run_status
from edgetwin.storage.outbox import OutboxStats


def _get(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(url, method=method)
    try:
        with opener.open(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


async def http_get(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one request, made by urllib off the event loop."""
    return await asyncio.to_thread(_get, url, method)


async def scrape(base: str) -> dict[str, Metric]:
    """GET /metrics and parse it with prometheus_client's own parser, by family name."""
    code, headers, body = await http_get(base + "/metrics")
    assert code == 200, body
    assert headers["Content-Type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def samples(family: Metric, suffix: str = "") -> dict[tuple[tuple[str, str], ...], float]:
    """A family's samples named ``family.name + suffix``, keyed by their sorted labels."""
    return {
        tuple(sorted(s.labels.items())): s.value
        for s in family.samples
        if s.name == family.name + suffix
    }


@dataclass
class Uplink:
    """A mutable stand-in for the uplink's two fields the metrics read."""

    connected: bool = False
    published: int = 0
    broker: str = "127.0.0.1:1883"

    def view(self) -> UplinkView:
        return UplinkView(self.connected, self.published, self.broker)


def no_outbox() -> OutboxStats:
    """An empty outbox."""
    fields = OutboxStats.__dataclass_fields__
    return OutboxStats(**{k: (None if k == "oldest_age" else 0) for k in fields})


def wired(config: str) -> tuple[TwinStage, GatewayMetrics]:
    """The twin stage of ``config`` and metrics bound to it as the gateway binds them."""
    cfg = load_config_text(config, filename="t.toml")
    stage = TwinStage(cfg)
    metrics = GatewayMetrics("edge-01", "s")
    metrics.bind(
        devices=list,
        points=twin_points(cfg, stage),
        outbox=no_outbox,
        uplink=Uplink(connected=True).view,
        assets=twin_assets(stage),
    )
    return stage, metrics


async def status_of(base: str) -> tuple[int, str, dict[str, object]]:
    """`edgetwin status` against ``base``: exit code, the table and the JSON document."""
    text, js = io.StringIO(), io.StringIO()
    rc = await asyncio.to_thread(run_status, base, out=text, err=io.StringIO())
    assert rc == await asyncio.to_thread(run_status, base, as_json=True, out=js)
    return rc, text.getvalue(), json.loads(js.getvalue())
