"""``shouhu collector``: run the collector, inspect parked (dead-letter) messages."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from datetime import UTC, datetime
from typing import Any

import click

from collector.config import CollectorConfig, load_config

DEFAULT_CONFIG = "collector.yaml"


def _load(path: str | None) -> CollectorConfig:
    return load_config(path or DEFAULT_CONFIG)


@click.group()
def collector() -> None:
    """The collector: MQTT batches from gateways → dedup → time-series store."""


@collector.command()
@click.option(
    "--config", "config_path", default=DEFAULT_CONFIG, show_default=True,
    type=click.Path(dir_okay=False), help="collector YAML (see examples/collector.yaml)",
)  # fmt: skip
@click.option(
    "--status-every", type=click.FloatRange(min=0.5), default=None,
    help="seconds between status lines (default: status_interval_s of the config)",
)  # fmt: skip
@click.option("-v", "--verbose", is_flag=True, help="log at DEBUG")
def run(config_path: str, status_every: float | None, verbose: bool) -> None:
    """Subscribe, store and run the rules until SIGINT/SIGTERM; print a status line every N seconds.

    The status line counts messages, records, dead letters and, with rules on, open alerts
    and notifications sent. A bad configuration exits 2 with one line naming the field.
    """
    from collector.ingest import Collector

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config = _load(config_path)
    every = status_every or config.status_interval_s
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    col = Collector(config)
    col.start()
    rules = (
        f"rules on (registry {config.rules.registry})" if config.rules is not None else "rules off"
    )
    click.echo(f"collector: {config.broker.url} → {config.writer.kind}; {rules}", err=True)
    try:
        while not stop.wait(every):
            click.echo(f"{time.strftime('%H:%M:%S')} {col.stats().line()}", err=True)
    finally:
        col.stop()
        click.echo(f"stopped: {col.stats().line()}", err=True)


@collector.group()
@click.option(
    "--config", "config_path", default=DEFAULT_CONFIG, show_default=True,
    type=click.Path(dir_okay=False), help="collector YAML (its state.path holds the dead letters)",
)  # fmt: skip
@click.pass_context
def deadletters(ctx: click.Context, config_path: str) -> None:
    """Messages and records the collector parked instead of storing."""
    ctx.obj = _load(config_path)


@deadletters.command("list")
@click.option("--reason", default=None, help="only this reason (e.g. bad-envelope)")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@click.pass_obj
def list_(config: CollectorConfig, reason: str | None, limit: int, as_json: bool) -> None:
    """Newest first, with counts per reason."""
    from collector.deadletter import DeadLetters

    store = DeadLetters(config.state_path)
    try:
        letters = store.list(reason=reason, limit=limit)
        counts = store.counts()
    finally:
        store.close()
    for d in letters:
        payload = d.payload.decode("utf-8", "replace")
        if as_json:
            row = {k: getattr(d, k) for k in ("id", "ts", "topic", "gw", "reason", "detail")}
            click.echo(json.dumps({**row, "payload": payload}, ensure_ascii=False))
            continue
        when = datetime.fromtimestamp(d.ts / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        click.echo(f"#{d.id} {when}Z {d.reason} gw={d.gw or '?'} {d.topic}")
        click.echo(f"    {d.detail}")
        click.echo(f"    {payload[:200]}{'…' if len(payload) > 200 else ''}")
    if not as_json:
        total = ", ".join(f"{r}: {n}" for r, n in counts.items()) or "none"
        click.echo(f"dead letters in {config.state_path}: {total}")
