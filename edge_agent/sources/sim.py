"""A simulated BLE radio: wearers with iBeacon amulets walk past the gateway.

The frames are the real AD bytes an iBeacon (and, optionally, an AED's Eddystone beacon)
sends, so they go through the real decoders, aggregator and outbox. The model, per wearer:

- away for a random time (exponential, mean ``mean_away_s``), then a *visit*: walks in from
  the edge of range (``range_m``) to a closest distance (1-8 m), lingers (exponential, mean
  ``mean_linger_s``), walks out again;
- advertises every ``adv_interval_ms`` plus 0-10 ms of random advDelay (Bluetooth Core 4.2+);
- RSSI = measured power at 1 m - 10 * n * log10(distance) + gaussian noise; below the
  receiver's sensitivity the advertisement is not heard; 10 % are lost anyway;
- BlueZ-style report gaps: now and then nothing is reported for 2-8 s.

AED beacons (``aeds`` > 0) stay put and send Eddystone-UID, with an Eddystone-TLM every tenth
advertisement. Everything is drawn from RNGs seeded by ``seed``: the same options give the
same frames. ``simulate()`` is the pure generator (no threads, no clock); ``SimSource`` plays
it in real time (``time_scale`` > 1 plays faster; frame times then run ahead of the clock).
"""

from __future__ import annotations

import heapq
import math
import random
import struct
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

from edge_agent.decoders.ble import ad_from_parts, build_ibeacon_ad
from edge_agent.sources.base import Emit
from shouhu.exceptions import ConfigError
from shouhu.model import RawFrame

AMULET_UUID: Final = "fda50693-a4e2-4fb1-afcf-c6eb07647825"  # device_profiles/amulet-ibeacon.yaml
AED_NAMESPACE: Final = "5368cbe75f7e4a1d8a00"  # device_profiles/aed-eddystone.yaml
EDDYSTONE_UUID16: Final = 0xFEAA
MEASURED_POWER: Final = -59  # dBm at 1 m, what the amulets advertise
AED_TX_POWER_0M: Final = -18
WALK_SPEED_MPS: Final = 1.0
MIN_DISTANCE_M: Final = 0.3


@dataclass(frozen=True, slots=True)
class SimOptions:
    """The ``options`` of a ``type: sim`` source (all optional)."""

    wearers: int = 5
    seed: int = 1
    time_scale: float = 1.0
    uuid: str = AMULET_UUID
    major: int = 10001  # minor = first_minor + wearer index
    first_minor: int = 1
    aeds: int = 0  # AED Eddystone beacons in range; instance = index + 1
    adv_interval_ms: int = 1000
    range_m: float = 30.0
    mean_away_s: float = 60.0
    mean_linger_s: float = 60.0
    path_loss_exponent: float = 2.2
    noise_db: float = 4.0
    sensitivity_dbm: float = -100.0
    loss: float = 0.1  # share of advertisements lost even when in range
    gap_probability: float = 0.01  # per advertisement: a report gap starts
    start_ms: int | None = None  # first frame time; None = now (SimSource) / required (simulate)

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any]) -> SimOptions:
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in options.items():
            where = f"sources.{name}.options.{key}"
            if key not in known:
                raise ConfigError(
                    f"unknown option (allowed: {', '.join(sorted(known))})", field=where
                )
            default = getattr(cls(), key)
            if key == "uuid":
                if not isinstance(value, str):
                    raise ConfigError("must be a UUID string", field=where)
            elif key == "start_ms":
                if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                    raise ConfigError("must be integer milliseconds", field=where)
            elif isinstance(default, int) and not isinstance(default, bool):
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ConfigError(f"must be an integer >= 0, got {value!r}", field=where)
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"must be a number, got {value!r}", field=where)
            values[key] = value
        opts = cls(**values)
        if opts.time_scale <= 0 or opts.adv_interval_ms < 20:
            raise ConfigError(
                "time_scale must be > 0 and adv_interval_ms >= 20", field=f"sources.{name}.options"
            )
        if opts.major > 0xFFFF or opts.first_minor + opts.wearers - 1 > 0xFFFF:
            raise ConfigError("major/minor must fit 0..65535", field=f"sources.{name}.options")
        try:
            build_ibeacon_ad(opts.uuid, 0, 0)
        except ValueError as exc:
            raise ConfigError(
                f"not a UUID: {opts.uuid!r}", field=f"sources.{name}.options.uuid"
            ) from exc
        return opts


