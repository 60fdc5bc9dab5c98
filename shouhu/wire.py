"""The wire contract: MQTT topic tree and the JSON batch envelope (docs/wire.md).

Pure functions only: bytes in, typed values out. Both the edge agent and the collector use
this module, so the contract is written down exactly once.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from shouhu.exceptions import EnvelopeError
from shouhu.model import STREAMS, Record, RecordDict

ENVELOPE_VERSION: Final = 1
ROOT: Final = "shouhu/v1"

GATEWAY_ID_RE: Final = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
PROFILE_REF_RE: Final = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}@[0-9]+$")
ALERT_KIND_RE: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
MAX_DEVICE_LEN: Final = 128
# Observation times outside [2000-01-01, 2100-01-01) are a broken clock, not a reading.
MIN_TS_MS: Final = 946_684_800_000
MAX_TS_MS: Final = 4_102_444_800_000
MAX_SEQ: Final = 2**63 - 1


# --- topics -----------------------------------------------------------------------------


def _check_gw(gw: str) -> str:
    if not GATEWAY_ID_RE.match(gw):
        raise EnvelopeError(
            f"invalid gateway id {gw!r}",
            hint="use 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit",
        )
    return gw


def up_topic(gw: str, stream: str) -> str:
    """``shouhu/v1/gw/{gw}/up/{stream}``: gateway → collector batches."""
    if stream not in STREAMS:
        raise EnvelopeError(f"unknown stream {stream!r}", hint=f"one of {', '.join(STREAMS)}")
    return f"{ROOT}/gw/{_check_gw(gw)}/up/{stream}"


def status_topic(gw: str) -> str:
    """Retained ``online``/``offline`` status (the Last Will sets ``offline``)."""
    return f"{ROOT}/gw/{_check_gw(gw)}/status"


def down_topic(gw: str, what: str) -> str:
    """Maintainer/collector → gateway: ``profiles`` (retained bundle) or ``cmd``."""
    if what not in ("profiles", "cmd"):
        raise EnvelopeError(f"unknown down topic {what!r}", hint="one of profiles, cmd")
    return f"{ROOT}/gw/{_check_gw(gw)}/down/{what}"


def ack_topic(gw: str) -> str:
    return f"{ROOT}/gw/{_check_gw(gw)}/ack"


def alerts_topic(kind: str) -> str:
    if not ALERT_KIND_RE.match(kind):
        raise EnvelopeError(f"invalid alert kind {kind!r}")
    return f"{ROOT}/alerts/{kind}"


UP_FILTER: Final = f"{ROOT}/gw/+/up/#"
STATUS_FILTER: Final = f"{ROOT}/gw/+/status"


def shared_filter(group: str, topic_filter: str = UP_FILTER) -> str:
    """MQTT v5 shared subscription, e.g. ``$share/shouhu/shouhu/v1/gw/+/up/#``."""
    if not group or any(c in group for c in "/+#"):
        raise EnvelopeError(f"invalid shared subscription group {group!r}")
    return f"$share/{group}/{topic_filter}"


def parse_up_topic(topic: str) -> tuple[str, str]:
    """Return ``(gw, stream)`` of an up topic, or raise EnvelopeError."""
    parts = topic.split("/")
    if len(parts) != 6 or "/".join(parts[:2]) != ROOT or parts[2] != "gw" or parts[4] != "up":
        raise EnvelopeError(f"not an up topic: {topic!r}")
    gw, stream = parts[3], parts[5]
    _check_gw(gw)
    if stream not in STREAMS:
        raise EnvelopeError(f"unknown stream {stream!r} in topic {topic!r}")
    return gw, stream


def parse_status_topic(topic: str) -> str:
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != ROOT or parts[2] != "gw" or parts[4] != "status":
        raise EnvelopeError(f"not a status topic: {topic!r}")
    return _check_gw(parts[3])


# --- batch envelope ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record of a batch that broke the contract; it goes to the dead-letter store."""

    index: int
    reason: str
    raw: Any


@dataclass(frozen=True, slots=True)
class Batch:
    """A decoded envelope: the good records and the rejected ones with their reasons."""

    gw: str
    sent: int
    records: tuple[Record, ...]
    rejected: tuple[Rejected, ...] = field(default_factory=tuple)


