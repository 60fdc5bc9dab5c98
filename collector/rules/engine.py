"""The rule engine: one pure object that routes each record to the rules that care about it.

``RuleEngine.handle(gw, record, now_ms, reg)``, ``on_status(gw, state, now_ms, reg)`` and
``tick(now_ms, reg)`` return actions (``collector.rules.actions``); nothing here does I/O or
reads the clock. ``to_state()`` / ``from_state()`` persist every rule's timers and open
conditions as JSON so a restarted (or another) collector carries on where this one stopped.

Routing is a table from record kind to rules (``DISPATCH``); the gateway rule's offline
decisions are forwarded to the wanderer rule, which must not read absence at a dead home
gateway as "left home".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from collector.domain import Contact
from collector.rules.actions import (
    Action,
    RaiseAlert,
    Rejected,
    ResolveAlert,
    StateDict,
    contact_from_dict,
)
from collector.rules.aed import AedConfig, AedRule
from collector.rules.gateway import GatewayConfig, GatewayRule
from collector.rules.patrol import PatrolConfig, PatrolRule, SunVerifier
from collector.rules.registry_view import RegistryView
from collector.rules.schedule import zone
from collector.rules.school import SchoolConfig, SchoolRule
from collector.rules.smoke import SmokeConfig, SmokeRule
from collector.rules.wanderer import WandererConfig, WandererRule
from shouhu.exceptions import ConfigError, StorageError
from shouhu.model import Record
from shouhu.profiles import Profile

STATE_VERSION: Final = 1

# record kind -> the rules that look at it, in order
DISPATCH: Final[Mapping[str, tuple[str, ...]]] = {
    "sighting": ("wanderer", "aed"),
    "event": ("aed", "smoke"),
    "alarm": ("smoke",),
    "tap": ("patrol", "school"),
    "health": ("gateway",),
}
# tick order: the gateway rule first, so the wanderer rule knows which gateways are down
TICK_ORDER: Final[tuple[str, ...]] = ("gateway", "wanderer", "aed", "smoke", "patrol", "school")


class Rule(Protocol):
    name: str

    def handle(self, gw: str, record: Record, now_ms: int, reg: RegistryView) -> list[Action]: ...
    def tick(self, now_ms: int, reg: RegistryView) -> list[Action]: ...
    def to_state(self) -> StateDict: ...


@dataclass(frozen=True, slots=True)
class EngineConfig:
    tz: str = "UTC"  # the city's time zone: schedules and deadlines are local time
    wanderer: WandererConfig = field(default_factory=WandererConfig)
    aed: AedConfig = field(default_factory=AedConfig)
    smoke: SmokeConfig = field(default_factory=SmokeConfig)
    patrol: PatrolConfig = field(default_factory=PatrolConfig)
    school: SchoolConfig = field(default_factory=SchoolConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    operators: tuple[Contact, ...] = ()  # who hears about gateways

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str | None = None) -> EngineConfig:
        """Build from the ``rules:`` section of the collector configuration (YAML)."""
        sections: dict[str, type] = {
            "wanderer": WandererConfig,
            "aed": AedConfig,
            "smoke": SmokeConfig,
            "patrol": PatrolConfig,
            "school": SchoolConfig,
            "gateway": GatewayConfig,
        }
        unknown = set(d) - set(sections) - {"tz", "operators"}
        if unknown:
            raise ConfigError(f"unknown keys {sorted(unknown)}", field="rules", source=source)
        kwargs: dict[str, Any] = {}
        tz = d.get("tz", "UTC")
        if not isinstance(tz, str):
            raise ConfigError("must be a time zone name", field="rules.tz", source=source)
        try:
            zone(tz)
        except ConfigError as exc:
            raise ConfigError(exc.message, field="rules.tz", source=source) from exc
        kwargs["tz"] = tz
        for name, klass in sections.items():
            raw = d.get(name, {})
            if not isinstance(raw, Mapping):
                raise ConfigError("must be a mapping", field=f"rules.{name}", source=source)
            known = {f.name: f for f in dataclasses.fields(klass)}
            for key, value in raw.items():
                if key not in known:
                    raise ConfigError("unknown key", field=f"rules.{name}.{key}", source=source)
                if isinstance(value, bool) != (known[key].type == "bool"):
                    raise ConfigError("wrong type", field=f"rules.{name}.{key}", source=source)
            kwargs[name] = klass(**raw)
        try:
            kwargs["operators"] = tuple(contact_from_dict(c) for c in d.get("operators", ()))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(
                f"bad contact: {exc}", field="rules.operators", source=source
            ) from exc
        return cls(**kwargs)

    def with_profiles(self, profiles: Iterable[Profile]) -> EngineConfig:
        """Fill battery thresholds and supervision intervals from the device profiles.

        Values already in the configuration win over the profiles'.
        """
        battery: dict[str, int] = {}
        supervision: dict[str, int] = {}
        for p in profiles:
            if p.alerts.battery_low_mv is not None:
                battery[p.id] = p.alerts.battery_low_mv
            if p.alerts.supervision_s is not None:
                supervision[p.id] = p.alerts.supervision_s
        return dataclasses.replace(
            self,
            aed=dataclasses.replace(
                self.aed, battery_low_mv={**battery, **self.aed.battery_low_mv}
            ),
            smoke=dataclasses.replace(
                self.smoke, supervision_s={**supervision, **self.smoke.supervision_s}
            ),
        )


class RuleEngine:
    """Every rule, fed from one place; pure and persistable."""

    def __init__(self, config: EngineConfig, verify_sun: SunVerifier | None = None) -> None:
        self.config = config
        self.wanderer = WandererRule(config.wanderer, config.tz)
        self.aed = AedRule(config.aed)
        self.smoke = SmokeRule(config.smoke)
        self.patrol = PatrolRule(config.patrol, config.tz, verify_sun)
        self.school = SchoolRule(config.school, config.tz)
        self.gateway = GatewayRule(config.gateway, config.operators)

    @property
    def rules(self) -> dict[str, Rule]:
        return {
            "wanderer": self.wanderer,
            "aed": self.aed,
            "smoke": self.smoke,
            "patrol": self.patrol,
            "school": self.school,
            "gateway": self.gateway,
        }

    def handle(self, gw: str, record: Record, now_ms: int, reg: RegistryView) -> list[Action]:
        """Actions for one record heard through gateway ``gw``.

        A rule that cannot read the record yields ``Rejected`` (dead-letter it) instead of
        raising; the other rules still see the record.
        """
        rules = self.rules
        out: list[Action] = []
        for name in DISPATCH.get(record.kind, ()):
            try:
                out.extend(rules[name].handle(gw, record, now_ms, reg))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                out.append(Rejected(name, gw, record.seq, f"{type(exc).__name__}: {exc}"))
        return out + self._follow_gateways(out, now_ms, reg)

    def on_status(self, gw: str, state: str, now_ms: int, reg: RegistryView) -> list[Action]:
        """The gateway's retained status changed (``online`` / ``offline``)."""
        if state not in ("online", "offline"):
            return []
        out = self.gateway.on_status(gw, state, now_ms, reg)
        return out + self._follow_gateways(out, now_ms, reg)

    def tick(self, now_ms: int, reg: RegistryView) -> list[Action]:
        """Timers: call every few seconds with the current time."""
        rules = self.rules
        out: list[Action] = []
        for name in TICK_ORDER:
            acts = rules[name].tick(now_ms, reg)
            out.extend(acts)
            if name == "gateway":
                out.extend(self._follow_gateways(acts, now_ms, reg))
        return out

    def to_state(self) -> StateDict:
        return {"v": STATE_VERSION, **{n: r.to_state() for n, r in self.rules.items()}}

    @classmethod
    def from_state(
        cls, config: EngineConfig, state: Mapping[str, Any], verify_sun: SunVerifier | None = None
    ) -> RuleEngine:
        if state.get("v") != STATE_VERSION:
            raise StorageError(f"rule state version {state.get('v')!r} is not {STATE_VERSION}")
        engine = cls(config, verify_sun)
        try:
            engine.wanderer = WandererRule.from_state(config.wanderer, config.tz, state["wanderer"])
            engine.aed = AedRule.from_state(config.aed, state["aed"])
            engine.smoke = SmokeRule.from_state(config.smoke, state["smoke"])
            engine.patrol = PatrolRule.from_state(
                config.patrol, config.tz, state["patrol"], verify_sun
            )
            engine.school = SchoolRule.from_state(config.school, config.tz, state["school"])
            engine.gateway = GatewayRule.from_state(
                config.gateway, state["gateway"], config.operators
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StorageError(f"rule state is damaged: {exc!r}") from exc
        return engine

    def _follow_gateways(
        self, actions: list[Action], now_ms: int, reg: RegistryView
    ) -> list[Action]:
        """Tell the wanderer rule about gateways the gateway rule found down or back."""
        out: list[Action] = []
        for a in actions:
            if isinstance(a, RaiseAlert) and a.kind == "gateway_offline":
                out.extend(self.wanderer.on_status(a.key, "offline", now_ms, reg))
            elif isinstance(a, ResolveAlert) and a.kind == "gateway_offline":
                out.extend(self.wanderer.on_status(a.key, "online", now_ms, reg))
        return out
