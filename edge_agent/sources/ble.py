"""BLE source: a bleak ``BleakScanner`` in its own asyncio loop and thread.

Every advertisement bleak reports becomes canonical AD bytes (``ad_from_parts``) in a
``RawFrame`` with ``meta = {"address", "rssi"}``, so decoders see the same bytes whatever the OS
backend parsed them from. The source also remembers, per address, the Eddystone-UID it last
heard there and adds it as ``meta["eddystone_id"]`` to that address's other frames (TLM, URL
carry no id of their own).

Options (``sources: [{type: ble, ...}]`` in gateway.yaml):

- ``adapter``: ``hci0`` etc. (BlueZ); default: the system's default adapter.
- ``passive``: scan passively (no scan requests: less airtime, no scan-response data). BlueZ
  only does passive scanning through advertisement monitors, which need ``or_patterns`` (this
  source passes Apple manufacturer data and Eddystone service data) and BlueZ's experimental
  features (``bluetoothd -E``). If passive scanning cannot start, the source falls back to active
  scanning, logs it once, and reports ``scanning_mode: active`` in ``health()``.
- ``backoff_initial_s`` (1), ``backoff_max_s`` (60): retry delays while the adapter is missing.
- ``silence_restart_s`` (300): restart the scanner when nothing was heard for this long, which
  is how an adapter that vanished and came back is noticed (bleak does not report it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from bleak import BleakScanner
from bleak.args.bluez import BlueZScannerArgs, OrPattern
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from edge_agent.decoders.ble import ad_from_parts, eddystone_uid_of
from edge_agent.sources.base import Emit
from shouhu.exceptions import ConfigError, DecodeError
from shouhu.model import RawFrame

log = logging.getLogger(__name__)

MAX_REMEMBERED_IDS: Final = 4096  # address -> Eddystone id, oldest forgotten first

# What passive scanning on BlueZ lets through: iBeacons and Eddystone (all our BLE profiles).
PASSIVE_PATTERNS: Final[tuple[OrPattern | tuple[int, AdvertisementDataType, bytes], ...]] = (
    OrPattern(0, AdvertisementDataType.MANUFACTURER_SPECIFIC_DATA, b"\x4c\x00"),
    OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID16, b"\xaa\xfe"),
)


_DEFAULT_NUMBERS: Final[Mapping[str, float]] = {
    "backoff_initial_s": 1.0,
    "backoff_max_s": 60.0,
    "silence_restart_s": 300.0,
}


@dataclass(frozen=True, slots=True)
class BleOptions:
    adapter: str | None = None
    passive: bool = False
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    silence_restart_s: float = 300.0

    @classmethod
    def from_options(cls, source: str, options: Mapping[str, Any]) -> BleOptions:
        known = {"adapter", "passive", "backoff_initial_s", "backoff_max_s", "silence_restart_s"}
        for key in options:
            if key not in known and key != "type" and key != "name":
                raise ConfigError(
                    f"unknown option (known: {', '.join(sorted(known))})", field=f"{source}.{key}"
                )
        adapter = options.get("adapter")
        if adapter is not None and not isinstance(adapter, str):
            raise ConfigError(
                f"expected an adapter name like hci0, got {adapter!r}", field=f"{source}.adapter"
            )
        passive = options.get("passive", False)
        if not isinstance(passive, bool):
            raise ConfigError(f"expected true or false, got {passive!r}", field=f"{source}.passive")
        numbers: dict[str, float] = {}
        for key in ("backoff_initial_s", "backoff_max_s", "silence_restart_s"):
            value = options.get(key, _DEFAULT_NUMBERS[key])
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"expected a number > 0, got {value!r}", field=f"{source}.{key}")
            numbers[key] = float(value)
        return cls(adapter, passive, **numbers)


class BleSource:
    """Scans BLE advertisements; see the module doc for options and behaviour."""

    transport = "ble"

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        self.name = name
        self.options = BleOptions.from_options(name, options)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._emit: Emit | None = None
        self._passive = self.options.passive  # turned off for good if the adapter can't do it
        # address -> "<namespace>:<instance>" learned from Eddystone-UID frames (bounded LRU)
        self._eddystone_ids: OrderedDict[str, str] = OrderedDict()
        self._logged: set[str] = set()  # error kinds already logged (each is logged once)
        self._frames = 0
        self._errors = 0
        self._attempts = 0
        self._restarts = 0
        self._present = False
        self._last_heard = 0.0
        self._last_error: str | None = None

    # -- the Source contract ---------------------------------------------------------------

    def start(self, emit: Emit) -> None:
        if self._thread is not None:
            raise RuntimeError(f"BLE source {self.name} already started")
        self._emit = emit
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._thread_main, name=f"ble-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop may be closed already
                loop.call_soon_threadsafe(wake.set)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def health(self) -> dict[str, Any]:
        with self._lock:
            return {
                "frames": self._frames,
                "errors": self._errors,
                "present": self._present,
                "attempts": self._attempts,
                "restarts": self._restarts,
                "scanning_mode": "passive" if self._passive else "active",
                "adapter": self.options.adapter or "default",
                "last_error": self._last_error,
            }

    # -- advertisements (bleak's detection callback, in the scanner's loop) -----------------

    def on_advertisement(self, device: BLEDevice, adv: AdvertisementData) -> None:
        """Turn one bleak advertisement into a ``RawFrame`` and emit it. Never raises."""
        address = device.address.upper()
        try:
            payload = ad_from_parts(
                adv.manufacturer_data,
                adv.service_data,
                adv.service_uuids,
                adv.local_name,
                adv.tx_power,
            )
        except (DecodeError, ValueError) as exc:
            self._count_error("advertisement", f"unencodable advertisement from {address}: {exc}")
            return
        meta: dict[str, Any] = {"address": address, "rssi": adv.rssi}
        learned = eddystone_uid_of(payload)
        with self._lock:
            self._last_heard = time.monotonic()
            if learned is not None:
                self._eddystone_ids[address] = learned
                self._eddystone_ids.move_to_end(address)
                while len(self._eddystone_ids) > MAX_REMEMBERED_IDS:
                    self._eddystone_ids.popitem(last=False)
            elif address in self._eddystone_ids:
                meta["eddystone_id"] = self._eddystone_ids[address]
            self._frames += 1
        frame = RawFrame(
            source=self.name, ts=time.time_ns() // 1_000_000, payload=payload, meta=meta
        )
        emit = self._emit
        if emit is None:
            return
        try:
            emit(frame)
        except Exception as exc:  # the consumer's bug must not stop the radio
            self._count_error("emit", f"emit failed: {exc!r}")

    # -- the scanner loop ------------------------------------------------------------------

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._run())
        finally:
            self._loop = None
            loop.close()

    async def _run(self) -> None:
        self._wake = asyncio.Event()
        if self._stop.is_set():
            return
        backoff = self.options.backoff_initial_s
        trying_active_instead = False  # passive failed; if active works, passive stays off
        while not self._stop.is_set():
            with self._lock:
                self._attempts += 1
            try:
                await self._scan_until_silent_or_stopped()
                backoff = self.options.backoff_initial_s
                if trying_active_instead:
                    trying_active_instead = False
                    self._count_error(
                        "passive", "passive scanning unsupported here; scanning actively"
                    )
                if not self._stop.is_set():
                    with self._lock:
                        self._restarts += 1
                    continue
            except Exception as exc:  # bleak, D-Bus, OS: the adapter is missing or broke
                with self._lock:
                    self._present = False
                if self._passive:  # maybe only passive is unsupported: try active at once
                    self._passive, trying_active_instead = False, True
                    continue
                if trying_active_instead:  # active failed too: the adapter is missing
                    self._passive, trying_active_instead = True, False
                self._count_error(type(exc).__name__, f"BLE adapter unavailable: {exc!r}; retrying")
            await self._sleep(backoff)
            backoff = min(backoff * 2, self.options.backoff_max_s)

    async def _scan_until_silent_or_stopped(self) -> None:
        bluez: BlueZScannerArgs = {}
        if self.options.adapter:
            bluez["adapter"] = self.options.adapter
        if self._passive:
            bluez["or_patterns"] = list(PASSIVE_PATTERNS)
        scanner = BleakScanner(
            detection_callback=self.on_advertisement,
            scanning_mode="passive" if self._passive else "active",
            bluez=bluez,
        )
        await scanner.start()
        with self._lock:
            self._present = True
            self._last_heard = time.monotonic()
        try:
            while not self._stop.is_set():
                await self._sleep(min(5.0, self.options.silence_restart_s))
                with self._lock:
                    silent_for = time.monotonic() - self._last_heard
                if silent_for >= self.options.silence_restart_s:
                    log.info(
                        "BLE source %s: nothing heard for %.0f s, restarting the scanner",
                        self.name,
                        silent_for,
                    )
                    return
        finally:
            try:
                await scanner.stop()
            except Exception as exc:  # the adapter may already be gone
                log.debug("BLE source %s: scanner stop failed: %r", self.name, exc)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once on ``stop()``."""
        assert self._wake is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    def _count_error(self, kind: str, message: str) -> None:
        with self._lock:
            self._errors += 1
            self._last_error = message
            first = kind not in self._logged
            self._logged.add(kind)
        if first:
            log.warning("BLE source %s: %s", self.name, message)
