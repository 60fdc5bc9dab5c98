"""Smoke alarm at the gateway -> notification handed to the channel, under background load.

    .venv/bin/python bench/alarm_latency.py [--alarms 40] [--every-s 0.5] [--gateways 4]
        [--wearers 1000] [--time-scale 1] [--broker embedded|mosquitto] [--json]

Why: the promise to a household is that a smoke alarm reaches the family and the fire brigade
within a second, even while the city's gateways stream thousands of advertisements a second.

What runs, all real and in one process (plus Mosquitto with ``--broker mosquitto``):
- ``--gateways`` edge agents with ``sim`` sources, ``--wearers`` amulets each, nearly all in
  range (background: about gateways x wearers advertisements per second, decoded and
  aggregated into sightings, published, stored);
- one alarm gateway whose ``script`` source emits ``--alarms`` RFLink smoke lines, one every
  ``--every-s``, each from a different household's detector (one incident each);
- the collector with rules on SQLite, a registry of those households, apprise ``json://`` to a
  local HTTP channel (``collector.alerts.local_channel``).

Latency per alarm = the notifier's delivery record: the reading's radio time (the frame's ``ts``,
stamped when the source emitted it) to the moment the channel took the message. Prints p50,
p99 and max (target p99 < 1 s); no pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from collector.alerts.local_channel import LocalChannel
from collector.broker import EmbeddedBroker, free_port
from collector.config import parse_config as parse_collector_config
from collector.domain import Contact, Gateway, Household, SmokeAlarm
from collector.ingest import Collector
from collector.registry.store import RegistryStore
from collector.writers.sqlite import SqliteWriter, percentile
from edge_agent.agent import Agent
from edge_agent.config import parse_config as parse_gateway_config
from shouhu.demo_city import rflink_line

ALARM_GW = "gw-bench-alarms"
WARMUP_S = 5.0  # background load reaches its steady state before the first alarm
WARMUP_DEVICE = "9fffff"  # an alarm during the warm-up, not counted
WARMUP_CONTACT = "c-warmup"


class Mosquitto:
    """A private Mosquitto on a free loopback port, files in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            sys.exit("mosquitto not found: apt-get install -y mosquitto, or --broker embedded")
        self.host, self.port = "127.0.0.1", free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            "max_queued_messages 0\nmax_inflight_messages 100\nlog_dest none\n"
        )
        self._proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex((self.host, self.port)) == 0:
                    return
            time.sleep(0.05)
        self.stop()
        sys.exit("mosquitto did not start")

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()


def households(n: int, url: str) -> list[Any]:
    """``n`` households, each with one detector (``0xA00000 + i``) and a family contact, plus
    household -1 whose alarm warms the path up (apprise's plugin scan, first inserts)."""
    out: list[Any] = [Gateway(ALARM_GW, "bench block", "bench")]
    out.append(
        Household("h-warmup", "bench block, caretaker", frozenset({ALARM_GW}), "bench",
                  (SmokeAlarm(f"rflink:fa20rf:{WARMUP_DEVICE}", "h-warmup", "office"),),
                  (Contact(WARMUP_CONTACT, "Caretaker", url, "family"),))
    )  # fmt: skip
    for i in range(n):
        hid = f"h-{i:04d}"
        family = Contact(f"c-family-{i:04d}", "Bench family", url, "family")  # ids are unique
        out.append(
            Household(hid, f"bench block, flat {i}", frozenset({ALARM_GW}), "bench",
                      (SmokeAlarm(f"rflink:fa20rf:{0xA00000 + i:06x}", hid, "kitchen"),),
                      (family,))
        )  # fmt: skip
    return out


