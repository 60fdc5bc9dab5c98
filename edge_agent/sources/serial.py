"""A serial RF receiver (RFLink, rtl_433 over ser2net, EV1527 UART module) as a source.

The I/O shell is ``SerialSource``: one thread opens the port with ``serial.serial_for_url``
(a device path or a URL such as ``socket://host:port`` or ``rfc2217://``), reads with a short
timeout and reopens with backoff when the device disappears. Splitting the byte stream into
lines is ``LineAssembler``, pure and separately tested: partial lines across reads, over-long
lines and lines that are not clean text are dropped and counted, never passed on.

Each complete line becomes ``RawFrame(source=name, ts=<ms when the line ended>,
payload=<line without terminator>, meta={"port": port})``. Bursts of repeated RF frames are
passed on as heard; the agent collapses them with ``edge_agent.decoders.serial.BurstFilter``.

A receiver that can also transmit (RFLink) gets lines through ``send()``: the ``transmit``
option names the line for each gateway command (``edge_agent.commands.parse_transmit``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

import serial

from edge_agent.commands import parse_transmit
from edge_agent.sources.base import Emit
from shouhu.exceptions import ConfigError, DeviceError
from shouhu.model import RawFrame
from shouhu.profiles import Profile

log = logging.getLogger(__name__)

TERMINATORS: Final[Mapping[str, bytes]] = {"\n": b"\n", "\r\n": b"\r\n", "\r": b"\r"}
PARITIES: Final[Mapping[str, str]] = {
    "N": serial.PARITY_NONE,
    "E": serial.PARITY_EVEN,
    "O": serial.PARITY_ODD,
    "M": serial.PARITY_MARK,
    "S": serial.PARITY_SPACE,
}
STOPBITS: Final[Mapping[str, float]] = {"1": 1, "1.5": 1.5, "2": 2}
WRITE_TIMEOUT_S: Final = 2.0  # send() gives up on a receiver that does not take its line


# ---------------------------------------------------------------------------------------------
# Line assembly (pure)
# ---------------------------------------------------------------------------------------------


def _is_clean_text(line: bytes) -> bool:
    """UTF-8 without control characters (tab excepted): what every supported receiver sends."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c == "\t" for c in text)


class LineAssembler:
    """Bytes in (any chunking), complete clean lines out; no I/O.

    - a line is returned without its terminator (a stray ``\\r`` before ``\\n`` is stripped);
    - empty lines are skipped silently (receivers print them between blocks);
    - a line that is not clean UTF-8 text is dropped (``dropped_lines``, ``dropped_bytes``);
    - a line longer than ``max_line`` is dropped whole, including the rest of it that arrives
      later, up to the next terminator;
    - ``reset()`` discards a partial line, e.g. when the port is reopened.
    """

    def __init__(self, terminator: bytes = b"\n", max_line: int = 4096) -> None:
        if not terminator:
            raise ValueError("terminator must not be empty")
        if max_line < 1:
            raise ValueError("max_line must be >= 1")
        self.terminator = terminator
        self.max_line = max_line
        self._buffer = bytearray()
        self._discarding = False  # inside an over-long line: drop until the next terminator
        self.dropped_lines = 0
        self.dropped_bytes = 0
        self.last_drop_reason: str | None = None

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        lines: list[bytes] = []
        while True:
            end = self._buffer.find(self.terminator)
            if end < 0:
                break
            line = bytes(self._buffer[:end])
            del self._buffer[: end + len(self.terminator)]
            if self._discarding:
                self._discarding = False
                self._drop(len(line), "over-long line", count_line=False)
                continue
            self._accept(line, lines)
        if len(self._buffer) > self.max_line + len(self.terminator):
            # keep a possible partial terminator at the end; everything before it is lost
            keep = len(self.terminator) - 1
            lost = len(self._buffer) - keep
            del self._buffer[:lost]
            self._drop(lost, "over-long line", count_line=not self._discarding)
            self._discarding = True
        return lines

    def reset(self) -> None:
        """Forget a partial line (the port was closed mid-line)."""
        if self._buffer:
            self._drop(
                len(self._buffer), "partial line at disconnect", count_line=not self._discarding
            )
        self._buffer.clear()
        self._discarding = False

    def _accept(self, line: bytes, out: list[bytes]) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            return
        if len(line) > self.max_line:
            self._drop(len(line), "over-long line")
        elif not _is_clean_text(line):
            self._drop(len(line), "line is not clean UTF-8 text")
        else:
            out.append(line)

    def _drop(self, n: int, reason: str, *, count_line: bool = True) -> None:
        self.dropped_bytes += n
        self.dropped_lines += count_line
        self.last_drop_reason = reason


