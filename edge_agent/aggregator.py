"""BLE aggregation: many advertisements per second become a few *sightings*. Pure: no I/O.

A beacon advertises about once a second; a gateway reports what matters about it: that it
came (``enter``), that it is still here (``update``, at most once per ``update_interval``) and
that it left (``exit``, after ``away_timeout`` without hearing it). Every method takes
``now_ms`` so the whole thing runs from a scripted timeline in tests.

Per device (keyed by profile and device key):

    state    | input                                   | output                | next state
    ---------+-----------------------------------------+-----------------------+-----------
    ABSENT   | sighting at t                           | enter (ts = t)        | PRESENT
    PRESENT  | sighting at t, t - last_emit < interval | (none; stats updated) | PRESENT
    PRESENT  | sighting at t, t - last_emit >= interval| update (ts = t)       | PRESENT
    PRESENT  | tick(now), now - last_seen >= away      | exit (ts = last_seen) | ABSENT
    PRESENT  | flush(now)  (shutdown)                  | exit (ts = last_seen) | ABSENT

``enter``/``update``/``exit`` carry ``rssi`` (last heard), ``rssi_avg`` (exponential moving
average), ``count`` (advertisements since enter), ``first_seen``, ``last_seen`` (ms). Exit is
stamped with the last time the radio heard the beacon, so every record of a device is in time
order and ``ts`` stays "when the radio heard it".

Telemetry (``event`` readings with ``data.event == "telemetry"``, e.g. Eddystone-TLM) pass
through at most once per device per interval; the latest one waiting wins and goes out at the
next ``tick`` after the interval (or at ``flush``). Everything else (alarms, taps, other
events, sightings of non-aggregated kinds) passes straight through untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from shouhu.model import Reading

DeviceKey = tuple[str, str]  # (profile ref, device key)


@dataclass(frozen=True, slots=True)
class Presence:
    """What the aggregator knows about one beacon in range (state PRESENT)."""

    profile: str
    device: str
    first_seen: int
    last_seen: int
    last_emit: int  # ts of the last enter/update we emitted
    count: int
    rssi: float | int | None
    rssi_avg: float | None
    extra: tuple[tuple[str, Any], ...]  # decoder data other than rssi (tx_power, major, ...)


@dataclass(frozen=True, slots=True)
class _Telemetry:
    last_emit: int
    waiting: Reading | None  # the latest telemetry not yet passed on (latest wins)


def is_telemetry(reading: Reading) -> bool:
    return reading.kind == "event" and reading.data.get("event") == "telemetry"


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


class Aggregator:
    """Turns per-advertisement sightings into enter/update/exit; rate-limits telemetry."""

    def __init__(
        self,
        update_interval_ms: int = 30_000,
        away_timeout_ms: int = 20_000,
        ema_alpha: float = 0.3,
    ) -> None:
        if update_interval_ms <= 0 or away_timeout_ms <= 0 or not 0 < ema_alpha <= 1:
            raise ValueError("intervals must be > 0 and 0 < ema_alpha <= 1")
        self.update_interval_ms = update_interval_ms
        self.away_timeout_ms = away_timeout_ms
        self.ema_alpha = ema_alpha
        self._present: dict[DeviceKey, Presence] = {}
        self._telemetry: dict[DeviceKey, _Telemetry] = {}

    # --- inputs -------------------------------------------------------------------------------

    def feed(self, reading: Reading, now_ms: int) -> list[Reading]:
        """One decoded reading in; what to pass on now out (possibly nothing)."""
        if reading.kind == "sighting":
            return self._sighting(reading)
        if is_telemetry(reading):
            return self._telemetry_in(reading, now_ms)
        return [reading]

    def tick(self, now_ms: int) -> list[Reading]:
        """Exits of beacons not heard for ``away_timeout``; telemetry whose interval passed."""
        out: list[Reading] = []
        for key, p in list(self._present.items()):
            if now_ms - p.last_seen >= self.away_timeout_ms:
                del self._present[key]
                out.append(self._emit(p, "exit", p.last_seen))
        for key, t in list(self._telemetry.items()):
            if t.waiting is not None and now_ms - t.last_emit >= self.update_interval_ms:
                out.append(t.waiting)
                self._telemetry[key] = _Telemetry(now_ms, None)
            elif t.waiting is None and now_ms - t.last_emit >= 10 * self.update_interval_ms:
                del self._telemetry[key]  # forget quiet devices so the table stays small
        return out

    def flush(self, now_ms: int) -> list[Reading]:
        """Shutdown: an exit for every beacon still present and the telemetry waiting."""
        out = [self._emit(p, "exit", p.last_seen) for p in self._present.values()]
        out += [t.waiting for t in self._telemetry.values() if t.waiting is not None]
        self._present.clear()
        self._telemetry.clear()
        return out

    # --- queries ------------------------------------------------------------------------------

    def present(self) -> list[Presence]:
        return list(self._present.values())

    def next_deadline(self) -> int | None:
        """The earliest ``now_ms`` at which ``tick`` may have something to say."""
        times = [p.last_seen + self.away_timeout_ms for p in self._present.values()]
        times += [
            t.last_emit + self.update_interval_ms
            for t in self._telemetry.values()
            if t.waiting is not None
        ]
        return min(times) if times else None

    # --- internals -----------------------------------------------------------------------------

    def _sighting(self, reading: Reading) -> list[Reading]:
        key = (reading.profile, reading.device)
        rssi = _number(reading.data.get("rssi"))
        extra = tuple(sorted((k, v) for k, v in reading.data.items() if k != "rssi"))
        p = self._present.get(key)
        if p is None:
            p = Presence(
                profile=reading.profile,
                device=reading.device,
                first_seen=reading.ts,
                last_seen=reading.ts,
                last_emit=reading.ts,
                count=1,
                rssi=rssi,
                rssi_avg=None if rssi is None else float(rssi),
                extra=extra,
            )
            self._present[key] = p
            return [self._emit(p, "enter", reading.ts)]
        if rssi is None:
            avg = p.rssi_avg
        elif p.rssi_avg is None:
            avg = float(rssi)
        else:
            avg = p.rssi_avg + self.ema_alpha * (rssi - p.rssi_avg)
        ts = max(p.last_seen, reading.ts)  # a late frame never moves time backwards
        p = replace(
            p,
            last_seen=ts,
            count=p.count + 1,
            rssi=rssi if rssi is not None else p.rssi,
            rssi_avg=avg,
            extra=extra,
        )
        if ts - p.last_emit >= self.update_interval_ms:
            p = replace(p, last_emit=ts)
            self._present[key] = p
            return [self._emit(p, "update", ts)]
        self._present[key] = p
        return []

    def _telemetry_in(self, reading: Reading, now_ms: int) -> list[Reading]:
        key = (reading.profile, reading.device)
        t = self._telemetry.get(key)
        if t is None or now_ms - t.last_emit >= self.update_interval_ms:
            self._telemetry[key] = _Telemetry(now_ms, None)
            return [reading]
        self._telemetry[key] = _Telemetry(t.last_emit, reading)
        return []

    def _emit(self, p: Presence, event: str, ts: int) -> Reading:
        data: dict[str, Any] = dict(p.extra)
        data.update(
            event=event,
            rssi=p.rssi,
            rssi_avg=None if p.rssi_avg is None else round(p.rssi_avg, 2),
            count=p.count,
            first_seen=p.first_seen,
            last_seen=p.last_seen,
        )
        return Reading(ts, "sighting", p.profile, p.device, data)
