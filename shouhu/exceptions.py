"""The one exception tree of Shouhu.

    ShouhuError                      base: the CLI catches it, prints one line, exits non-zero
    ├── ConfigError                  a configuration file or option is wrong (names the field)
    ├── ProfileError                 a device profile or profile bundle is invalid
    ├── DecodeError                  a radio frame cannot be decoded (it is dead-lettered)
    ├── EnvelopeError                an MQTT payload breaks the wire contract
    ├── StorageError                 a database refused a write for good (bad data)
    │   └── StorageUnavailable       a database cannot be reached now: retry later, never drop
    ├── BrokerError                  the MQTT broker cannot be reached or refused us
    └── DeviceError                  a radio or serial device is absent or refused a write

Lower-layer errors (sqlite3, requests, paho, yaml, serial, nfc) are translated at the
boundary with ``raise ... from exc`` so callers only ever catch these.
"""

from __future__ import annotations


class ShouhuError(Exception):
    """Base of every error Shouhu raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """What is wrong and how to fix it, on one line (for the CLI)."""
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(ShouhuError):
    """A configuration file or option is wrong; ``field`` names where."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        source: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = ":".join(p for p in (source, field) if p)
        super().__init__(f"{where}: {message}" if where else message, hint=hint)
        self.field = field
        self.source = source


class ProfileError(ShouhuError):
    """A device profile (or a signed bundle of them) is invalid."""

    exit_code = 2


class DecodeError(ShouhuError):
    """A frame from a radio could not be decoded."""


class EnvelopeError(ShouhuError):
    """An MQTT message does not follow the wire contract (docs/wire.md)."""


class StorageError(ShouhuError):
    """A store rejected data permanently (the data, not the store, is at fault)."""


class StorageUnavailable(StorageError):
    """A store is unreachable right now; the caller keeps the data and retries."""


class BrokerError(ShouhuError):
    """The MQTT broker cannot be reached, or refused the connection."""

    exit_code = 3


class DeviceError(ShouhuError):
    """A radio or serial device is not there now, or refused what we sent it."""
