"""Commands to a gateway and its answers: bytes in, typed values out, no I/O.

    shouhu/v1/gw/{gw}/down/cmd ──parse_command──► Command | Rejected
                                                      │ the agent carries it out
    shouhu/v1/gw/{gw}/ack      ◄──encode_ack────── Ack {"id", "cmd", "ok", "detail", "ts"}

Rules (docs/agent.md, "Commands"):

- a command is a JSON object ``{"cmd": "sound"|"silence"|"ping", "id": ..., ...}``; ``id`` is a
  string (1-128 printable characters) or an integer and is echoed in the ack. Other keys
  (``household``, ``device``) are carried along; ``expires`` (ms since the epoch), when given,
  makes a late command be answered ``ok: false`` instead of carried out;
- anything else (not UTF-8 JSON, not an object, unknown ``cmd``, wrong types, over
  ``MAX_PAYLOAD`` bytes) is a ``Rejected`` with the reason; it is answered, never raised;
- QoS 1 delivers at least once: ``CommandBook`` remembers the ids already carried out and their
  acks, so a redelivered command is answered again but carried out once. A command without an
  ``id`` cannot be recognised again and is carried out on every delivery.

``parse_transmit`` checks a serial source's ``transmit`` option: the line the receiver sends
for ``sound`` / ``silence`` (e.g. RFLink ``10;FA20RF;97e3b2;1;ON;``).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypedDict, get_args

from shouhu.exceptions import ConfigError

CommandName = Literal["sound", "silence", "ping"]
COMMANDS: Final[tuple[str, ...]] = get_args(CommandName)
TRANSMIT_COMMANDS: Final = ("sound", "silence")  # carried out by transmitting a line
MAX_PAYLOAD: Final = 16 * 1024
MAX_ID_LEN: Final = 128
MAX_TEXT_LEN: Final = 128  # household, device
MAX_LINE_LEN: Final = 256  # a transmit line
LINE_END: Final = b"\r\n"  # appended to a transmit line: RFLink and AT-style modules want CR LF
MAX_INT_ID: Final = 2**63 - 1

CommandId = str | int


class CommandDoc(TypedDict, total=False):
    """A command as the collector (or an operator) publishes it."""

    id: CommandId
    cmd: str
    household: str
    device: str
    expires: int


class AckDoc(TypedDict):
    """The answer on ``shouhu/v1/gw/{gw}/ack``."""

    id: CommandId | None
    cmd: str | None
    ok: bool
    detail: str
    ts: int


@dataclass(frozen=True, slots=True)
class Command:
    """A valid command."""

    cmd: CommandName
    id: CommandId | None
    household: str | None = None
    device: str | None = None
    expires: int | None = None  # ms since the epoch; None = never

    def expired(self, now_ms: int) -> bool:
        return self.expires is not None and now_ms >= self.expires


@dataclass(frozen=True, slots=True)
class Rejected:
    """A payload that is not a valid command, with what could be read of it for the ack."""

    reason: str
    id: CommandId | None = None
    cmd: str | None = None


@dataclass(frozen=True, slots=True)
class Ack:
    """The result of one command."""

    id: CommandId | None
    cmd: str | None
    ok: bool
    detail: str
    ts: int

    def to_dict(self) -> AckDoc:
        return {"id": self.id, "cmd": self.cmd, "ok": self.ok, "detail": self.detail, "ts": self.ts}


def encode_ack(ack: Ack) -> bytes:
    return json.dumps(ack.to_dict(), separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -MAX_INT_ID <= value <= MAX_INT_ID
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LEN and value.isprintable()


def _text(doc: Mapping[str, Any], key: str) -> str | None:
    """An optional short printable string; raises ValueError naming the key."""
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_TEXT_LEN or not value.isprintable():
        raise ValueError(f"{key} must be a string of 1-{MAX_TEXT_LEN} printable characters")
    return value


def parse_command(payload: bytes) -> Command | Rejected:
    """Check a ``down/cmd`` payload. Never raises: a bad payload is a ``Rejected``."""
    if len(payload) > MAX_PAYLOAD:
        return Rejected(f"command larger than {MAX_PAYLOAD} bytes")
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return Rejected(f"not UTF-8 JSON: {type(exc).__name__}")
    if not isinstance(doc, dict):
        return Rejected(f"a command must be a JSON object, got {type(doc).__name__}")
    raw_id, raw_cmd = doc.get("id"), doc.get("cmd")
    cmd_id = raw_id if _valid_id(raw_id) else None
    cmd = raw_cmd if isinstance(raw_cmd, str) and raw_cmd in COMMANDS else None
    if raw_id is not None and cmd_id is None:
        echo = raw_cmd[:MAX_TEXT_LEN] if isinstance(raw_cmd, str) else None
        return Rejected(f"id must be an integer or 1-{MAX_ID_LEN} printable characters", cmd=echo)
    if cmd is None:
        shown = json.dumps(raw_cmd)[:40]
        return Rejected(f"unknown cmd {shown} (one of {', '.join(COMMANDS)})", id=cmd_id)
    try:
        household, device = _text(doc, "household"), _text(doc, "device")
    except ValueError as exc:
        return Rejected(str(exc), id=cmd_id, cmd=cmd)
    expires = doc.get("expires")
    if expires is not None and (isinstance(expires, bool) or not isinstance(expires, int)):
        return Rejected("expires must be integer ms since the epoch", id=cmd_id, cmd=cmd)
    return Command(cmd, cmd_id, household, device, expires)  # type: ignore[arg-type]


class CommandBook:
    """Which command ids were carried out, and what was answered (the newest ``capacity``).

    The state that matters for "carried out once": an id is recorded only after its command
    was carried out; a redelivery of that id gets the recorded ack back. In memory only: a
    restart between carrying out and the broker's redelivery carries it out again.
    """

    def __init__(self, capacity: int = 1024) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._acks: OrderedDict[tuple[type, CommandId], Ack] = OrderedDict()  # oldest first

    def answered(self, cmd_id: CommandId | None) -> Ack | None:
        """The ack of an id already carried out, or None (always None without an id)."""
        if cmd_id is None:
            return None
        return self._acks.get((type(cmd_id), cmd_id))

    def record(self, ack: Ack) -> None:
        if ack.id is None:
            return
        key = (type(ack.id), ack.id)  # "7" and 7 are different ids
        self._acks[key] = ack
        self._acks.move_to_end(key)
        while len(self._acks) > self.capacity:
            self._acks.popitem(last=False)

    def __len__(self) -> int:
        return len(self._acks)


def parse_transmit(source: str, value: Any) -> Mapping[str, bytes]:
    """A serial source's ``transmit`` option → ``{"sound": b"10;...;\\r\\n", ...}``.

    Each line is printable ASCII without terminator (``LINE_END`` is appended). Raises
    ConfigError naming the field.
    """
    where = f"sources.{source}.options.transmit"
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError("must be a mapping of command to line", field=where)
    out: dict[str, bytes] = {}
    for key, line in value.items():
        if key not in TRANSMIT_COMMANDS:
            raise ConfigError(
                f"unknown command {key!r} (allowed: {', '.join(TRANSMIT_COMMANDS)})", field=where
            )
        ok = (
            isinstance(line, str)
            and 0 < len(line) <= MAX_LINE_LEN
            and line.isascii()
            and line.isprintable()
        )
        if not ok:
            raise ConfigError(
                f"must be 1-{MAX_LINE_LEN} printable ASCII characters, got {line!r}",
                field=f"{where}.{key}",
                hint='e.g. "10;FA20RF;97e3b2;1;ON;" for an RFLink',
            )
        out[key] = line.encode("ascii") + LINE_END
    return out
