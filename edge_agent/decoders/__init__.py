"""Decoders: pure functions ``decode(frame, profile) -> list[Reading]``, named by profiles.

A profile's ``decoder:`` field names one of ``DECODERS``; the module is imported lazily.
A decoder returns ``[]`` when the frame is not for this profile (no match) and raises
``DecodeError`` when it is, but is malformed. It never does I/O.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from shouhu.exceptions import ProfileError

if TYPE_CHECKING:
    from shouhu.model import RawFrame, Reading
    from shouhu.profiles import Profile

Decoder = Callable[["RawFrame", "Profile"], Sequence["Reading"]]

# decoder name -> "module:function"
DECODERS: dict[str, str] = {
    # BLE (AD structures as payload)
    "ibeacon": "edge_agent.decoders.ble:decode_ibeacon",
    "eddystone": "edge_agent.decoders.ble:decode_eddystone",
    # NFC (tag dump as payload)
    "ntag424-sun": "edge_agent.decoders.nfc:decode_sun_tap",
    "nfc-uid": "edge_agent.decoders.nfc:decode_uid_tap",
    # serial receivers (one line as payload)
    "rflink": "edge_agent.decoders.serial:decode_rflink",
    "rtl433-json": "edge_agent.decoders.serial:decode_rtl433",
    "fixed-code": "edge_agent.decoders.serial:decode_fixed_code",
}


def get_decoder(name: str) -> Decoder:
    """Return the decoder function called ``name`` (imported on first use)."""
    try:
        target = DECODERS[name]
    except KeyError:
        raise ProfileError(
            f"unknown decoder {name!r}", hint=f"one of {', '.join(sorted(DECODERS))}"
        ) from None
    module_name, func = target.split(":")
    fn: Decoder = getattr(importlib.import_module(module_name), func)
    return fn