# ---------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SerialOptions:
    """A serial source's settings, validated (``from_options``)."""

    port: str
    baudrate: int = 57600
    bytesize: int = 8
    parity: str = serial.PARITY_NONE
    stopbits: float = 1
    line_terminator: bytes = b"\n"
    max_line: int = 4096
    read_timeout_s: float = 0.2  # how long one read may block: bounds stop() latency
    reconnect_min_s: float = 0.2
    reconnect_max_s: float = 10.0

    @classmethod
    def from_options(
        cls, name: str, options: Mapping[str, Any], profile: Profile | None = None
    ) -> SerialOptions:
        """Gateway options, falling back to the profile's ``options`` (``baud``, ``framing``)."""
        source = f"sources.{name}"
        default = {f.name: f.default for f in fields(cls)}
        defaults = _profile_defaults(profile) if profile is not None else {}
        merged = {**defaults, **{k: v for k, v in options.items() if v is not None}}
        port = merged.get("port")
        if not isinstance(port, str) or not port:
            raise ConfigError("a serial source needs a port", field="port", source=source)
        terminator = merged.get("line_terminator", "\n")
        if terminator not in TERMINATORS:
            raise ConfigError(
                f"line_terminator must be one of {list(TERMINATORS)}, got {terminator!r}",
                field="line_terminator",
                source=source,
            )
        parity = str(merged.get("parity", "N")).upper()[:1]
        if parity not in PARITIES:
            raise ConfigError(f"parity {parity!r}", field="parity", source=source, hint="N|E|O")
        stopbits = str(merged.get("stopbits", "1"))
        if stopbits not in STOPBITS:
            raise ConfigError(f"stopbits {stopbits!r}", field="stopbits", source=source)
        try:
            opts = cls(
                port=port,
                baudrate=int(merged.get("baudrate", default["baudrate"])),
                bytesize=int(merged.get("bytesize", default["bytesize"])),
                parity=PARITIES[parity],
                stopbits=STOPBITS[stopbits],
                line_terminator=TERMINATORS[terminator],
                max_line=int(merged.get("max_line", default["max_line"])),
                read_timeout_s=float(merged.get("read_timeout_s", default["read_timeout_s"])),
                reconnect_min_s=float(merged.get("reconnect_min_s", default["reconnect_min_s"])),
                reconnect_max_s=float(merged.get("reconnect_max_s", default["reconnect_max_s"])),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bad serial option: {exc}", source=source) from exc
        if opts.bytesize not in (5, 6, 7, 8):
            raise ConfigError("bytesize must be 5..8", field="bytesize", source=source)
        if opts.baudrate <= 0 or opts.max_line < 1 or opts.read_timeout_s <= 0:
            raise ConfigError("baudrate, max_line, read_timeout_s must be > 0", source=source)
        return opts


def _profile_defaults(profile: Profile) -> dict[str, Any]:
    """Serial settings a profile ships: ``baud`` and ``framing`` ("8N1"), ``line_terminator``."""
    opts = profile.options
    out: dict[str, Any] = {}
    if "baud" in opts:
        out["baudrate"] = opts["baud"]
    framing = opts.get("framing")
    if isinstance(framing, str) and len(framing) >= 3:
        out["bytesize"], out["parity"], out["stopbits"] = framing[0], framing[1], framing[2:]
    if "line_terminator" in opts:
        out["line_terminator"] = opts["line_terminator"]
    return out


def find_profile(profile_id: str) -> Profile:
    """The shipped profile called ``profile_id`` (or ``id@version``), for ``options.profile``
    and ``shouhu decode serial``. The profiles are loaded only when one is named."""
    from shouhu.profiles import load_profiles

    for profile in load_profiles().values():
        if profile_id in (profile.id, profile.ref):
            return profile
    raise ConfigError(
        f"no device profile {profile_id!r}", field="profile", hint="see device_profiles/"
    )


# ---------------------------------------------------------------------------------------------
# The source (I/O)
# ---------------------------------------------------------------------------------------------


class SerialSource:
    """A serial receiver that hands every clean text line to ``emit`` as a RawFrame.

    Options: ``port`` (a device path or pyserial URL), ``baudrate``, ``bytesize``, ``parity``,
    ``stopbits``, ``line_terminator`` ("\\n" or "\\r\\n"), ``max_line`` (4096), and
    ``profile`` (a profile id or ``Profile`` whose ``options.baud``/``framing`` are the
    defaults), ``transmit`` (``{sound: "10;...;", silence: "..."}``: lines ``send()`` writes
    for gateway commands). It survives the device being unplugged: reads fail, the port is
    closed, and it is reopened with exponential backoff until the device is back.
    """

    transport = "serial"

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        self.name = name
        profile = options.get("profile")
        if isinstance(profile, str):
            profile = find_profile(profile)
        self.options = SerialOptions.from_options(
            name, options, profile if isinstance(profile, Profile) else None
        )
        self.transmit: Mapping[str, bytes] = parse_transmit(name, options.get("transmit"))
        self._assembler = LineAssembler(self.options.line_terminator, self.options.max_line)
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # one send() at a time; reads go on meanwhile
        self._sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._emit: Emit | None = None
        self._port: serial.SerialBase | None = None
        self._frames = 0
        self._errors = 0
        self._reconnects = 0
        self._present = False
        self._connected_once = False
        self._last_error: str | None = None
        self._logged: set[str] = set()  # reasons already logged at WARNING (log once)

    # --- Source protocol ---------------------------------------------------------------------

    def start(self, emit: Emit) -> None:
        if self._thread is not None:
            raise RuntimeError(f"serial source {self.name} already started")
        self._emit = emit
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"serial-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.options.read_timeout_s * 5 + 2)
            self._thread = None
        self._close()

    def health(self) -> Mapping[str, Any]:
        with self._lock:
            return {
                "frames": self._frames,
                "errors": self._errors + self._assembler.dropped_lines,
                "present": self._present,
                "reconnects": self._reconnects,
                "dropped_bytes": self._assembler.dropped_bytes,
                "dropped_lines": self._assembler.dropped_lines,
                "port": self.options.port,
                "last_error": self._last_error,
                "sent": self._sent,
            }

    def send(self, line: bytes) -> None:
        """Write ``line`` to the receiver (thread-safe). Raises DeviceError when the port is
        not open now or the write fails or times out (``WRITE_TIMEOUT_S``)."""
        with self._write_lock:
            with self._lock:
                port = self._port
            if port is None:
                raise DeviceError(f"serial source {self.name}: {self.options.port} is not open")
            try:
                port.write(line)
                port.flush()
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                # TypeError/AttributeError: the reader closed the port under us (device gone)
                raise DeviceError(
                    f"serial source {self.name}: write to {self.options.port} failed: {exc}"
                ) from exc
        with self._lock:
            self._sent += 1

    # --- the thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        delay = self.options.reconnect_min_s
        while not self._stop.is_set():
            if not self._open():
                self._stop.wait(delay)
                delay = min(delay * 2, self.options.reconnect_max_s)
                continue
            delay = self.options.reconnect_min_s
            self._read_until_lost()
            self._close()

    def _open(self) -> bool:
        opts = self.options
        try:
            port = serial.serial_for_url(
                opts.port,
                baudrate=opts.baudrate,
                bytesize=opts.bytesize,
                parity=opts.parity,
                stopbits=opts.stopbits,
                timeout=opts.read_timeout_s,
                write_timeout=WRITE_TIMEOUT_S,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            self._note_error("open", f"cannot open {opts.port}: {exc}", count=False)
            return False
        with self._lock:
            self._port = port
            self._present = True
            if self._connected_once:
                self._reconnects += 1
            self._connected_once = True
        log.info("serial source %s: opened %s", self.name, opts.port)
        self._logged.discard("open")
        self._logged.discard("read")
        return True

    def _read_until_lost(self) -> None:
        port = self._port
        assert port is not None
        while not self._stop.is_set():
            try:
                chunk = port.read(max(1, port.in_waiting))
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                # TypeError/AttributeError: pyserial's fd is gone after close() from stop()
                if not self._stop.is_set():
                    self._note_error("read", f"{self.options.port} lost: {exc}")
                return
            if not chunk:
                continue
            now = int(time.time() * 1000)
            with self._lock:
                lines = self._assembler.feed(chunk)
                reason = self._assembler.last_drop_reason
                self._assembler.last_drop_reason = None
            if reason:
                self._log_once(reason, f"dropped input on {self.options.port}: {reason}")
            for line in lines:
                self._hand_on(RawFrame(self.name, now, line, {"port": self.options.port}))

    def _hand_on(self, frame: RawFrame) -> None:
        assert self._emit is not None
        try:
            self._emit(frame)
        except Exception as exc:  # the agent's problem, but it must not end the reader
            self._note_error("emit", f"emit failed: {exc!r}")
            return
        with self._lock:
            self._frames += 1

    def _close(self) -> None:
        with self._lock:
            port, self._port = self._port, None
            self._present = False
            self._assembler.reset()
            self._assembler.last_drop_reason = None
        if port is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                port.close()

    def _note_error(self, reason: str, message: str, *, count: bool = True) -> None:
        with self._lock:
            self._errors += count
            self._last_error = message
        self._log_once(reason, f"serial source {self.name}: {message}")

    def _log_once(self, reason: str, message: str) -> None:
        """WARNING the first time a reason occurs (per connection), DEBUG after that."""
        if reason in self._logged:
            log.debug(message)
        else:
            self._logged.add(reason)
            log.warning(message)