def encode_batch(gw: str, records: Iterable[Record], sent: int) -> bytes:
    """Serialize records into one envelope (compact JSON, UTF-8)."""
    body = {
        "v": ENVELOPE_VERSION,
        "gw": _check_gw(gw),
        "sent": int(sent),
        "records": [r.to_dict() for r in records],
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_json_value(v: Any, depth: int = 0) -> bool:
    if depth > 8:
        return False
    if v is None or isinstance(v, (bool, str)) or _is_int(v):
        return True
    if isinstance(v, float):
        return math.isfinite(v)
    if isinstance(v, list):
        return all(_check_json_value(x, depth + 1) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _check_json_value(x, depth + 1) for k, x in v.items())
    return False


def validate_record(raw: Any) -> RecordDict:
    """Check one record of an envelope; return it typed, or raise EnvelopeError with the reason."""
    if not isinstance(raw, Mapping):
        raise EnvelopeError("record is not an object")
    missing = [k for k in ("seq", "ts", "kind", "profile", "device", "data") if k not in raw]
    if missing:
        raise EnvelopeError(f"record lacks {', '.join(missing)}")
    seq, ts, kind = raw["seq"], raw["ts"], raw["kind"]
    profile, device, data = raw["profile"], raw["device"], raw["data"]
    if not _is_int(seq) or not 0 <= seq <= MAX_SEQ:
        raise EnvelopeError(f"seq must be a non-negative integer, got {seq!r}")
    if not _is_int(ts) or not MIN_TS_MS <= ts < MAX_TS_MS:
        raise EnvelopeError(f"ts must be integer milliseconds since the epoch, got {ts!r}")
    if kind not in STREAMS:
        raise EnvelopeError(f"unknown kind {kind!r}")
    if not isinstance(profile, str) or not PROFILE_REF_RE.match(profile):
        raise EnvelopeError(f"profile must look like 'id@version', got {profile!r}")
    if not isinstance(device, str) or not 0 < len(device) <= MAX_DEVICE_LEN:
        raise EnvelopeError(f"device must be a string of 1-{MAX_DEVICE_LEN} characters")
    if not isinstance(data, dict) or not _check_json_value(data):
        raise EnvelopeError("data must be an object of JSON values (no NaN/Infinity)")
    return {"seq": seq, "ts": ts, "kind": kind, "profile": profile, "device": device, "data": data}


def decode_batch(payload: bytes, *, topic_gw: str | None = None) -> Batch:
    """Parse an envelope.

    Raises EnvelopeError when the envelope as a whole is unusable (not JSON, unknown ``v``,
    gateway id that does not match the topic). A malformed *record* does not spoil the batch:
    it is returned in ``Batch.rejected`` with its reason.
    """
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise EnvelopeError(f"payload is not UTF-8 JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise EnvelopeError("envelope is not a JSON object")
    if body.get("v") != ENVELOPE_VERSION:
        raise EnvelopeError(f"unsupported envelope version {body.get('v')!r}")
    gw = body.get("gw")
    if not isinstance(gw, str):
        raise EnvelopeError("envelope lacks gw")
    _check_gw(gw)
    if topic_gw is not None and gw != topic_gw:
        raise EnvelopeError(f"envelope gw {gw!r} does not match topic gateway {topic_gw!r}")
    sent = body.get("sent")
    if not isinstance(sent, int) or isinstance(sent, bool):
        raise EnvelopeError("envelope sent must be integer milliseconds")
    raw_records = body.get("records")
    if not isinstance(raw_records, list):
        raise EnvelopeError("envelope records must be a list")
    good: list[Record] = []
    bad: list[Rejected] = []
    for i, raw in enumerate(raw_records):
        try:
            good.append(Record.from_dict(validate_record(raw)))
        except EnvelopeError as exc:
            bad.append(Rejected(i, exc.message, raw))
    return Batch(gw, sent, tuple(good), tuple(bad))


# --- gateway status (retained) ----------------------------------------------------------


def encode_status(
    state: str, *, agent_version: str, profiles: Mapping[str, int] | None = None, ts: int = 0
) -> bytes:
    """Retained status payload: ``online``/``offline`` plus versions the gateway runs."""
    if state not in ("online", "offline"):
        raise EnvelopeError(f"unknown status {state!r}")
    body = {"state": state, "agent": agent_version, "profiles": dict(profiles or {}), "ts": ts}
    return json.dumps(body, separators=(",", ":")).encode()


def decode_status(payload: bytes) -> dict[str, Any]:
    """Parse a status payload; a bare ``online``/``offline`` string is accepted too."""
    text = payload.decode("utf-8", "replace").strip()
    if text in ("online", "offline"):
        return {"state": text, "agent": None, "profiles": {}, "ts": 0}
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EnvelopeError(f"status is not JSON: {exc}") from exc
    if not isinstance(body, dict) or body.get("state") not in ("online", "offline"):
        raise EnvelopeError("status lacks state online/offline")
    return body
