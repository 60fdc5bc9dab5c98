"""What the collector needs from a time-series store, and the errors it may raise.

The collector acknowledges an MQTT message only after ``write`` returns, so ``write`` must be
synchronous and durable. Its two failures tell the caller what to do:

* ``StorageUnavailable``: the store cannot take data *now* (unreachable, timeout, 5xx, 429,
  wrong credentials, missing database). Keep the message un-acked and retry later.
* ``StorageError``: the store refused *this data* for good (HTTP 400: bad value, field type
  conflict). Retrying cannot help: dead-letter the batch with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from shouhu.exceptions import ConfigError, StorageError, StorageUnavailable
from shouhu.model import Record

__all__ = ["Writer", "StorageError", "StorageUnavailable", "error_for_status", "option"]


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
