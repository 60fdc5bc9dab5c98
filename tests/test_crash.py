"""Nothing is lost: kill real processes mid-stream and count what reached the database.

Each test runs the real ``shouhu agent run`` and ``shouhu collector run`` as separate
processes against a private Mosquitto and a private InfluxDB 1.x, injects one kind of fault
while simulated beacons stream, then drains the gateway's outbox and checks that every record
the gateway accepted (every ``seq`` its outbox ever assigned) is in InfluxDB exactly once.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from services import InfluxDB1, Mosquitto

pytestmark = [pytest.mark.slow, pytest.mark.services]

GW = "gw-crash-1"
DB = "shouhu_crash"


class Proc:
    """A ``shouhu`` subprocess with its log in a file."""

    def __init__(self, name: str, args: list[str], workdir: Path) -> None:
        self.name, self.args, self.workdir = name, args, workdir
        self.p: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.workdir / f"{self.name}.{self.starts}.log", "wb")  # noqa: SIM115
        self.p = subprocess.Popen(
            [sys.executable, "-m", "shouhu.cli", *self.args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )

    def kill9(self) -> None:
        assert self.p is not None and self.p.poll() is None, self.log_tail()
        self.p.send_signal(signal.SIGKILL)
        self.p.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        assert self.p is not None
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        return self.p.wait(timeout)

    def alive(self) -> bool:
        return self.p is not None and self.p.poll() is None

    def log_text(self) -> str:
        path = self.workdir / f"{self.name}.{self.starts}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_tail(self) -> str:
        return self.log_text()[-3000:]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[dict[str, Any]]:
    broker = Mosquitto(tmp_path / "mosquitto").start()
    influx = InfluxDB1(tmp_path / "influxd").start()

    def gateway_yaml(name: str, sources: list[dict[str, Any]]) -> Path:
        doc = {
            "gateway": {"id": GW, "site": "crash"},
            "broker": {"url": f"mqtt://127.0.0.1:{broker.port}"},
            "sources": sources,
            "outbox": {"path": str(tmp_path / "outbox.sqlite"), "max_records": 1_000_000},
            "batching": {"max_records": 50, "max_age_ms": 200},
            "aggregator": {"update_interval_s": 1, "away_timeout_s": 4},
            "health": {"interval_s": 2},
        }
        path = tmp_path / name
        path.write_text(yaml.safe_dump(doc))
        return path

    sim = [{"name": "sim0", "type": "sim", "options": {"wearers": 40, "seed": 7, "time_scale": 3}}]
    streaming = gateway_yaml("gateway.yaml", sim)
    draining = gateway_yaml("gateway-drain.yaml", [])
    collector_yaml = tmp_path / "collector.yaml"
    collector_yaml.write_text(
        yaml.safe_dump(
            {
                "broker": {
                    "url": f"mqtt://127.0.0.1:{broker.port}",
                    "client_id": "crash-collector",
                },
                "writer": {
                    "kind": "influx-v1",
                    "url": influx.url,
                    "database": DB,
                    "create_database": True,
                    "timeout_s": 2,
                },
                "state": {"path": str(tmp_path / "collector-state.sqlite")},
                "retry_max_s": 1,
                "status_interval_s": 1,
            }
        )
    )
    agent = Proc("agent", ["agent", "run", "--config", str(streaming)], tmp_path)
    drain = Proc("drain", ["agent", "run", "--config", str(draining)], tmp_path)
    collector = Proc("collector", ["collector", "run", "--config", str(collector_yaml)], tmp_path)
    rig = {
        "broker": broker,
        "influx": influx,
        "agent": agent,
        "drain": drain,
        "collector": collector,
        "outbox": tmp_path / "outbox.sqlite",
    }
    try:
        yield rig
    finally:
        for proc in (agent, drain, collector):
            if proc.alive():
                assert proc.p is not None
                proc.p.kill()
                proc.p.wait(10)
        influx.close()
        broker.close()


def outbox_state(path: Path) -> tuple[int, int]:
    """(highest seq ever assigned, records still pending), read straight from the outbox file."""
    con = sqlite3.connect(path, timeout=10)
    try:
        next_seq = con.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0]
        pending = con.execute("SELECT count(*) FROM records").fetchone()[0]
        return int(next_seq) - 1, int(pending)
    except sqlite3.OperationalError:  # not created yet
        return 0, 0
    finally:
        con.close()


def stored_seqs(influx: InfluxDB1) -> list[int]:
    """Every ``seq`` field of this gateway in every measurement (a duplicate would show twice)."""
    r = requests.get(
        f"{influx.url}/query",
        params={"db": DB, "q": f"SELECT seq FROM /.*/ WHERE gw = '{GW}'", "epoch": "ms"},
        timeout=30,
    )
    r.raise_for_status()
    seqs: list[int] = []
    for result in r.json().get("results", []):
        for series in result.get("series", []) or []:
            col = series["columns"].index("seq")
            seqs.extend(int(row[col]) for row in series["values"] if row[col] is not None)
    return seqs


def stream_for(
    seconds: float, rig: dict[str, Any], running: tuple[str, ...] = ("agent", "collector")
) -> None:
    """Let the system run, failing at once if a process that should be running died."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name in running:
            proc: Proc = rig[name]
            if proc.p is not None and not proc.alive():
                pytest.fail(f"{name} died on its own:\n{proc.log_tail()}")
        time.sleep(0.2)


