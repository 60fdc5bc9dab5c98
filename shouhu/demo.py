"""``shouhu demo``: the whole pipeline in one process, with no services to install.

An embedded MQTT broker, a collector on SQLite and N edge agents whose ``sim`` sources walk
simulated wearers past them, all in a temporary directory. At the end it checks the promise
the system makes: every reading a gateway accepted into its outbox is stored exactly once.

With the scenario (the default) the collector also runs the rules on a registry of a small
city (``shouhu.demo_city``), seven more gateways play a scripted story through the real
decoders (``script`` sources), and notifications go through apprise to a local HTTP channel
(``collector.alerts.local_channel``) that records what each person would have been told.

    shouhu demo --duration 60 --gateways 4 --wearers 12
    shouhu demo --no-scenario --duration 30
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
from typing import TYPE_CHECKING, Any

import click

from shouhu.exceptions import BrokerError

if TYPE_CHECKING:
    from collector.config import CollectorConfig

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 20.0  # after the agents stop: outboxes empty, collector caught up
STORY_S = 45.0  # the scripted story and its last notifications fit in this


@dataclass(frozen=True, slots=True)
class DemoOptions:
    duration_s: float = 60.0
    gateways: int = 4
    wearers: int = 12
    seed: int = 1
    workdir: Path | None = None  # default: a temporary directory, removed afterwards
    scenario: bool = True  # the scripted city story, rules and notifications on top


@dataclass(frozen=True, slots=True)
class AlertLine:
    """One alert the story raised, with how fast its first message reached the channel."""

    kind: str
    key: str
    severity: str
    state: str  # its state at the end of the demo
    title: str
    latency_ms: int | None  # triggering reading (or timer tick) -> handed to the channel
    messages: int  # messages the channels took for it (raise, resolution, ...)


@dataclass(frozen=True, slots=True)
class Recipient:
    """What one person would have received (title and body per message)."""

    name: str
    role: str  # family | fire_brigade | police_desk | guardian
    messages: tuple[dict[str, str], ...]


@dataclass(frozen=True, slots=True)
class ScenarioReport:
    """The scripted city story: alerts by kind, notices, gateway commands, people told."""

    tz: str
    story: tuple[str, ...]
    alerts: tuple[AlertLine, ...]
    alerts_by_kind: dict[str, int]
    notices_by_kind: dict[str, int]  # one-shot messages (school arrivals), per message
    notice_latency_ms: dict[str, int | None]  # worst latency per notice kind
    commands: dict[str, tuple[str, ...]]  # gateway -> lines its receiver transmitted
    recipients: tuple[Recipient, ...]
    delivery_failures: int

    def text(self) -> list[str]:
        def ms(v: int | None) -> str:
            return "n/a" if v is None else f"{v} ms"

        out = [f"the city story ({self.tz}):"]
        out += [f"  {line}" for line in self.story]
        out.append("alerts raised (latency: triggering reading -> handed to the channel):")
        for a in self.alerts:
            out.append(
                f"  {a.kind:<16} {a.key:<40.40} {a.severity:<8} {a.state:<12} "
                f"{ms(a.latency_ms):>8}  {a.title}"
            )
        if not self.alerts:
            out.append("  none")
        for kind, n in sorted(self.notices_by_kind.items()):
            out.append(f"notices: {kind} x{n} (slowest {ms(self.notice_latency_ms.get(kind))})")
        for gw, lines in sorted(self.commands.items()):
            out.append(f"gateway {gw} transmitted: {', '.join(lines) or 'nothing'}")
        if self.delivery_failures:
            out.append(f"delivery attempts that failed: {self.delivery_failures}")
        out.append("what each person received:")
        for r in self.recipients:
            out.append(f"  {r.name} ({r.role}): {len(r.messages)} message(s)")
            for m in r.messages:
                out.append(f"    - {m['title']}")
                body = [line for line in m["body"].splitlines() if line.strip()]
                for line in body[:1] + body[1:][-1:]:  # the message and the state line
                    out.append(f"      {line}")
        return out


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
    scenario: ScenarioReport | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        def ms(v: int | None) -> str:
            return "n/a" if v is None else f"{v} ms"

        lines = [
            f"shouhu demo: {self.gateways} gateways, {self.wearers} wearers, "
            f"{self.duration_s:.0f} s"
            + (
                f", plus {len(self.by_gateway) - self.gateways} story gateways"
                if self.scenario is not None
                else ""
            ),  # fmt: skip
            f"  accepted by gateways  {self.accepted}",
            f"  published             {self.published}",
            f"  stored                {self.stored}",
            f"  duplicates dropped    {self.duplicates}",
            f"  dead letters          {self.dead_letters}",
            f"  lost                  {self.lost}{'' if self.lost == 0 else '   <-- FAIL'}",
            f"  latency radio→stored  (exits excluded) p50 {ms(self.latency_p50_ms)}, "
            f"p99 {ms(self.latency_p99_ms)}",
        ]
        if self.scenario is not None:
            lines += self.scenario.text()
        return "\n".join(lines)


def run_demo(options: DemoOptions, on_status: Callable[[str], None] | None = None) -> DemoSummary:
    """Run the pipeline for ``options.duration_s`` and return the summary."""
    if options.workdir is not None:
        options.workdir.mkdir(parents=True, exist_ok=True)
        return _run(options, options.workdir, on_status)
    with tempfile.TemporaryDirectory(prefix="shouhu-demo-") as tmp:
        return _run(options, Path(tmp), on_status)


class _Story:
    """The scenario's parts around the collector: the city, its registry, the local channel."""

    def __init__(self, workdir: Path, seed: int) -> None:
        from collector.alerts.local_channel import LocalChannel
        from collector.registry.store import RegistryStore
        from shouhu.demo_city import build_city

        self.channel = LocalChannel()
        self.channel.start()
        self.city = build_city(int(time.time() * 1000), self.channel.url, seed)
        self.registry_path = workdir / "registry.sqlite"
        with RegistryStore(self.registry_path) as registry:
            registry.add_all(self.city.entities)

    def collector_config(self, base: dict[str, Any]) -> CollectorConfig:
        from collector.config import parse_config

        doc = {
            **base,
            "registry": {"path": str(self.registry_path)},
            "rules": dict(self.city.rules),
            "alerts": {"escalate_after_s": 3600},
            "notify": {"attempts": 2, "backoff_s": 0.2},
        }
        return parse_config(doc, "demo")

    def prime(self, config: CollectorConfig) -> None:
        """Save rule state as if the collector had ticked at ``city.prime_tick_ms``.

        Round windows close on whole minutes; priming lets the river round, which closes
        between 25 s before and 35 s after the start, be judged whenever the demo starts
        (public engine API: ``RuleEngine.tick`` then ``AlertStore.record_step``).
        """
        from collector.alerts.lifecycle import AlertBook
        from collector.alerts.store import AlertStore
        from collector.registry.store import RegistryStore
        from collector.rules.engine import RuleEngine
        from shouhu.profiles import load_profiles

        rc = config.rules
        assert rc is not None
        engine = RuleEngine(rc.engine.with_profiles(load_profiles().values()))
        with RegistryStore(rc.registry) as registry:
            view = registry.snapshot().view()
        engine.tick(self.city.prime_tick_ms, view)
        with AlertStore(config.state_path) as store:
            store.record_step(
                [], engine_state=engine.to_state(), book_state=AlertBook(rc.lifecycle).to_state()
            )

    def report(self, collector: Any, gateways: list[_Gateway], until_ms: int) -> ScenarioReport:
        from shouhu.demo_city import RECIPIENTS

        store = collector.alert_store
        rows = [
            r for r in store.list_alerts(open_only=False, limit=10_000) if r.raised_ms < until_ms
        ]
        deliveries = store.deliveries()
        alerts = []
        for r in sorted(rows, key=lambda r: (r.raised_ms, r.kind)):
            ok = [d for d in deliveries if d.alert_id == r.id and d.ok]
            first = min(ok, key=lambda d: d.at_ms) if ok else None
            alerts.append(
                AlertLine(
                    r.kind, r.key, r.severity, r.state, r.title,
                    first.latency_ms if first is not None else None, len(ok),
                )
            )  # fmt: skip
        notices: dict[str, int] = {}
        notice_latency: dict[str, int | None] = {}
        for d in deliveries:
            if d.alert_id is None and d.ok:
                notices[d.kind] = notices.get(d.kind, 0) + 1
                worst = notice_latency.get(d.kind)
                if d.latency_ms is not None and (worst is None or d.latency_ms > worst):
                    notice_latency[d.kind] = d.latency_ms
                else:
                    notice_latency.setdefault(d.kind, worst)
        by_kind: dict[str, int] = {}
        for a in alerts:
            by_kind[a.kind] = by_kind.get(a.kind, 0) + 1
        commands = {
            gw.gw: tuple(line.decode("ascii", "replace").strip() for _, line in sent)
            for gw in gateways
            if (sent := gw.transmitted()) or gw.can_transmit()
        }
        recipients = tuple(
            Recipient(
                name,
                role,
                tuple({"title": m.title, "body": m.body} for m in self.channel.received(path)),
            )
            for path, (name, role) in RECIPIENTS.items()
        )
        return ScenarioReport(
            tz=self.city.tz,
            story=self.city.story,
            alerts=tuple(alerts),
            alerts_by_kind=by_kind,
            notices_by_kind=notices,
            notice_latency_ms=notice_latency,
            commands=commands,
            recipients=recipients,
            delivery_failures=sum(1 for d in deliveries if not d.ok),
        )

    def close(self) -> None:
        self.channel.stop()


