"""A scripted radio: plays a timeline of frames at given offsets, through the real decoders.

The demo and the benchmarks need a radio that says exactly what a story needs, when it needs
it: an amulet passing two street gateways, a smoke alarm's RF burst, a patrol officer's taps.
A ``script`` source is that radio. Its frames are the bytes a real radio would hand over
(iBeacon AD structures, RFLink lines, NDEF messages), so everything downstream is the real
pipeline; only the air is scripted.

Options (``type: script`` in gateway.yaml):

``transport``   ``ble`` | ``nfc`` | ``serial``: which device profiles decode the frames (required)
``frames``      list of ``{at_s, payload (hex) | payload_text, meta}``, or
``file``        a YAML/JSON file holding that list
``time_scale``  > 0; offsets are divided by it (default 1)
``repeat``      how many times the timeline plays (default 1; 0 = until stopped); each round
                starts ``period_s`` (default: last offset + 1 s) after the previous one
``transmit``    like the serial source: ``{sound: "10;...;", silence: "..."}``; ``send()``
                records the lines (``sent()``) instead of writing to a receiver

A frame's ``ts`` is the wall clock when it is emitted (ms since the epoch), as a radio stamps
what it hears. ``timeline()`` is the pure part: offsets in, frames out, no clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from edge_agent.commands import parse_transmit
from edge_agent.sources.base import Emit
from shouhu.exceptions import ConfigError
from shouhu.model import RawFrame

TRANSPORTS: Final = ("ble", "nfc", "serial")
OPTION_KEYS: Final = frozenset(
    {"transport", "frames", "file", "time_scale", "repeat", "period_s", "transmit"}
)
FRAME_KEYS: Final = frozenset({"at_s", "payload", "payload_text", "meta"})
MAX_SENT: Final = 1000  # transmitted lines kept for sent()


@dataclass(frozen=True, slots=True)
class ScriptFrame:
    """One frame of the timeline: ``payload`` heard ``at_s`` seconds after the start."""

    at_s: float
    payload: bytes
    meta: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ScriptOptions:
    transport: str
    frames: tuple[ScriptFrame, ...]  # sorted by at_s
    time_scale: float = 1.0
    repeat: int = 1  # 0 = forever
    period_s: float = 0.0  # distance between round starts (unscaled seconds)
    transmit: Mapping[str, bytes] | None = None


def _number(value: Any, where: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"must be a number, got {value!r}", field=where)
    if value < 0 or (positive and value == 0):
        raise ConfigError(f"must be {'> 0' if positive else '>= 0'}, got {value!r}", field=where)
    return float(value)


def parse_frame(item: Any, where: str) -> ScriptFrame:
    """One timeline entry (an outside shape) as a ``ScriptFrame``; ConfigError names the field."""
    if isinstance(item, ScriptFrame):
        return item
    if not isinstance(item, Mapping):
        raise ConfigError("must be a mapping {at_s, payload | payload_text, meta}", field=where)
    for key in item:
        if key not in FRAME_KEYS:
            raise ConfigError(
                f"unknown key (allowed: {', '.join(sorted(FRAME_KEYS))})", field=f"{where}.{key}"
            )
    at_s = _number(item.get("at_s", 0.0), f"{where}.at_s")
    hex_payload, text = item.get("payload"), item.get("payload_text")
    if (hex_payload is None) == (text is None):
        raise ConfigError("give exactly one of payload (hex) and payload_text", field=where)
    if text is not None:
        if not isinstance(text, str):
            raise ConfigError("must be a string", field=f"{where}.payload_text")
        payload = text.encode("utf-8")
    else:
        if isinstance(hex_payload, bytes):
            payload = bytes(hex_payload)
        elif isinstance(hex_payload, str):
            try:
                payload = bytes.fromhex(hex_payload)
            except ValueError as exc:
                raise ConfigError("not hex", field=f"{where}.payload") from exc
        else:
            raise ConfigError("must be a hex string", field=f"{where}.payload")
    meta = item.get("meta") or {}
    if not isinstance(meta, Mapping):
        raise ConfigError("must be a mapping", field=f"{where}.meta")
    return ScriptFrame(at_s, payload, dict(meta))


def _load_file(path: Any, where: str) -> list[Any]:
    if not isinstance(path, str) or not path:
        raise ConfigError("must be a file path", field=where)
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path!r}: {exc.strerror}", field=where) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path!r} is not valid YAML/JSON: {exc}", field=where) from exc
    if not isinstance(doc, list):
        raise ConfigError(f"{path!r} must hold a list of frames", field=where)
    return doc


def parse_options(name: str, options: Mapping[str, Any]) -> ScriptOptions:
    """Check a ``script`` source's options; ConfigError names the wrong field."""
    base = f"sources.{name}.options"
    for key in options:
        if key not in OPTION_KEYS:
            raise ConfigError(
                f"unknown option (allowed: {', '.join(sorted(OPTION_KEYS))})",
                field=f"{base}.{key}",
            )
    transport = options.get("transport")
    if transport not in TRANSPORTS:
        raise ConfigError(
            f"must be one of {', '.join(TRANSPORTS)}, got {transport!r}", field=f"{base}.transport"
        )
    if "frames" in options and "file" in options:
        raise ConfigError("give frames or file, not both", field=base)
    raw = options.get("frames")
    if "file" in options:
        raw = _load_file(options["file"], f"{base}.file")
    if raw is None:
        raw = []
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        raise ConfigError("must be a list of frames", field=f"{base}.frames")
    frames = tuple(
        sorted(
            (parse_frame(item, f"{base}.frames[{i}]") for i, item in enumerate(raw)),
            key=lambda f: f.at_s,
        )
    )
    scale = _number(options.get("time_scale", 1.0), f"{base}.time_scale", positive=True)
    repeat = options.get("repeat", 1)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 0:
        raise ConfigError(f"must be an integer >= 0, got {repeat!r}", field=f"{base}.repeat")
    last = frames[-1].at_s if frames else 0.0
    period = _number(options.get("period_s", last + 1.0), f"{base}.period_s", positive=True)
    if period < last:
        raise ConfigError(f"must be at least the last offset ({last} s)", field=f"{base}.period_s")
    transmit = parse_transmit(name, options.get("transmit"))
    return ScriptOptions(str(transport), frames, scale, repeat, period, transmit or None)