# ---------------------------------------------------------------------------------------------
# the pure model
# ---------------------------------------------------------------------------------------------


class _Wearer:
    """One amulet: where its wearer is (distance from the gateway) at any time."""

    def __init__(self, index: int, opts: SimOptions, start_ms: int) -> None:
        self.rng = random.Random(opts.seed * 1_000_003 + index)
        self.opts = opts
        self.address = f"C3:00:00:00:{(index >> 8) & 0xFF:02X}:{index & 0xFF:02X}"
        self.payload = build_ibeacon_ad(
            opts.uuid, opts.major, opts.first_minor + index, MEASURED_POWER
        )
        self.gap_until = 0
        # A third of the wearers start in the middle of a visit.
        self._plan_visit(start_ms, already_here=self.rng.random() < 0.33)

    def _plan_visit(self, after_ms: int, already_here: bool = False) -> None:
        o, rng = self.opts, self.rng
        away = 0.0 if already_here else rng.expovariate(1 / o.mean_away_s)
        self.walk_ms = o.range_m / WALK_SPEED_MPS * 1000 * rng.uniform(0.6, 1.0)
        self.linger_ms = rng.expovariate(1 / o.mean_linger_s) * 1000
        self.closest_m = rng.uniform(1.0, 8.0)
        start = after_ms + away * 1000
        if already_here:
            start -= self.walk_ms + rng.uniform(0, self.linger_ms)
        self.visit_start = start
        self.visit_end = start + 2 * self.walk_ms + self.linger_ms

    def distance(self, ts: int) -> float | None:
        """Metres from the gateway, ``None`` out of range; plans the next visit when one ends."""
        while ts >= self.visit_end:
            self._plan_visit(int(self.visit_end))
        u = ts - self.visit_start
        if u < 0:
            return None
        far, near = self.opts.range_m, self.closest_m
        if u < self.walk_ms:
            return far - (far - near) * u / self.walk_ms
        if u < self.walk_ms + self.linger_ms:
            return near + self.rng.uniform(0, 1.0)  # shuffling about
        return near + (far - near) * (u - self.walk_ms - self.linger_ms) / self.walk_ms