def _run(
    options: DemoOptions, workdir: Path, on_status: Callable[[str], None] | None
) -> DemoSummary:
    from collector.broker import EmbeddedBroker
    from collector.ingest import Collector
    from collector.writers.sqlite import SqliteWriter

    broker = EmbeddedBroker()
    broker.start()
    story: _Story | None = None
    writer = SqliteWriter({"path": str(workdir / "records.db")})
    base = {
        "broker": {"url": broker.url, "client_id": "shouhu-demo-collector"},
        "writer": {"kind": "sqlite", "path": str(workdir / "records.db")},
        "state": {"path": str(workdir / "collector-state.db")},
        "retry_max_s": 1.0,
    }
    gateways: list[_Gateway] = []
    report: ScenarioReport | None = None
    collector: Collector | None = None
    try:
        if options.scenario:
            import apprise  # noqa: F401  (warm: the first notification should not pay the import)

            story = _Story(workdir, options.seed)
            config = story.collector_config(base)
            story.prime(config)
        else:
            from collector.config import parse_config

            config = parse_config(base, "demo")
        collector = Collector(config, writer=writer)
        collector.start()
        if not collector.wait_connected(10):
            raise BrokerError(
                f"the collector could not connect to the embedded broker {broker.url}"
            )
        for i in range(options.gateways):
            gw = _Gateway(f"gw-demo-{i + 1:02d}", workdir, broker.port, [_sim_source(options, i)])
            gateways.append(gw)
            gw.start()
        if story is not None:
            for cg in story.city.gateways:
                gw = _Gateway(cg.id, workdir, broker.port, [dict(s) for s in cg.sources])
                gateways.append(gw)
                gw.start()
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < options.duration_s:
            if on_status is not None:
                on_status(_status(elapsed, gateways, collector))
            time.sleep(min(1.0, max(0.0, options.duration_s - elapsed)))
        for gw in gateways:
            gw.stop_radio()  # no new frames; aggregator exits flushed into the outbox
        radios_off_ms = int(time.time() * 1000)
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline and any(gw.depth() for gw in gateways):
            if on_status is not None:
                on_status(_status(time.monotonic() - started, gateways, collector, "draining"))
            time.sleep(0.1)
        if story is not None:
            # The rules saw everything stored; let the channels take the last messages, then
            # look before the gateways go offline (their Last Will is not part of the story).
            collector.wait_idle(max(0.1, deadline - time.monotonic()))
            if collector.notifier is not None:
                collector.notifier.wait_idle(max(0.1, deadline - time.monotonic()))
            report = story.report(collector, gateways, radios_off_ms)
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
        if collector is not None:
            collector.stop(drain_timeout=5.0)
        else:
            writer.close()
        broker.stop()
        if story is not None:
            story.close()
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
        scenario=report,
    )


