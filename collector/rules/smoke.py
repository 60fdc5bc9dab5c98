"""Smoke rule: a household's alarm sounds every interlinked alarm and calls for help at once.

Inputs: ``alarm`` records (``alarm``, ``alarm_cleared``, ``tamper``, ``fault``, ``test``,
``hush``) and ``event`` records (``low_battery``, ``heartbeat``) of smoke alarms the registry
knows (``household_of_alarm``); the clock for supervision.

- ``smoke`` (critical, key = household id): the first ``alarm`` opens one incident per
  household however many gateways hear it, and sends ``{"cmd": "sound", ...}`` to every gateway
  of the household. Later alarms refresh the incident (the alert book de-duplicates) without new
  commands. Resolved when every alarming device of the household has sent ``alarm_cleared``;
  then ``{"cmd": "silence", ...}`` goes to the same gateways (``silence_on_clear``).
- ``smoke_tamper`` (warning, key = device): resolved by an operator.
- ``smoke_fault`` (warning, key = device): resolved by a later ``test`` (a passed self-test).
- ``smoke_battery`` (warning, key = device): ``low_battery`` or ``battery_ok: false``; resolved by
  a later record with ``battery_ok: true``.
- ``smoke_supervision`` (warning, key = device): silent for longer than the supervision interval
  of its profile (``supervision_s`` by profile id, else ``default_supervision_s``; None = not
  supervised). Resolved when heard again. ``hush`` only records (no alert change).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from collector.domain import Household, SmokeAlarm
from collector.rules.actions import (
    Action,
    RaiseAlert,
    Rejected,
    ResolveAlert,
    SendCommand,
    Severity,
    StateDict,
    profile_id,
)
from collector.rules.registry_view import RegistryView
from shouhu.model import Record

SMOKE_EVENTS = frozenset(
    {"alarm", "alarm_cleared", "tamper", "fault", "test", "hush", "low_battery", "heartbeat"}
)

# event -> (alert kind, title) for the per-device conditions
DEVICE_ALERTS: Mapping[str, tuple[str, str]] = {
    "tamper": ("smoke_tamper", "Smoke alarm tampered with"),
    "fault": ("smoke_fault", "Smoke alarm reports a fault"),
    "low_battery": ("smoke_battery", "Smoke alarm battery low"),
}


@dataclass(frozen=True, slots=True)
class SmokeConfig:
    supervision_s: Mapping[str, int] = field(default_factory=dict)  # profile id -> seconds
    default_supervision_s: int | None = None
    silence_on_clear: bool = True


class SmokeRule:
    name = "smoke"

    def __init__(self, config: SmokeConfig) -> None:
        self.config = config
        # household id -> {"alarming": [device, ...]}; present = incident open
        self._incidents: dict[str, dict[str, Any]] = {}
        # device -> {"last": ms, "profile": id | None, "open": [alert kinds open]}
        self._devices: dict[str, dict[str, Any]] = {}

    def handle(self, gw: str, record: Record, now_ms: int, reg: RegistryView) -> list[Action]:
        if record.kind not in ("alarm", "event"):
            return []
        hit = reg.household_of_alarm(record.device)
        if hit is None:
            return []
        household, alarm = hit
        event = record.data.get("event")
        if event not in SMOKE_EVENTS:
            if record.kind == "event":
                return []  # other event kinds (e.g. telemetry) are not ours
            return [Rejected(self.name, gw, record.seq, f"smoke event {event!r} unknown")]
        dev = self._device(record.device, now_ms)
        dev["last"] = max(record.ts, dev["last"])
        dev["profile"] = profile_id(record.profile)
        out: list[Action] = []
        out.extend(self._close(dev, alarm, "smoke_supervision", "heard again"))
        if event == "alarm":
            out.extend(self._alarm(gw, household, alarm))
        elif event == "alarm_cleared":
            out.extend(self._cleared(household, alarm))
        elif event in DEVICE_ALERTS:
            out.extend(self._open(dev, household, alarm, event, gw))
        elif event == "test":
            out.extend(self._close(dev, alarm, "smoke_fault", "self-test passed"))
        battery_ok = record.data.get("battery_ok")
        if battery_ok is False and event != "low_battery":
            out.extend(self._open(dev, household, alarm, "low_battery", gw))
        elif battery_ok is True:
            out.extend(self._close(dev, alarm, "smoke_battery", "battery ok"))
        return out

    def tick(self, now_ms: int, reg: RegistryView) -> list[Action]:
        out: list[Action] = []
        c = self.config
        for household in reg.households():
            for alarm in household.alarms:
                dev = self._device(alarm.device, now_ms)
                pid = dev["profile"]
                limit = c.supervision_s.get(pid) if pid else None
                if limit is None:
                    limit = c.default_supervision_s
                if limit is None or "smoke_supervision" in dev["open"]:
                    continue
                if now_ms - dev["last"] > limit * 1000:
                    dev["open"].append("smoke_supervision")
                    out.append(
                        self._device_alert(
                            household,
                            alarm,
                            "smoke_supervision",
                            "Smoke alarm silent: supervision lost",
                            "warning",
                            {"last_heard": dev["last"], "supervision_s": limit},
                        )
                    )
        return out

    def to_state(self) -> StateDict:
        return {
            "incidents": {k: {"alarming": list(v["alarming"])} for k, v in self._incidents.items()},
            "devices": {
                k: {"last": v["last"], "profile": v["profile"], "open": list(v["open"])}
                for k, v in self._devices.items()
            },
        }

    @classmethod
    def from_state(cls, config: SmokeConfig, state: StateDict) -> SmokeRule:
        rule = cls(config)
        for k, v in state.get("incidents", {}).items():
            rule._incidents[k] = {"alarming": list(v["alarming"])}
        for k, v in state.get("devices", {}).items():
            rule._devices[k] = {
                "last": int(v["last"]),
                "profile": v["profile"],
                "open": list(v["open"]),
            }
        return rule

    # -- decisions ------------------------------------------------------------------------

    def _device(self, device: str, now_ms: int) -> dict[str, Any]:
        dev = self._devices.get(device)
        if dev is None:
            dev = self._devices[device] = {"last": now_ms, "profile": None, "open": []}
        return dev

    def _commands(self, household: Household, cmd: str, device: str) -> list[Action]:
        return [
            SendCommand(g, {"cmd": cmd, "household": household.id, "device": device})
            for g in sorted(household.gateways)
        ]

    def _alarm(self, gw: str, household: Household, alarm: SmokeAlarm) -> list[Action]:
        incident = self._incidents.get(household.id)
        new = incident is None
        if incident is None:
            incident = self._incidents[household.id] = {"alarming": []}
        if alarm.device not in incident["alarming"]:
            incident["alarming"].append(alarm.device)
        out: list[Action] = [
            RaiseAlert(
                kind="smoke",
                key=household.id,
                severity="critical",
                title="Smoke alarm",
                message=(
                    f"Smoke alarm at {household.address}"
                    f"{' (' + alarm.room + ')' if alarm.room else ''}: interlinked alarms sounded."
                ),
                subjects=(f"household:{household.id}",),
                contacts=household.contacts,
                data={
                    "household": household.id,
                    "district": household.district,
                    "devices": list(incident["alarming"]),
                    "rooms": [alarm.room] if alarm.room else [],
                    "heard_by": gw,
                },
            )
        ]
        if new:
            out.extend(self._commands(household, "sound", alarm.device))
        return out

    def _cleared(self, household: Household, alarm: SmokeAlarm) -> list[Action]:
        incident = self._incidents.get(household.id)
        if incident is None:
            return []
        if alarm.device in incident["alarming"]:
            incident["alarming"].remove(alarm.device)
        if incident["alarming"]:
            return []
        del self._incidents[household.id]
        out: list[Action] = [ResolveAlert("smoke", household.id, "all alarms cleared")]
        if self.config.silence_on_clear:
            out.extend(self._commands(household, "silence", alarm.device))
        return out

    def _open(
        self, dev: dict[str, Any], household: Household, alarm: SmokeAlarm, event: str, gw: str
    ) -> list[Action]:
        kind, title = DEVICE_ALERTS[event]
        if kind in dev["open"]:
            return []
        dev["open"].append(kind)
        return [self._device_alert(household, alarm, kind, title, "warning", {"heard_by": gw})]

    def _close(
        self, dev: dict[str, Any], alarm: SmokeAlarm, kind: str, reason: str
    ) -> list[Action]:
        if kind not in dev["open"]:
            return []
        dev["open"].remove(kind)
        return [ResolveAlert(kind, alarm.device, reason)]

    def _device_alert(
        self,
        household: Household,
        alarm: SmokeAlarm,
        kind: str,
        title: str,
        severity: Severity,
        data: Mapping[str, Any],
    ) -> RaiseAlert:
        where = f"{household.address}{' (' + alarm.room + ')' if alarm.room else ''}"
        return RaiseAlert(
            kind=kind,
            key=alarm.device,
            severity=severity,
            title=title,
            message=f"{title} at {where}.",
            subjects=(f"household:{household.id}",),
            contacts=household.contacts,
            data={"household": household.id, "device": alarm.device, **data},
        )
