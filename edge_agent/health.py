"""The gateway's own health, as a ``health`` reading every ``health.interval_s``.

It travels like any other record (outbox, QoS 1), so the collector sees a gateway whose radio
died, whose outbox grows or whose link lags, not only one that is offline. ``health_reading``
is pure; ``process_usage`` is the one place that asks the operating system (psutil).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import psutil

from edge_agent.outbox import OutboxStats
from edge_agent.publisher import PublisherStats
from shouhu.model import Reading

HEALTH_PROFILE: Final = "gateway-health@1"  # matches wire.PROFILE_REF_RE
SOURCE_KEYS: Final = ("frames", "errors", "present")


@dataclass(frozen=True, slots=True)
class ProcessUsage:
    cpu_percent: float  # since the previous call (first call: 0.0)
    rss_bytes: int


class ProcessProbe:
    """CPU and memory of this process (psutil); one object per agent keeps its CPU baseline."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # start the measurement interval

    def usage(self) -> ProcessUsage:
        try:
            with self._process.oneshot():
                return ProcessUsage(
                    self._process.cpu_percent(None), int(self._process.memory_info().rss)
                )
        except psutil.Error:
            return ProcessUsage(0.0, 0)


def process_usage(probe: ProcessProbe | None = None) -> ProcessUsage:
    return (probe or ProcessProbe()).usage()


def health_reading(
    gateway_id: str,
    now_ms: int,
    *,
    started_ms: int,
    outbox: OutboxStats,
    publisher: PublisherStats | None,
    sources: Mapping[str, Mapping[str, Any]],
    decode_errors: int,
    frames_dropped: int = 0,
    usage: ProcessUsage | None = None,
) -> Reading:
    """One ``health`` reading of ``gw:<id>``: uptime, outbox, link, radios, process."""
    data: dict[str, Any] = {
        "uptime_s": max(0, (now_ms - started_ms) // 1000),
        "outbox_depth": outbox.depth,
        "outbox_oldest_age_s": None
        if outbox.oldest_ts is None
        else max(0, (now_ms - outbox.oldest_ts) // 1000),
        "outbox_evicted": outbox.evicted,
        "outbox_overflow": outbox.overflow,
        "accepted": outbox.accepted,
        "decode_errors": decode_errors,
        "frames_dropped": frames_dropped,
        "sources": {
            name: {key: _scalar(h.get(key)) for key in SOURCE_KEYS}
            for name, h in sorted(sources.items())
        },
    }
    if publisher is not None:
        data.update(
            connected=publisher.connected,
            publish_lag_ms=publisher.lag_ms,
            published=publisher.published,
            acked=publisher.acked,
            reconnects=publisher.reconnects,
        )
    if usage is not None:
        data.update(cpu_percent=round(usage.cpu_percent, 1), rss_bytes=usage.rss_bytes)
    return Reading(now_ms, "health", HEALTH_PROFILE, f"gw:{gateway_id}", data)


def _scalar(value: Any) -> Any:
    """Keep health data JSON-plain whatever a source reports."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    return str(value)
