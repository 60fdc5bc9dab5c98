"""The notifier: messages to people through apprise URLs, off the rules service's thread.

One worker thread per channel (contact URL), each with its own queue, so a dead or slow
channel (an SMS gateway timing out) delays only its own messages. Each message is tried up to
``attempts`` times with exponential backoff; every attempt is one ``Delivery`` row (the URL
scheme only: URLs hold tokens). ``latency_ms`` is the time from the reading that triggered
the alert to the hand-off to the channel.

The ``body`` may name the person and the place: it goes only to the contact's channel, never
to MQTT or the time series.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from collector.alerts.store import Delivery
from collector.domain import Contact

log = logging.getLogger(__name__)

DEFAULT_ATTEMPTS: Final = 3
DEFAULT_BACKOFF_S: Final = 2.0


@dataclass(frozen=True, slots=True)
class Message:
    """What one contact should be told."""

    contact: Contact
    title: str
    body: str  # may hold personal data: for the channel only
    kind: str  # alert or notice kind
    alert_id: str | None = None  # None for a Notice
    state: str = ""  # alert state announced
    origin_ms: int | None = None  # ts of the triggering reading (for latency)
    event_ms: int | None = None  # when the announced alert event happened


class DeliveryLog(Protocol):
    def log_delivery(self, d: Delivery) -> None: ...


# (url, title, body) -> error text, "" when the channel took the message
SendFn = Callable[[str, str, str], str]


def channel_of(url: str) -> str:
    """The scheme of an apprise URL (``tgram``, ``mailto``, ``json``): safe to store and show."""
    scheme, sep, _ = url.partition("://")
    return scheme.lower() if sep and scheme.isascii() and scheme.isalnum() else "invalid"


def apprise_send(url: str, title: str, body: str) -> str:
    """Send through apprise; return "" on success, else what apprise said went wrong."""
    import apprise  # lazily: heavy import, only the collector needs it

    sender = apprise.Apprise()
    if not sender.add(url):
        return f"apprise does not understand this {channel_of(url)}:// URL"
    with apprise.LogCapture(level=logging.WARNING) as captured:
        ok = sender.notify(title=title, body=body)
        text = captured.getvalue().strip()
    if ok:
        return ""
    last = text.splitlines()[-1] if text else "the channel refused the message"
    return last.replace(url, f"{channel_of(url)}://…")


class Notifier:
    """Queue and deliver ``Message``s; ``deliver_now`` does the same synchronously."""

    def __init__(
        self,
        delivery_log: DeliveryLog | None = None,
        *,
        send: SendFn = apprise_send,
        attempts: int = DEFAULT_ATTEMPTS,
        backoff_s: float = DEFAULT_BACKOFF_S,
        clock: Callable[[], float] = time.time,
        on_delivered: Callable[[Message, Delivery], None] | None = None,
    ) -> None:
        self._log = delivery_log
        self._send = send
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self._clock = clock
        self.on_delivered = on_delivered  # called after each successful delivery
        self._lock = threading.Lock()
        self._queues: dict[str, queue.Queue[Message | None]] = {}
        self._workers: dict[str, threading.Thread] = {}
        self._stop = threading.Event()
        self._busy = 0
        self._idle = threading.Condition(self._lock)

    # --- asynchronous -------------------------------------------------------------------

    def submit(self, message: Message) -> None:
        """Queue for the contact's channel worker (started on first use); returns at once."""
        url = message.contact.url
        with self._lock:
            if self._stop.is_set():
                log.warning("notifier stopped: message %s to %s dropped", message.kind, url[:8])
                return
            q = self._queues.get(url)
            if q is None:
                q = self._queues[url] = queue.Queue()
                worker = threading.Thread(
                    target=self._work,
                    args=(q,),
                    name=f"notifier-{channel_of(url)}-{len(self._workers)}",
                    daemon=True,
                )
                self._workers[url] = worker
                worker.start()
            self._busy += 1
        q.put(message)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every queued message is delivered or given up; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the workers (queued messages still in backoff are abandoned)."""
        with self._lock:
            self._stop.set()
            workers = list(self._workers.values())
            for q in self._queues.values():
                q.put(None)
        deadline = time.monotonic() + timeout
        for w in workers:
            w.join(max(0.0, deadline - time.monotonic()))

    def _work(self, q: queue.Queue[Message | None]) -> None:
        while True:
            message = q.get()
            if message is None:
                return
            try:
                self.deliver_now(message)
            except Exception:  # a bug here must not kill the channel's worker
                log.exception("delivery of %s failed unexpectedly", message.kind)
            finally:
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()

    # --- synchronous --------------------------------------------------------------------

    def deliver_now(self, message: Message) -> list[Delivery]:
        """Try up to ``attempts`` times with backoff; one ``Delivery`` per attempt."""
        url = message.contact.url
        out: list[Delivery] = []
        for attempt in range(1, self.attempts + 1):
            try:
                error = self._send(url, message.title, message.body)
            except Exception as exc:  # apprise plugins may raise on odd input
                error = f"{type(exc).__name__}: {exc}".replace(url, "…")
            now = int(self._clock() * 1000)
            ok = not error
            latency = now - message.origin_ms if ok and message.origin_ms is not None else None
            d = Delivery(
                alert_id=message.alert_id,
                kind=message.kind,
                state=message.state,
                contact_id=message.contact.id,
                channel=channel_of(url),
                attempt=attempt,
                ok=ok,
                error=error,
                at_ms=now,
                latency_ms=latency,
            )
            out.append(d)
            self._record(d)
            if ok:
                if self.on_delivered is not None:
                    try:
                        self.on_delivered(message, d)
                    except Exception:
                        log.exception("on_delivered callback failed")
                return out
            if attempt < self.attempts and self._stop.wait(self.backoff_s * 2 ** (attempt - 1)):
                break
        log.warning(
            "could not deliver %s to contact %s over %s after %d attempt(s): %s",
            message.kind,
            message.contact.id,
            channel_of(url),
            len(out),
            out[-1].error,
        )
        return out

    def _record(self, d: Delivery) -> None:
        if self._log is None:
            return
        try:
            self._log.log_delivery(d)
        except Exception:  # the delivery happened; a log failure must not repeat it
            log.exception("cannot log a delivery of %s", d.kind)
