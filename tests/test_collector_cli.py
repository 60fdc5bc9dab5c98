"""``shouhu collector run`` as an operator runs it: a real process against the real broker.

It starts, prints status lines (with open alerts and notifications when the rules are on),
stops cleanly on SIGTERM with exit 0; a bad configuration exits 2 with one line naming the field.
"""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import IO, Any

import pytest
import yaml

from collector.config import DEFAULT_REGISTRY_NAME, load_config, parse_config
from shouhu.exceptions import ConfigError

SHOUHU = str(Path(sys.executable).parent / "shouhu")
EXAMPLE = Path(__file__).parent.parent / "examples" / "collector.yaml"


def write_config(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "collector.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def lines_of(stream: IO[str]) -> queue.Queue[str]:
    """The stream's lines, read on a thread so the test can wait with a timeout."""
    q: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            q.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return q


def wait_line(q: queue.Queue[str], needle: str, seen: list[str], timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = q.get(timeout=max(0.05, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        if needle in line:
            return line
    raise AssertionError(f"no line with {needle!r} in:\n" + "\n".join(seen))


@pytest.mark.timeout(60)
def test_run_prints_status_and_stops_on_sigterm(mosquitto: Any, tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        {
            "broker": {
                "url": f"mqtt://{mosquitto.host}:{mosquitto.port}",
                "client_id": f"cli-{uuid.uuid4().hex[:8]}",
            },
            "writer": {"kind": "sqlite", "path": str(tmp_path / "records.db")},
            "state": {"path": str(tmp_path / "state.db")},
            "rules": {"tz": "Asia/Shanghai", "gateway": {"health_interval_s": 86400}},
            "alerts": {"escalate_after_s": 60},
        },
    )
    proc = subprocess.Popen(
        [SHOUHU, "collector", "run", "--config", str(config), "--status-every", "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    try:
        assert proc.stderr is not None
        out = lines_of(proc.stderr)
        banner = wait_line(out, "collector: ", seen)
        assert "rules on" in banner and DEFAULT_REGISTRY_NAME in banner
        status = wait_line(out, "connected | db ok", seen)
        assert "DISCONNECTED" not in status
        # the session broker may hold other tests' retained gateway statuses: count, don't pin
        assert re.search(r"alerts open \d+ notified \d+ failed \d+", status), status
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, "\n".join(seen)
        stopped = wait_line(out, "stopped: ", seen, timeout=5)
        assert "alerts open" in stopped
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert (tmp_path / DEFAULT_REGISTRY_NAME).exists()  # the registry beside the state db


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"alerts": {"escalate_after_s": 0}}, "alerts.escalate_after_s"),
        ({"rules": {"wanderer": {"window": 300}}}, "rules.wanderer.window"),
        ({"rules": {"tz": "Mars/Olympus"}}, "rules.tz"),
        ({"notify": {"attempts": "three"}}, "notify.attempts"),
        ({"registry": {"url": "x"}}, "registry.url"),
        ({"rulez": {}}, "rulez"),
    ],
)
def test_bad_config_exits_2_naming_the_field(
    tmp_path: Path, doc: dict[str, Any], field: str
) -> None:
    config = write_config(tmp_path, doc)
    result = subprocess.run(
        [SHOUHU, "collector", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert f"collector.yaml:{field}:" in lines[0]


def test_rules_are_on_only_with_a_rules_section(tmp_path: Path) -> None:
    assert parse_config({"state": {"path": str(tmp_path / "s.db")}}).rules is None
    for section in ("rules", "registry", "alerts", "notify"):
        rules = parse_config({section: {}, "state": {"path": str(tmp_path / "s.db")}}).rules
        assert rules is not None, section
        assert rules.registry == str(tmp_path / DEFAULT_REGISTRY_NAME)
    rules = parse_config(
        {
            "registry": {"path": "/srv/registry.sqlite"},
            "alerts": {"escalate_after_s": 120, "escalate_after_by_kind": {"smoke": 30}},
            "notify": {"attempts": 5, "backoff_s": 0.5},
        }
    ).rules
    assert rules is not None and rules.registry == "/srv/registry.sqlite"
    assert rules.lifecycle.escalate_ms("smoke") == 30_000
    assert rules.lifecycle.escalate_ms("wanderer") == 120_000
    assert (rules.notify_attempts, rules.notify_backoff_s) == (5, 0.5)
    with pytest.raises(ConfigError) as info:
        parse_config({"alerts": {"suppress_by_kind": {"smoke": -1}}})
    assert info.value.field == "alerts.suppress_by_kind.smoke"


def test_the_example_config_loads_with_rules() -> None:
    config = load_config(EXAMPLE)
    assert config.rules is not None
    assert config.rules.engine.tz == "Asia/Shanghai"
    assert config.rules.registry.endswith("registry.sqlite")