def _sim_source(options: DemoOptions, index: int) -> dict[str, Any]:
    return {
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
    """One in-process edge agent (``sim`` or ``script`` sources) with its own outbox."""

    def __init__(self, gw: str, workdir: Path, port: int, sources: list[dict[str, Any]]):
        from edge_agent.agent import Agent
        from edge_agent.config import parse_config

        self.gw = gw
        doc = {
            "gateway": {"id": gw, "site": "demo"},
            "broker": {"url": f"mqtt://127.0.0.1:{port}"},
            "sources": sources,
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

    def can_transmit(self) -> bool:
        return any(getattr(s, "transmit", None) for s in self.agent.sources)

    def transmitted(self) -> list[tuple[int, bytes]]:
        """Lines this gateway's receivers transmitted (``script`` sources record them)."""
        out: list[tuple[int, bytes]] = []
        for source in self.agent.sources:
            sent = getattr(source, "sent", None)
            if callable(sent):
                out.extend(sent())
        return sorted(out)


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
@click.option("--scenario/--no-scenario", default=True, show_default=True,
              help="the scripted city story (rules, alerts, notifications) on top")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="keep the databases here instead of a temporary directory")  # fmt: skip
def demo(
    duration: float,
    gateways: int,
    wearers: int,
    seed: int,
    scenario: bool,
    as_json: bool,
    workdir: Path | None,
) -> None:
    """Run gateways, broker and collector in one process; prove nothing is lost.

    With the scenario (default) a scripted city story runs on top: a wanderer at night, a
    kitchen fire, a patrol round, a school morning; the summary shows every alert and what
    each person was told. Exits 1 if any reading a gateway accepted was not stored.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if scenario and duration < STORY_S and not as_json:
        click.echo(f"note: the story needs about {STORY_S:.0f} s; --duration {duration:g} cuts it short",
                   err=True)  # fmt: skip
    options = DemoOptions(duration, gateways, wearers, seed, workdir, scenario)
    try:
        summary = run_demo(options, on_status=None if as_json else _print_status)
    finally:
        if not as_json:
            sys.stderr.write("\n")
    click.echo(json.dumps(summary.to_dict(), indent=2) if as_json else summary.text())
    if summary.lost > 0:
        sys.exit(1)
