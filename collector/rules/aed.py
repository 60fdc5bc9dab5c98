"""AED rule: a defibrillator's beacon must stay where it hangs, and its battery must last.

Inputs: BLE ``sighting`` records of the AED's beacon and Eddystone TLM ``event`` records
(``event: telemetry``, ``battery_mv``).

- ``aed_missing`` (critical): the expected gateway has not heard the beacon (``enter`` or
  ``update``) for ``missing_after_s`` — moved or stolen. Resolved when it hears it again. The
  last other gateway that heard it is reported in the alert (where it went).
  An AED never heard since the rule started is judged from the rule's start.
- ``aed_battery_low`` (warning): ``battery_mv`` under the threshold of the record's profile
  (``battery_low_mv`` by profile id, else the default). Resolved when a reading is at least
  ``battery_hysteresis_mv`` above the threshold (battery replaced).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from collector.domain import Aed
from collector.rules.actions import (
    Action,
    RaiseAlert,
    ResolveAlert,
    StateDict,
    number,
    profile_id,
)
from collector.rules.registry_view import RegistryView
from shouhu.model import Record


@dataclass(frozen=True, slots=True)
class AedConfig:
    missing_after_s: int = 1800
    battery_low_mv: Mapping[str, int] = field(default_factory=dict)  # profile id -> mV
    default_battery_low_mv: int = 2500
    battery_hysteresis_mv: int = 100


class AedRule:
    name = "aed"

    def __init__(self, config: AedConfig) -> None:
        self.config = config
        # aed id -> {since, last_heard, elsewhere: [gw, ts] | None, missing_open, battery_open}
        self._aeds: dict[str, dict[str, Any]] = {}

    def handle(self, gw: str, record: Record, now_ms: int, reg: RegistryView) -> list[Action]:
        aed = reg.aed_by_device(record.device)
        if aed is None:
            return []
        st = self._state(aed.id, now_ms)
        event = record.data.get("event")
        if record.kind == "sighting" and event in ("enter", "update"):
            if gw != aed.expected_gateway:
                st["elsewhere"] = [gw, record.ts]
                return []
            st["last_heard"] = max(record.ts, st["last_heard"] or record.ts)
            if st["missing_open"]:
                st["missing_open"] = False
                return [ResolveAlert("aed_missing", aed.id, "heard by its gateway again")]
            return []
        if record.kind == "event" and event == "telemetry":
            mv = number(record.data.get("battery_mv"))
            if mv is None:
                return []
            return self._battery(aed, st, mv, profile_id(record.profile))
        return []

    def tick(self, now_ms: int, reg: RegistryView) -> list[Action]:
        out: list[Action] = []
        limit = self.config.missing_after_s * 1000
        for aed in reg.all_aeds():
            st = self._state(aed.id, now_ms)
            ref = st["last_heard"] if st["last_heard"] is not None else st["since"]
            if not st["missing_open"] and now_ms - ref >= limit:
                st["missing_open"] = True
                elsewhere = st["elsewhere"]
                out.append(
                    RaiseAlert(
                        kind="aed_missing",
                        key=aed.id,
                        severity="critical",
                        title="AED not heard at its place: moved or stolen",
                        message=(
                            f"The AED at {aed.location or aed.id} has not been heard by gateway"
                            f" {aed.expected_gateway} for {(now_ms - ref) // 60000} min."
                        ),
                        subjects=(f"aed:{aed.id}",),
                        contacts=aed.contacts,
                        data={
                            "expected_gateway": aed.expected_gateway,
                            "last_heard": st["last_heard"],
                            "last_elsewhere": elsewhere,
                        },
                    )
                )
        return out

    def to_state(self) -> StateDict:
        return {"aeds": {k: dict(v) for k, v in sorted(self._aeds.items())}}

    @classmethod
    def from_state(cls, config: AedConfig, state: StateDict) -> AedRule:
        rule = cls(config)
        rule._aeds = {k: dict(v) for k, v in state.get("aeds", {}).items()}
        return rule

    def _state(self, aed_id: str, now_ms: int) -> dict[str, Any]:
        st = self._aeds.get(aed_id)
        if st is None:
            st = self._aeds[aed_id] = {
                "since": now_ms,
                "last_heard": None,
                "elsewhere": None,
                "missing_open": False,
                "battery_open": False,
            }
        return st

    def _battery(self, aed: Aed, st: dict[str, Any], mv: float, pid: str) -> list[Action]:
        c = self.config
        threshold = c.battery_low_mv.get(pid, c.default_battery_low_mv)
        if mv < threshold and not st["battery_open"]:
            st["battery_open"] = True
            return [
                RaiseAlert(
                    kind="aed_battery_low",
                    key=aed.id,
                    severity="warning",
                    title="AED beacon battery low",
                    message=f"The beacon of the AED at {aed.location or aed.id} reports {mv:.0f} mV.",
                    subjects=(f"aed:{aed.id}",),
                    contacts=aed.contacts,
                    data={"battery_mv": mv, "threshold_mv": threshold},
                )
            ]
        if mv >= threshold + c.battery_hysteresis_mv and st["battery_open"]:
            st["battery_open"] = False
            return [ResolveAlert("aed_battery_low", aed.id, f"battery at {mv:.0f} mV")]
        return []
