"""Gateway rule: the operators learn when a gateway goes down, backs up or loses a radio.

Inputs: ``health`` records (``device`` = ``gw:<id>``: ``outbox_depth``,
``outbox_oldest_age_s``, ``sources: {name: {frames, errors, present}}``, optionally
``interval_s``), the retained status (``on_status(gw, "online" | "offline")``) and the clock.

- ``gateway_offline`` (warning, key = gw): status ``offline`` (Last Will), or no health record for
  more than ``silent_factor`` x the health interval (the record's ``interval_s``, else
  ``health_interval_s``). Resolved by status ``online`` or a fresh health record.
  Gateways in the registry never heard since the rule started are judged from its start.
- ``gateway_backlog`` (warning, key = gw): ``outbox_depth > max_outbox_depth`` or
  ``outbox_oldest_age_s > max_outbox_age_s``; resolved when both are back under.
- ``gateway_radio`` (warning, key = ``gw:source``): a source reports ``present: false``;
  resolved when it reports ``present: true``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from collector.domain import Contact
from collector.rules.actions import (
    Action,
    RaiseAlert,
    Rejected,
    ResolveAlert,
    StateDict,
    number,
)
from collector.rules.registry_view import RegistryView
from shouhu.model import Record


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    health_interval_s: int = 60
    silent_factor: float = 3.0
    max_outbox_depth: int = 1000
    max_outbox_age_s: int = 600


class GatewayRule:
    name = "gateway"

    def __init__(self, config: GatewayConfig, operators: tuple[Contact, ...] = ()) -> None:
        self.config = config
        self.operators = operators
        # gw -> {"status", "last", "interval_s", "offline_open", "backlog_open", "radios_open"}
        self._gws: dict[str, dict[str, Any]] = {}

    def offline(self) -> frozenset[str]:
        """Gateways with an open offline condition (the wanderer rule asks)."""
        return frozenset(g for g, st in self._gws.items() if st["offline_open"])

    def handle(self, gw: str, record: Record, now_ms: int, reg: RegistryView) -> list[Action]:
        if record.kind != "health":
            return []
        data = record.data
        sources = data.get("sources", {})
        if not isinstance(sources, Mapping):
            return [Rejected(self.name, gw, record.seq, "health sources is not an object")]
        st = self._state(gw, now_ms)
        out: list[Action] = []
        st["last"] = max(record.ts, st["last"])
        interval = number(data.get("interval_s"))
        if interval is not None and interval > 0:
            st["interval_s"] = interval
        st["status"] = "online"
        out.extend(self._resolve_offline(gw, st, "health received"))

        depth, age = number(data.get("outbox_depth")), number(data.get("outbox_oldest_age_s"))
        if depth is not None or age is not None:
            c = self.config
            over = (depth or 0) > c.max_outbox_depth or (age or 0) > c.max_outbox_age_s
            if over and not st["backlog_open"]:
                st["backlog_open"] = True
                out.append(
                    self._alert(
                        "gateway_backlog",
                        gw,
                        "Gateway outbox backing up",
                        f"Gateway {gw} holds {depth} unsent records, the oldest {age} s old",
                        reg,
                        {"outbox_depth": depth, "outbox_oldest_age_s": age},
                    )
                )
            elif not over and st["backlog_open"]:
                st["backlog_open"] = False
                out.append(ResolveAlert("gateway_backlog", gw, "outbox drained"))

        for name, health in sorted(sources.items()):
            present = health.get("present") if isinstance(health, Mapping) else None
            key = f"{gw}:{name}"
            if present is False and name not in st["radios_open"]:
                st["radios_open"].append(name)
                out.append(
                    self._alert(
                        "gateway_radio",
                        key,
                        "Gateway radio gone",
                        f"Gateway {gw} lost its radio source {name!r}",
                        reg,
                        {"gw": gw, "source": str(name)},
                    )
                )
            elif present is True and name in st["radios_open"]:
                st["radios_open"].remove(name)
                out.append(ResolveAlert("gateway_radio", key, "radio present again"))
        return out

    def on_status(self, gw: str, state: str, now_ms: int, reg: RegistryView) -> list[Action]:
        st = self._state(gw, now_ms)
        st["status"] = state
        if state == "offline":
            if st["offline_open"]:
                return []
            st["offline_open"] = True
            return [self._offline_alert(gw, "status offline", st, reg)]
        st["last"] = max(st["last"], now_ms)  # the silence timer restarts
        return self._resolve_offline(gw, st, "status online")

    def tick(self, now_ms: int, reg: RegistryView) -> list[Action]:
        for g in reg.all_gateways():
            self._state(g.id, now_ms)
        out: list[Action] = []
        for gw, st in sorted(self._gws.items()):
            limit = self.config.silent_factor * st["interval_s"] * 1000
            if not st["offline_open"] and now_ms - st["last"] > limit:
                st["offline_open"] = True
                out.append(self._offline_alert(gw, "health silent", st, reg))
        return out

    def to_state(self) -> StateDict:
        return {
            "gateways": {
                g: {**st, "radios_open": list(st["radios_open"])} for g, st in self._gws.items()
            }
        }

    @classmethod
    def from_state(
        cls, config: GatewayConfig, state: StateDict, operators: tuple[Contact, ...] = ()
    ) -> GatewayRule:
        rule = cls(config, operators)
        for g, st in state.get("gateways", {}).items():
            rule._gws[g] = {**st, "radios_open": list(st.get("radios_open", []))}
        return rule

    def _state(self, gw: str, now_ms: int) -> dict[str, Any]:
        st = self._gws.get(gw)
        if st is None:
            st = self._gws[gw] = {
                "status": None,
                "last": now_ms,
                "interval_s": float(self.config.health_interval_s),
                "offline_open": False,
                "backlog_open": False,
                "radios_open": [],
            }
        return st

    def _resolve_offline(self, gw: str, st: dict[str, Any], reason: str) -> list[Action]:
        if not st["offline_open"]:
            return []
        st["offline_open"] = False
        return [ResolveAlert("gateway_offline", gw, reason)]

    def _offline_alert(
        self, gw: str, reason: str, st: dict[str, Any], reg: RegistryView
    ) -> RaiseAlert:
        return self._alert(
            "gateway_offline",
            gw,
            "Gateway offline",
            f"Gateway {gw} is offline ({reason})",
            reg,
            {"reason": reason, "last_health": st["last"]},
        )

    def _alert(
        self,
        kind: str,
        key: str,
        title: str,
        message: str,
        reg: RegistryView,
        data: Mapping[str, Any],
    ) -> RaiseAlert:
        gw = key.partition(":")[0] if kind == "gateway_radio" else key
        g = reg.gateway(gw)
        site = f" at site {g.site}" if g is not None else ""
        return RaiseAlert(
            kind=kind,
            key=key,
            severity="warning",
            title=title,
            message=f"{message}{site}.",
            subjects=(f"gateway:{gw}",),
            contacts=self.operators,
            data={"gw": gw, **data},
        )