def drain_and_check(rig: dict[str, Any]) -> int:
    """Stop the streaming agent, drain its outbox with a source-less agent, and compare."""
    agent: Proc = rig["agent"]
    if agent.alive():
        agent.terminate()
    drain: Proc = rig["drain"]
    drain.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and outbox_state(rig["outbox"])[1] > 0:
        time.sleep(0.5)
    drain.terminate()
    last, pending = outbox_state(rig["outbox"])
    assert pending == 0, f"outbox never drained:\n{drain.log_tail()}"
    assert last > 200, f"too few records to prove anything ({last})"
    expected = list(range(1, last + 1))
    seqs: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        seqs = stored_seqs(rig["influx"])
        if len(set(seqs)) >= last:
            break
        time.sleep(0.5)
    missing = sorted(set(expected) - set(seqs))
    assert not missing, (
        f"{len(missing)} accepted records never stored, e.g. {missing[:10]}\n{rig['collector'].log_tail()}"
    )
    assert len(seqs) == len(set(seqs)) == last, "a record was stored more than once"
    print(f"{last} accepted records, each stored exactly once")
    return last


def test_agent_power_loss_loses_nothing(rig: dict[str, Any]) -> None:
    rig["collector"].start()
    agent: Proc = rig["agent"]
    for _ in range(3):
        agent.start()
        stream_for(5, rig)
        agent.kill9()  # power cut: no flush, no goodbye
    agent.start()
    stream_for(3, rig)
    drain_and_check(rig)


def test_collector_crash_and_broker_restart_lose_nothing(rig: dict[str, Any]) -> None:
    collector: Proc = rig["collector"]
    collector.start()
    rig["agent"].start()
    stream_for(4, rig)
    collector.kill9()  # un-acked messages must be redelivered
    stream_for(3, rig, running=("agent",))
    collector.start()
    stream_for(4, rig)
    broker: Mosquitto = rig["broker"]
    broker.restart()  # queued messages of the collector's persistent session survive
    stream_for(4, rig)
    # the sharpest case: kill the collector while it holds messages it could not yet store
    influx: InfluxDB1 = rig["influx"]
    influx.stop()
    stream_for(4, rig)
    collector.kill9()
    influx.start()
    collector.start()
    stream_for(3, rig)
    drain_and_check(rig)


def test_database_outage_loses_nothing(rig: dict[str, Any]) -> None:
    rig["collector"].start()
    rig["agent"].start()
    stream_for(4, rig)
    influx: InfluxDB1 = rig["influx"]
    influx.stop()
    stream_for(6, rig)  # the collector holds the messages un-acked and retries
    influx.start()
    stream_for(4, rig)
    collector_log = rig["collector"].log_text()
    drain_and_check(rig)
    assert "database unavailable, holding" in collector_log, "the outage was never noticed"