def agent(gw: str, port: int, workdir: Path, source: dict[str, Any]) -> Agent:
    doc = {
        "gateway": {"id": gw},
        "broker": {"url": f"mqtt://127.0.0.1:{port}"},
        "sources": [source],
        "outbox": {"path": str(workdir / f"{gw}-outbox.db")},
        "batching": {"max_age_ms": 200},
        "aggregator": {"update_interval_s": 5, "away_timeout_s": 6},
        "health": {"interval_s": 5},
    }
    return Agent(parse_gateway_config(doc, f"bench:{gw}"), reconnect_max_s=5.0)


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    mosquitto: Mosquitto | None = None
    embedded: EmbeddedBroker | None = None
    if args.broker == "mosquitto":
        mosquitto = Mosquitto(workdir)
        host, port = mosquitto.host, mosquitto.port
    else:
        embedded = EmbeddedBroker()
        embedded.start()
        host, port = embedded.host, embedded.port
    channel = LocalChannel()
    channel.start()
    with RegistryStore(workdir / "registry.sqlite") as registry:
        registry.add_all(households(args.alarms, channel.url("/family")))
    config = parse_collector_config(
        {
            "broker": {"url": f"mqtt://{host}:{port}", "client_id": "bench-collector"},
            "writer": {"kind": "sqlite", "path": str(workdir / "records.db")},
            "state": {"path": str(workdir / "state.db")},
            "registry": {"path": str(workdir / "registry.sqlite")},
            "rules": {"tz": "UTC", "gateway": {"health_interval_s": 3600}},
            "alerts": {"escalate_after_s": 3600},
            "notify": {"attempts": 2, "backoff_s": 0.2},
        },
        "bench",
    )
    writer = SqliteWriter({"path": str(workdir / "records.db")})
    collector = Collector(config, writer=writer)
    agents: list[Agent] = []
    try:
        import apprise  # noqa: F401  (loaded before the clock starts, as in a running collector)

        collector.start()
        if not collector.wait_connected(10):
            sys.exit("the collector could not connect to the broker")
        for i in range(args.gateways):
            sim = {
                "name": "sim",
                "type": "sim",
                "options": {
                    "wearers": args.wearers, "seed": i + 1, "time_scale": args.time_scale,
                    "mean_away_s": 1.0, "mean_linger_s": 3600.0, "gap_probability": 0.0,
                    "loss": 0.0,
                },
            }  # fmt: skip
            agents.append(agent(f"gw-bench-{i + 1:02d}", port, workdir, sim))
        frames = [
            {"at_s": WARMUP_S + i * args.every_s,
             "payload_text": rflink_line(i, f"{0xA00000 + i:06x}", True)}
            for i in range(args.alarms)
        ]  # fmt: skip
        frames.insert(0, {"at_s": 1.0, "payload_text": rflink_line(0, WARMUP_DEVICE, True)})
        script = {"name": "rf", "type": "script",
                  "options": {"transport": "serial", "frames": frames,
                              "transmit": {"sound": "10;FA20RF;a00000;1;ON;"}}}  # fmt: skip
        alarm_agent = agent(ALARM_GW, port, workdir, script)
        agents.append(alarm_agent)
        for a in agents:
            a.start()
        time.sleep(WARMUP_S)
        bg = agents[:-1]
        f0, s0, t0 = sum(a.stats().frames for a in bg), collector.stats().stored, time.monotonic()
        channel.wait_for(args.alarms + 1, "/family", timeout=args.alarms * args.every_s + 30)
        elapsed = time.monotonic() - t0
        if collector.notifier is not None:  # the channel has it; the delivery row follows
            collector.notifier.wait_idle(5)
        f1, s1 = sum(a.stats().frames for a in bg), collector.stats().stored
        dropped = sum(a.stats().frames_dropped for a in bg)
        assert collector.alert_store is not None
        latencies = [  # in delivery order
            d.latency_ms
            for d in collector.alert_store.deliveries()
            if d.ok and d.kind == "smoke" and d.latency_ms is not None
            and d.contact_id != WARMUP_CONTACT
        ]  # fmt: skip
    finally:
        for a in agents:
            a.stop(drain_timeout_s=0.5)
        collector.stop(drain_timeout=5)
        channel.stop()
        if embedded is not None:
            embedded.stop()
        if mosquitto is not None:
            mosquitto.stop()
    return {
        "broker": args.broker,
        "alarms": args.alarms,
        "notified": len(latencies),
        "background_gateways": args.gateways,
        "background_frames_per_s": round((f1 - f0) / elapsed),
        "background_frames_dropped": dropped,
        "records_stored_per_s": round((s1 - s0) / elapsed),
        "latency_p50_ms": percentile(sorted(latencies), 50),
        "latency_p99_ms": percentile(sorted(latencies), 99),
        "latency_max_ms": max(latencies) if latencies else None,
        "latencies_ms": latencies,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alarms", type=int, default=40)
    ap.add_argument("--every-s", type=float, default=0.5, help="seconds between alarms")
    ap.add_argument("--gateways", type=int, default=4, help="background sim gateways")
    ap.add_argument("--wearers", type=int, default=1000, help="amulets in range per gateway")
    ap.add_argument("--time-scale", type=float, default=1.0, help="sim speed (more frames/s)")
    ap.add_argument("--broker", choices=("embedded", "mosquitto"), default="embedded")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="shouhu-bench-") as tmp:
        result = run(args, Path(tmp))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"alarm latency (gateway radio -> channel), {result['broker']} broker, "
          f"cpus {os.cpu_count()}")  # fmt: skip
    print(f"  background: {result['background_gateways']} gateways, "
          f"{result['background_frames_per_s']} advertisements/s decoded, "
          f"{result['records_stored_per_s']} records/s stored, "
          f"{result['background_frames_dropped']} frames dropped")  # fmt: skip
    print(f"  alarms: {result['alarms']}, notified {result['notified']}")
    print(f"  latency p50 {result['latency_p50_ms']} ms, p99 {result['latency_p99_ms']} ms, "
          f"max {result['latency_max_ms']} ms   (target p99 < 1000 ms)")  # fmt: skip


if __name__ == "__main__":
    main()
