"""``shouhu demo``: the whole pipeline in one process, with no services to install.

An embedded MQTT broker, a collector on SQLite and N edge agents whose ``sim`` sources walk
simulated wearers past them, all in a temporary directory. At the end it checks the promise
the system makes: every reading a gateway accepted into its outbox is stored exactly once.

    shouhu demo --duration 30 --gateways 4 --wearers 12
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click

from shouhu.exceptions import BrokerError

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 20.0  # after the agents stop: outboxes empty, collector caught up


@dataclass(frozen=True, slots=True)
class DemoOptions:
    duration_s: float = 60.0
    gateways: int = 4
    wearers: int = 12
    seed: int = 1
    workdir: Path | None = None  # default: a temporary directory, removed afterwards


@dataclass(frozen=True, slots=True)
class DemoSummary:
    """What the demo proves. ``lost`` must be 0."""

    duration_s: float
    gateways: int
    wearers: int
    accepted: int  # readings the gateways accepted into their outboxes (seq assigned)
    published: int  # records the gateways published (retries included)
    stored: int  # distinct records in the store
    duplicates: int  # redelivered records the collector dropped
    dead_letters: int
    evicted: int  # routine sightings a full outbox dropped on purpose (0 in the demo)
    lost: int  # accepted - stored - evicted
    undrained: int  # records still in outboxes when the demo gave up waiting
    latency_p50_ms: int | None  # radio time → stored
    latency_p99_ms: int | None
    by_gateway: dict[str, dict[str, int]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        def ms(v: int | None) -> str:
            return "n/a" if v is None else f"{v} ms"

        return "\n".join(
            [
                f"shouhu demo: {self.gateways} gateways, {self.wearers} wearers, "
                f"{self.duration_s:.0f} s",
                f"  accepted by gateways  {self.accepted}",
                f"  published             {self.published}",
                f"  stored                {self.stored}",
                f"  duplicates dropped    {self.duplicates}",
                f"  dead letters          {self.dead_letters}",
                f"  lost                  {self.lost}{'' if self.lost == 0 else '   <-- FAIL'}",
                f"  latency radio→stored  (exits excluded) p50 {ms(self.latency_p50_ms)}, "
                f"p99 {ms(self.latency_p99_ms)}",
            ]
        )


def run_demo(options: DemoOptions, on_status: Callable[[str], None] | None = None) -> DemoSummary:
    """Run the pipeline for ``options.duration_s`` and return the summary."""
    if options.workdir is not None:
        options.workdir.mkdir(parents=True, exist_ok=True)
        return _run(options, options.workdir, on_status)
    with tempfile.TemporaryDirectory(prefix="shouhu-demo-") as tmp:
        return _run(options, Path(tmp), on_status)


def _run(
    options: DemoOptions, workdir: Path, on_status: Callable[[str], None] | None
) -> DemoSummary:
    from collector.broker import EmbeddedBroker
    from collector.config import BrokerConfig, CollectorConfig, WriterConfig
    from collector.ingest import Collector
    from collector.writers.sqlite import SqliteWriter

    broker = EmbeddedBroker()
    broker.start()
    writer = SqliteWriter({"path": str(workdir / "records.db")})
    config = CollectorConfig(
        broker=BrokerConfig(host=broker.host, port=broker.port, client_id="shouhu-demo-collector"),
        writer=WriterConfig("sqlite", {"path": str(workdir / "records.db")}),
        state_path=str(workdir / "collector-state.db"),
        retry_max_s=1.0,
    )
    collector = Collector(config, writer=writer)
    gateways: list[_Gateway] = []
    try:
        collector.start()
        if not collector.wait_connected(10):
            raise BrokerError(
                f"the collector could not connect to the embedded broker {broker.url}"
            )
        for i in range(options.gateways):
            gw = _Gateway(f"gw-demo-{i + 1:02d}", workdir, broker.port, options, i)
            gateways.append(gw)
            gw.start()
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < options.duration_s:
            if on_status is not None:
                on_status(_status(elapsed, gateways, collector))
            time.sleep(min(1.0, max(0.0, options.duration_s - elapsed)))
        for gw in gateways:
            gw.stop_radio()  # no new frames; aggregator exits flushed into the outbox
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline and any(gw.depth() for gw in gateways):
            if on_status is not None:
                on_status(_status(time.monotonic() - started, gateways, collector, "draining"))
            time.sleep(0.1)
        for gw in gateways:
            gw.stop()  # takes the final counts, publishes "offline", closes the outbox
        undrained = sum(gw.depth() for gw in gateways)
        accepted = {gw.gw: gw.accepted() for gw in gateways}
        # The outboxes are empty once the broker acked; the collector may still be storing.
        want = sum(accepted.values())
        while time.monotonic() < deadline and writer.count() < want:
            time.sleep(0.05)
        collector.wait_idle(max(0.1, deadline - time.monotonic()))
        if on_status is not None:
            on_status(_status(time.monotonic() - started, gateways, collector, "done"))
    finally:
        for gw in gateways:
            try:
                gw.stop()
            except Exception as exc:  # already failing; do not hide the first error
                log.warning("stopping %s: %s", gw.gw, exc)
        collector.stop(drain_timeout=5.0)
        broker.stop()
    stats = collector.stats()
    # collector.stop() closed our writer; read the summary from a fresh connection.
    reader = SqliteWriter({"path": str(workdir / "records.db")})
    try:
        per_gw_stored = reader.count_by_gateway()
        latency = reader.latency_ms((50, 99))
        stored = reader.count()
    finally:
        reader.close()
    evicted = sum(gw.evicted() for gw in gateways)
    by_gateway = {
        gw.gw: {
            "accepted": accepted[gw.gw],
            "published": gw.published(),
            "stored": per_gw_stored.get(gw.gw, 0),
        }
        for gw in gateways
    }
    total_accepted = sum(accepted.values())
    return DemoSummary(
        duration_s=options.duration_s,
        gateways=options.gateways,
        wearers=options.wearers,
        accepted=total_accepted,
        published=sum(gw.published() for gw in gateways),
        stored=stored,
        duplicates=stats.duplicates,
        dead_letters=stats.dead_letters,
        evicted=evicted,
        lost=max(0, total_accepted - evicted - stored),
        undrained=undrained,
        latency_p50_ms=latency[50],
        latency_p99_ms=latency[99],
        by_gateway=by_gateway,
    )


def _status(elapsed: float, gateways: list[_Gateway], collector: Any, phase: str = "") -> str:
    s = collector.stats()
    accepted = sum(gw.accepted() for gw in gateways)
    queued = sum(gw.depth() for gw in gateways)
    return (
        f"{elapsed:5.1f}s {phase + ' ' if phase else ''}gateways {len(gateways)}: "
        f"accepted {accepted} in outboxes {queued} | collector: stored {s.stored} "
        f"dup {s.duplicates} dead {s.dead_letters} in-flight {s.in_flight}"
    )


class _Gateway:
    """One in-process edge agent with a ``sim`` source and its own outbox."""

    def __init__(self, gw: str, workdir: Path, port: int, options: DemoOptions, index: int):
        from edge_agent.agent import Agent
        from edge_agent.config import parse_config

        self.gw = gw
        doc = {
            "gateway": {"id": gw, "site": "demo"},
            "broker": {"url": f"mqtt://127.0.0.1:{port}"},
            "sources": [
                {
                    "name": "sim",
                    "type": "sim",
                    "options": {
                        "wearers": options.wearers,
                        "seed": options.seed * 1000 + index,
                        # short visits so that a one-minute demo shows enters and exits
                        "mean_away_s": 8.0,
                        "mean_linger_s": 10.0,
                    },
                }
            ],
            "outbox": {"path": str(workdir / f"{gw}-outbox.db")},
            "batching": {"max_age_ms": 200},
            "aggregator": {"update_interval_s": 5, "away_timeout_s": 6},
            "health": {"interval_s": 5},
        }
        self.agent = Agent(parse_config(doc, f"demo:{gw}"), reconnect_max_s=5.0)
        self._final: Any = None  # AgentStats taken just before the agent closed its outbox

    def start(self) -> None:
        self.agent.start()

    def stop_radio(self) -> None:
        """Radios off, aggregator exits written to the outbox; the publisher keeps draining."""
        self.agent.stop_sources()

    def stop(self) -> None:
        if self._final is None:
            self._final = self.agent.stats()
            self.agent.stop(drain_timeout_s=1.0)

    def _stats(self) -> Any:
        return self._final if self._final is not None else self.agent.stats()

    def depth(self) -> int:
        """Records not yet acknowledged by the broker."""
        return int(self._stats().outbox.depth)

    def accepted(self) -> int:
        """Readings this gateway accepted into its outbox (= last ``seq`` assigned)."""
        return int(self._stats().outbox.accepted)

    def published(self) -> int:
        return int(self._stats().publisher.published)

    def evicted(self) -> int:
        return int(self._stats().outbox.evicted)


def _print_status(line: str) -> None:
    sys.stderr.write("\r" + line[:160].ljust(100))
    sys.stderr.flush()


@click.command()
@click.option("--duration", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="seconds of simulated traffic")  # fmt: skip
@click.option("--gateways", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--wearers", type=click.IntRange(1, 1000), default=12, show_default=True,
              help="simulated wearers walking past each gateway")  # fmt: skip
@click.option("--seed", type=int, default=1, show_default=True, help="simulation seed")
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="keep the databases here instead of a temporary directory")  # fmt: skip
def demo(
    duration: float, gateways: int, wearers: int, seed: int, as_json: bool, workdir: Path | None
) -> None:
    """Run gateways, broker and collector in one process; prove nothing is lost.

    Exits 1 if any reading a gateway accepted was not stored.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    options = DemoOptions(duration, gateways, wearers, seed, workdir)
    try:
        summary = run_demo(options, on_status=None if as_json else _print_status)
    finally:
        if not as_json:
            sys.stderr.write("\n")
    click.echo(json.dumps(summary.to_dict(), indent=2) if as_json else summary.text())
    if summary.lost > 0:
        sys.exit(1)