def timeline(opts: ScriptOptions) -> Iterator[tuple[float, ScriptFrame]]:
    """``(offset_s, frame)`` in play order, offsets already scaled. Pure; endless if repeat 0."""
    if not opts.frames:
        return
    round_ = 0
    while opts.repeat == 0 or round_ < opts.repeat:
        base = round_ * opts.period_s
        for frame in opts.frames:
            yield (base + frame.at_s) / opts.time_scale, frame
        round_ += 1


class ScriptSource:
    """A ``Source`` playing ``timeline()`` in real time; ``send()`` records transmissions."""

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        self.name = name
        self.options = parse_options(name, options)
        self.transport = self.options.transport
        self.transmit: Mapping[str, bytes] = self.options.transmit or {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._frames = 0
        self._errors = 0
        self._running = False
        self._sent: list[tuple[int, bytes]] = []

    def start(self, emit: Emit) -> None:
        if self._thread is not None:
            raise RuntimeError(f"script source {self.name} already started")
        self._stop.clear()
        self._done.clear()
        with self._lock:
            self._running = True  # the "radio" is there from start() to stop()
        self._thread = threading.Thread(
            target=self._run, args=(emit,), name=f"script-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            self._running = False

    def wait_done(self, timeout: float | None = None) -> bool:
        """Block until every frame of the timeline was emitted (never, with repeat 0)."""
        return self._done.wait(timeout)

    def health(self) -> dict[str, Any]:
        with self._lock:
            return {
                "frames": self._frames,
                "errors": self._errors,
                "present": self._running,
                "sent": len(self._sent),
            }

    # --- transmitting (the agent's sound/silence commands) ---------------------------------

    def send(self, line: bytes) -> None:
        """What a real receiver would transmit: kept, with the time, for ``sent()``."""
        with self._lock:
            if len(self._sent) < MAX_SENT:
                self._sent.append((time.time_ns() // 1_000_000, bytes(line)))

    def sent(self) -> list[tuple[int, bytes]]:
        """``(ms since the epoch, line)`` for every line transmitted so far."""
        with self._lock:
            return list(self._sent)

    # --- the player thread ------------------------------------------------------------------

    def _run(self, emit: Emit) -> None:
        t0 = time.monotonic()
        try:
            for offset, frame in timeline(self.options):
                delay = t0 + offset - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                if self._stop.is_set():
                    return
                raw = RawFrame(self.name, time.time_ns() // 1_000_000, frame.payload, frame.meta)
                try:
                    emit(raw)
                except Exception:  # the consumer's problem; a radio keeps going
                    with self._lock:
                        self._errors += 1
                    continue
                with self._lock:
                    self._frames += 1
            self._done.set()
        finally:
            if self._stop.is_set():
                self._done.set()
