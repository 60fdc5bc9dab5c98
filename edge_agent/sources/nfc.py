"""NFC reader source (nfcpy): every tag tap becomes one ``RawFrame``.

Frame (docs/nfc.md): ``payload`` = the tag's NDEF message bytes (``b""`` when none), ``meta =
{"uid": lower-case hex, "technology": "Type2Tag"|..., "product": "NXP NTAG213"|...}``, plus
``uid_hash_key`` (never printed) when ``uid_hash_key_file`` is configured, for school cards.

Options: ``path`` (nfcpy device path: ``usb``, ``usb:VID:PID``, ``tty:USB0:pn532``,
``udp:host:port``), ``debounce_s`` (2.0: the same UID again within it is the same tap),
``targets`` (nfcpy technologies to poll, default ``106A 106B 212F``), ``uid_hash_key_file``,
``retry_max_s`` (30: longest wait between attempts to open a missing reader).

One thread runs ``clf.connect(rdwr=...)`` in a loop. A reader that cannot be opened makes the
source ``present: False`` and retried with backoff; an ``IOError`` while connected (reader
unplugged) closes it and reopens it. Tag read errors are counted, logged once, and skipped.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from edge_agent.decoders.nfc import SecretBytes
from edge_agent.sources.base import Emit
from shouhu.cardkey import load_key_file
from shouhu.exceptions import ConfigError
from shouhu.model import RawFrame

log = logging.getLogger(__name__)

DEFAULT_TARGETS: Final = ("106A", "106B", "212F")
OPTION_KEYS: Final = frozenset(
    {"path", "debounce_s", "targets", "uid_hash_key_file", "retry_max_s"}
)
RETRY_MIN_S: Final = 0.5


@dataclass(slots=True)
class TapDebouncer:
    """Repeated reads of one tag within ``window_s`` of its last read are one tap.

    The window slides: a tag left on the reader, or tapped again and again, stays one tap until
    it has been away for ``window_s``. Pure: the caller passes the clock.
    """

    window_s: float
    # uid -> monotonic time the tag was last read
    _last_seen: dict[str, float] = field(default_factory=dict)

    def is_new_tap(self, uid: str, now: float) -> bool:
        last = self._last_seen.get(uid)
        self._last_seen[uid] = now
        if len(self._last_seen) > 256:  # forget tags gone for longer than the window
            self._last_seen = {k: t for k, t in self._last_seen.items() if now - t < self.window_s}
            self._last_seen[uid] = now
        return last is None or now - last >= self.window_s

    def touch(self, uid: str, now: float) -> None:
        """The tag was still there at ``now`` (it left the field): the window starts again."""
        if uid in self._last_seen:
            self._last_seen[uid] = now


@dataclass(frozen=True, slots=True)
class TagRead:
    """What was read from one activated tag."""

    uid: str
    technology: str
    product: str
    ndef: bytes


def read_tag(tag: Any) -> TagRead:
    """UID, technology, product and NDEF bytes of an activated ``nfc.tag.Tag``."""
    ndef = tag.ndef
    octets = bytes(ndef.octets) if ndef is not None else b""
    return TagRead(bytes(tag.identifier).hex(), str(tag.type), str(tag.product), octets)


def backoff_s(attempt: int, maximum: float) -> float:
    """Wait before the ``attempt``-th retry to open the reader: 0.5 s doubling to ``maximum``."""
    return float(min(maximum, RETRY_MIN_S * 2 ** min(attempt, 16)))


class NfcSource:
    """An nfcpy reader; see the module docstring for options and frames."""

    transport = "nfc"

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        for key in options:
            if key not in OPTION_KEYS and key != "type":
                raise ConfigError(
                    f"unknown option (allowed: {', '.join(sorted(OPTION_KEYS))})",
                    field=key,
                    source=name,
                )
        self.name = name
        self.path = str(options.get("path", "usb"))
        try:
            self.debounce_s = float(options.get("debounce_s", 2.0))
            self.retry_max_s = float(options.get("retry_max_s", 30.0))
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                "expected a number", field="debounce_s/retry_max_s", source=name
            ) from exc
        targets = options.get("targets", DEFAULT_TARGETS)
        if isinstance(targets, str):
            targets = targets.split()
        self.targets = tuple(str(t) for t in targets)
        key_file = options.get("uid_hash_key_file")
        self._hash_key = SecretBytes(load_key_file(key_file)) if key_file else None
        self._debouncer = TapDebouncer(self.debounce_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._emit: Emit | None = None
        self._lock = threading.Lock()
        self._counts = {"frames": 0, "errors": 0, "reconnects": 0, "debounced": 0}
        self._present = False
        self._last_error = ""
        self._logged: set[str] = set()

    # -- Source protocol --------------------------------------------------------------------

    def start(self, emit: Emit) -> None:
        self._emit = emit
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"nfc-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the loop to end; returns once the reader is closed (nfcpy polls ~1 s at most)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def health(self) -> Mapping[str, Any]:
        with self._lock:
            return {
                **self._counts,
                "present": self._present,
                "path": self.path,
                "last_error": self._last_error,
            }

    # -- reader loop ------------------------------------------------------------------------

    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def _error(self, kind: str, message: str) -> None:
        """Count an error; log each kind once at WARNING, repeats at DEBUG."""
        with self._lock:
            self._counts["errors"] += 1
            self._last_error = message
            first = kind not in self._logged
            self._logged.add(kind)
        log.log(logging.WARNING if first else logging.DEBUG, "nfc %s: %s", self.name, message)

    def _set_present(self, present: bool) -> None:
        with self._lock:
            self._present = present

    def _run(self) -> None:
        import nfc  # the nfcpy stack is imported in the reader thread, only when used

        attempt = 0
        while not self._stop.is_set():
            try:
                clf = nfc.ContactlessFrontend(self.path)
            except (OSError, ValueError) as exc:
                self._set_present(False)
                self._error("open", f"cannot open reader {self.path}: {exc}")
                self._stop.wait(backoff_s(attempt, self.retry_max_s))
                attempt += 1
                continue
            attempt = 0
            self._set_present(True)
            try:
                self._serve(clf)
            finally:
                with contextlib.suppress(OSError):
                    clf.close()
            if not self._stop.is_set():  # connect failed: reader gone or wedged
                self._set_present(False)
                self._count("reconnects")
                self._stop.wait(RETRY_MIN_S)
        self._set_present(False)

    def _serve(self, clf: Any) -> None:
        """Poll until stopped; return when nfcpy reports an IOError (it returns ``False``)."""
        rdwr = {
            "targets": self.targets,
            "on-connect": self._on_connect,
            "on-release": self._on_release,
            "iterations": 1,
            "interval": 0.1,
            "beep-on-connect": False,
        }
        while not self._stop.is_set():
            try:
                result = clf.connect(rdwr=rdwr, terminate=self._stop.is_set)
            except OSError as exc:
                self._error("connect", f"reader {self.path} failed: {exc}")
                return
            except Exception as exc:  # nfcpy driver bug: log, reopen, keep the gateway up
                log.exception("nfc %s: unexpected error from nfcpy", self.name)
                self._error("connect-bug", f"reader {self.path} failed: {exc!r}")
                return
            if result is False:
                self._error("connect", f"reader {self.path} failed (see nfcpy log)")
                return

    def _on_release(self, tag: Any) -> bool:
        """nfcpy callback: the tag left the field; its debounce window starts now."""
        with contextlib.suppress(TypeError, AttributeError):
            self._debouncer.touch(bytes(tag.identifier).hex(), time.monotonic())
        return True

    def _on_connect(self, tag: Any) -> bool:
        """nfcpy callback: read the tag, emit one frame per tap; True = wait until removed."""
        import nfc

        try:
            read = read_tag(tag)
        except (nfc.tag.TagCommandError, nfc.clf.CommunicationError, OSError) as exc:
            self._error("read", f"tag read failed (tag moved away?): {exc!r}")
            return True
        except Exception as exc:  # an odd tag must not end the reader thread
            self._error("read-bug", f"tag read failed unexpectedly: {exc!r}")
            return True
        if not self._debouncer.is_new_tap(read.uid, time.monotonic()):
            self._count("debounced")
            return True
        meta: dict[str, Any] = {
            "uid": read.uid,
            "technology": read.technology,
            "product": read.product,
        }
        if self._hash_key is not None:
            meta["uid_hash_key"] = self._hash_key
        frame = RawFrame(self.name, time.time_ns() // 1_000_000, read.ndef, meta)
        self._count("frames")
        emit: Callable[[RawFrame], None] | None = self._emit
        if emit is not None:
            emit(frame)
        return True
