"""What the collector needs from a time-series store, and the errors it may raise.

The collector acknowledges an MQTT message only after ``write`` returns, so ``write`` must be
synchronous and durable. Its two failures tell the caller what to do:

* ``StorageUnavailable``: the store cannot take data *now* (unreachable, timeout, 5xx, 429,
  wrong credentials, missing database). Keep the message un-acked and retry later.
* ``StorageError``: the store refused *this data* for good (HTTP 400: bad value, field type
  conflict). Retrying cannot help: dead-letter the batch with the reason.

Enrichment: a writer with a ``gateway_lookup`` attribute (``EnrichingWriter``) tags the readings
of a registered gateway with its place (``collector.points``). The collector sets it to a
``RegistryGatewayLookup`` when it has a registry (``attach_gateway_lookup``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Protocol, runtime_checkable

from collector.domain import Gateway, Household
from collector.points import PlacedGateway, Point, records_to_lines, to_line_protocol
from shouhu.exceptions import ConfigError, ShouhuError, StorageError, StorageUnavailable
from shouhu.model import Record

__all__ = [
    "EnrichingWriter",
    "GatewayLookup",
    "RegistryGatewayLookup",
    "StorageError",
    "StorageUnavailable",
    "Writer",
    "attach_gateway_lookup",
    "error_for_status",
    "gateway_places",
    "option",
]

log = logging.getLogger(__name__)

# gateway id -> its registry entry (None: not registered); called once per written batch
GatewayLookup = Callable[[str], Gateway | None]
REGISTRY_POLL_S: Final = 1.0  # how often a lookup asks the registry whether it changed


@runtime_checkable
class Writer(Protocol):
    """A time-series sink; see the module doc for the error contract."""

    def write(self, gw: str, records: Sequence[Record]) -> None:
        """Store ``records`` of gateway ``gw``; durable when this returns."""
        ...

    def ping(self) -> bool:
        """True when the store answers right now (for health checks, never raises)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class EnrichingWriter(Protocol):
    """A writer that adds the hearing gateway's place to readings (``collector.points``)."""

    gateway_lookup: GatewayLookup | None


class GatewayRegistry(Protocol):
    """What a lookup needs of ``RegistryStore``: a cheap change counter and two lists."""

    def changes(self) -> object: ...
    def gateways(self) -> tuple[Gateway, ...]: ...
    def households(self) -> tuple[Household, ...]: ...


def gateway_places(
    gateways: Iterable[Gateway], households: Iterable[Household]
) -> dict[str, PlacedGateway]:
    """Every gateway with the district of the households it serves, when they name just one."""
    districts: dict[str, set[str]] = {}
    for h in households:
        for gw in h.gateways:
            if h.district:
                districts.setdefault(gw, set()).add(h.district)
    places = {}
    for g in gateways:
        found = districts.get(g.id, set())
        district = next(iter(found)) if len(found) == 1 else ""
        places[g.id] = PlacedGateway(g.id, g.site, g.zone, g.lat, g.lon, district)
    return places


class RegistryGatewayLookup:
    """A ``GatewayLookup`` over the registry: cached, reloaded when its change counter moved.

    The counter is polled at most every ``poll_s``; while the registry is unavailable the last
    places are kept (logged once), so a registry outage never stops the time-series writes.
    """

    def __init__(
        self,
        registry: GatewayRegistry,
        *,
        poll_s: float = REGISTRY_POLL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._poll_s = poll_s
        self._clock = clock
        self._lock = threading.Lock()
        self._places: dict[str, PlacedGateway] = {}
        self._change: object = None
        self._checked: float | None = None
        self._failing = False

    def __call__(self, gw: str) -> Gateway | None:
        with self._lock:
            now = self._clock()
            if self._checked is None or now - self._checked >= self._poll_s:
                self._checked = now
                self._refresh()
            return self._places.get(gw)

    def _refresh(self) -> None:
        try:
            change = self._registry.changes()
            if change != self._change or self._change is None:
                self._places = gateway_places(
                    self._registry.gateways(), self._registry.households()
                )
                self._change = change
            self._failing = False
        except ShouhuError as exc:
            if not self._failing:
                log.warning("registry unavailable, keeping the last gateway places: %s", exc)
            self._failing = True


def attach_gateway_lookup(writer: object, lookup: GatewayLookup) -> bool:
    """Give ``writer`` the lookup unless it cannot enrich or already has one; True if given."""
    if isinstance(writer, EnrichingWriter) and writer.gateway_lookup is None:
        writer.gateway_lookup = lookup
        return True
    return False


def error_for_status(status: int, body: str, *, where: str) -> StorageError:
    """Translate an HTTP error status of a write into the exception the caller acts on."""
    detail = body.strip().replace("\n", " ")[:300]
    if status in (400, 413, 422):
        return StorageError(f"{where} refused the data (HTTP {status}): {detail}")
    if status in (401, 403):
        return StorageUnavailable(
            f"{where} refused our credentials (HTTP {status}): {detail}",
            hint="check the writer's user/password or token; the data is kept and retried",
        )
    if status == 404:
        return StorageUnavailable(
            f"{where} has no such database/bucket (HTTP 404): {detail}",
            hint="create it (or set create_database for tests); the data is kept and retried",
        )
    return StorageUnavailable(f"{where} cannot take writes now (HTTP {status}): {detail}")


def option(
    options: Mapping[str, Any],
    key: str,
    kind: type,
    *,
    writer: str,
    default: Any = None,
    required: bool = False,
) -> Any:
    """Read one writer option and check its type; a wrong or missing one is a ConfigError."""
    value = options.get(key, default)
    if value is None:
        if required:
            raise ConfigError(f"missing option {key!r}", field=f"{writer}.{key}")
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ConfigError(
            f"option {key!r} must be {kind.__name__}, not {type(value).__name__}",
            field=f"{writer}.{key}",
        )
    if required and kind is str and not value:
        raise ConfigError(f"option {key!r} is empty", field=f"{writer}.{key}")
    return value


class LineProtocolWriter:
    """Shared half of the InfluxDB writers: records and points → line protocol → ``_write_lines``.

    Subclasses send the lines (``/write`` or ``/api/v2/write``) and set ``gateway_lookup``.
    """

    gateway_lookup: GatewayLookup | None = None

    def write(self, gw: str, records: Sequence[Record]) -> None:
        if not records:
            return
        gateway = self.gateway_lookup(gw) if self.gateway_lookup is not None else None
        try:
            lines = records_to_lines(gw, records, gateway=gateway)
        except (ValueError, TypeError, KeyError) as exc:
            raise StorageError(f"cannot map records of {gw} to points: {exc}") from exc
        self._write_lines(lines)

    def write_points(self, points: Sequence[Point]) -> None:
        """Store points built elsewhere (``collector.derived``); same guarantees as ``write``."""
        if not points:
            return
        try:
            lines = [to_line_protocol(p) for p in points]
        except (ValueError, TypeError) as exc:
            raise StorageError(f"cannot write points: {exc}") from exc
        self._write_lines(lines)

    def _write_lines(self, lines: list[str]) -> None:
        raise NotImplementedError