class _Aed:
    def __init__(self, index: int, opts: SimOptions) -> None:
        self.rng = random.Random(opts.seed * 1_000_003 + 500_000 + index)
        self.address = f"D0:00:00:00:{(index >> 8) & 0xFF:02X}:{index & 0xFF:02X}"
        self.instance = f"{index + 1:012x}"
        self.eddystone_id = f"{AED_NAMESPACE}:{self.instance}"
        self.distance_m = self.rng.uniform(3.0, 20.0)
        self.battery_mv = self.rng.randint(2400, 3100)
        self.adv_count = 0
        self.gap_until = 0
        uid = (
            bytes((0x00,))
            + struct.pack("b", AED_TX_POWER_0M)
            + bytes.fromhex(AED_NAMESPACE + self.instance)
            + b"\x00\x00"
        )
        self.uid_payload = ad_from_parts(
            service_data={EDDYSTONE_UUID16: uid}, service_uuids=[EDDYSTONE_UUID16], flags=0x06
        )

    def payload(self, ts: int, start_ms: int) -> tuple[bytes, bool]:
        """The next advertisement and whether it is a TLM frame."""
        self.adv_count += 1
        if self.adv_count % 10:
            return self.uid_payload, False
        uptime_ds = max(0, (ts - start_ms) // 100)
        tlm = struct.pack(
            ">BBHhII", 0x20, 0x00, self.battery_mv, 22 * 256, self.adv_count, uptime_ds
        )
        ad = ad_from_parts(
            service_data={EDDYSTONE_UUID16: tlm}, service_uuids=[EDDYSTONE_UUID16], flags=0x06
        )
        return ad, True


def _rssi(distance_m: float, measured_power: float, opts: SimOptions, rng: random.Random) -> float:
    d = max(distance_m, MIN_DISTANCE_M)
    return (
        measured_power - 10 * opts.path_loss_exponent * math.log10(d) + rng.gauss(0, opts.noise_db)
    )


def _heard(emitter: _Wearer | _Aed, ts: int, rssi: float, opts: SimOptions) -> bool:
    """Receiver model: sensitivity, random loss and BlueZ-style report gaps."""
    rng = emitter.rng
    if ts < emitter.gap_until:
        return False
    if rng.random() < opts.gap_probability:
        emitter.gap_until = ts + rng.randint(2000, 8000)
        return False
    return rssi >= opts.sensitivity_dbm and rng.random() >= opts.loss


def simulate(
    opts: SimOptions, source: str = "sim", start_ms: int | None = None
) -> Iterator[RawFrame]:
    """Every frame the gateway hears, in time order, forever (stop iterating when done).

    Pure: no clock, no threads; the same options and start give the same frames.
    """
    start = start_ms if start_ms is not None else opts.start_ms
    if start is None:
        raise ValueError("simulate() needs start_ms (or options.start_ms)")
    emitters: list[_Wearer | _Aed] = [_Wearer(i, opts, start) for i in range(opts.wearers)]
    emitters += [_Aed(i, opts) for i in range(opts.aeds)]
    phase = random.Random(opts.seed)
    queue = [(start + phase.randrange(opts.adv_interval_ms), i) for i in range(len(emitters))]
    heapq.heapify(queue)
    while queue:
        ts, i = heapq.heappop(queue)
        em = emitters[i]
        heapq.heappush(queue, (ts + opts.adv_interval_ms + em.rng.randint(0, 10), i))
        meta: dict[str, Any] = {"address": em.address}
        if isinstance(em, _Wearer):
            distance = em.distance(ts)
            if distance is None:
                continue
            rssi = _rssi(distance, MEASURED_POWER, opts, em.rng)
            payload = em.payload
        else:
            rssi = _rssi(em.distance_m, AED_TX_POWER_0M - 41, opts, em.rng)
            payload, is_tlm = em.payload(ts, start)
            if is_tlm:
                meta["eddystone_id"] = em.eddystone_id
        if not _heard(em, ts, rssi, opts):
            continue
        meta["rssi"] = int(round(rssi))
        yield RawFrame(source, ts, payload, meta)


# ---------------------------------------------------------------------------------------------
# the source: plays the model in real time
# ---------------------------------------------------------------------------------------------


class SimSource:
    """A ``Source`` that emits ``simulate()`` frames at their (scaled) time."""

    transport = "ble"

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        self.name = name
        self.options = SimOptions.from_options(name, options)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._frames = 0
        self._errors = 0
        self._running = False

    def start(self, emit: Emit) -> None:
        if self._thread is not None:
            raise RuntimeError(f"sim source {self.name} already started")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(emit,), name=f"sim-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def health(self) -> dict[str, Any]:
        with self._lock:
            return {"frames": self._frames, "errors": self._errors, "present": self._running}

    def _run(self, emit: Emit) -> None:
        start_ms = self.options.start_ms or int(time.time() * 1000)
        t0 = time.monotonic()
        scale = self.options.time_scale
        with self._lock:
            self._running = True
        try:
            for frame in simulate(self.options, self.name, start_ms):
                delay = t0 + (frame.ts - start_ms) / 1000 / scale - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                if self._stop.is_set():
                    break
                try:
                    emit(frame)
                except Exception:  # the consumer's problem; a radio keeps going
                    with self._lock:
                        self._errors += 1
                    continue
                with self._lock:
                    self._frames += 1
        finally:
            with self._lock:
                self._running = False
