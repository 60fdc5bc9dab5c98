"""Values that flow through the system: frames from radios, readings, numbered records.

Inside the process these are frozen dataclasses; ``Record`` has the one to/from-dict pair that
the outbox and the wire envelope both use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypedDict

Stream = Literal["sighting", "tap", "alarm", "event", "health"]
STREAMS: Final[tuple[Stream, ...]] = ("sighting", "tap", "alarm", "event", "health")

# Streams whose records must never be delayed by batching nor evicted from a full outbox.
URGENT_STREAMS: Final[frozenset[str]] = frozenset({"alarm", "tap"})


@dataclass(frozen=True, slots=True)
class RawFrame:
    """What a source heard: ``payload`` bytes at ``ts`` (ms since the epoch, UTC).

    ``meta`` carries what the radio adds beside the bytes (BLE: ``address``, ``rssi``;
    NFC: ``technology``; serial: ``port``).
    """

    source: str
    ts: int
    payload: bytes
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reading:
    """A typed observation of one device, before the outbox numbers it."""

    ts: int
    kind: Stream
    profile: str  # "<profile id>@<version>"
    device: str  # stable device key, never a person's name
    data: Mapping[str, Any]


class RecordDict(TypedDict):
    """A record as it travels in the batch envelope (docs/wire.md)."""

    seq: int
    ts: int
    kind: str
    profile: str
    device: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Record:
    """A reading the gateway accepted, numbered with its per-gateway monotonic ``seq``."""

    seq: int
    ts: int
    kind: Stream
    profile: str
    device: str
    data: Mapping[str, Any]

    @classmethod
    def from_reading(cls, seq: int, reading: Reading) -> Record:
        return cls(seq, reading.ts, reading.kind, reading.profile, reading.device, reading.data)

    def to_dict(self) -> RecordDict:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "kind": self.kind,
            "profile": self.profile,
            "device": self.device,
            "data": dict(self.data),
        }

    @classmethod
    def from_dict(cls, d: RecordDict) -> Record:
        """Build from an already validated dict (see ``shouhu.wire.validate_record``)."""
        return cls(d["seq"], d["ts"], d["kind"], d["profile"], d["device"], d["data"])  # type: ignore[arg-type]
